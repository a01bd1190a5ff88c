"""Use the official TRM / HRM code from a local checkout, for fidelity tests and benchmarks (never needed to train).

    from recursive_models.reference import load_reference, build_reference_model
    ref = load_reference("/tmp/refs/TRM", "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1")
    act = build_reference_model(ref, our_model.config, batch_size=64)   # their ACT wrapper, same architecture
    head = ref.loss_head_cls(act, loss_type="stablemax_cross_entropy")  # what their pretrain.py trains

Checkouts: ``git clone https://github.com/SamsungSAILMontreal/TinyRecursiveModels`` and
``https://github.com/sapientinc/HRM``, kept outside this repository (the tests read ``ATTRACTOR_REFERENCE_TRM`` and
``ATTRACTOR_REFERENCE_HRM``). Nothing from them is copied here; this module only imports them.

Both repositories are a top-level package named ``models``, so every import runs with the checkout first on
``sys.path`` and puts the previous ``models`` modules back afterwards: two checkouts work in one process. HRM's
attention calls ``flash_attn_func``, which needs CUDA; without flash-attn (or with ``cpu_attention=True``) a CPU
stand-in with the same signature, built on `torch.nn.functional.scaled_dot_product_attention`, is what their
module imports. TRM's layers need ``einops``; a minimal ``rearrange`` for the two patterns they use stands in when
einops is not installed. Their model code itself runs unchanged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from recursive_models.base import ModelConfig
from recursive_models.convert import REFERENCE_ARCHS, reference_arch


@dataclass(frozen=True)
class Reference:
    """Classes of one reference architecture, imported from a checkout.

    Attributes:
        root: the checkout.
        arch: the ``arch.name`` (``module@Class``, relative to their ``models`` package).
        model_cls: their ACT wrapper (``TinyRecursiveReasoningModel_ACTV1`` / ``HierarchicalReasoningModel_ACTV1``).
        loss_head_cls: ``models.losses.ACTLossHead``.
        sparse_optimizer_cls: ``models.sparse_embedding.CastedSparseEmbeddingSignSGD_Distributed``.
        commit: the checkout's git commit, when it is a git work tree.
    """

    root: Path
    arch: str
    model_cls: type
    loss_head_cls: type
    sparse_optimizer_cls: type
    commit: str | None


def flash_attn_func(q, k, v, dropout_p: float = 0.0, softmax_scale=None, causal: bool = False, **_unused):
    """CPU stand-in for ``flash_attn.flash_attn_func``: ``(B, S, H, D)`` in and out, through SDPA."""
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2),
        k.transpose(1, 2),
        v.transpose(1, 2),
        dropout_p=dropout_p,
        is_causal=causal,
        scale=softmax_scale,
    )
    return out.transpose(1, 2)


def _rearrange(t: torch.Tensor, pattern: str) -> torch.Tensor:
    # The only einops patterns TRM's layers use: swap the sequence and head axes.
    if pattern.replace(" ", "") in ("BSHD->BHSD", "BHSD->BSHD"):
        return t.transpose(1, 2)
    raise NotImplementedError(f"einops stand-in: pattern {pattern!r} (install einops)")


@contextlib.contextmanager
def _imports_from(root: Path, cpu_attention: bool):
    """``sys.path`` and ``sys.modules`` set up for importing ``models.*`` from ``root``, then restored."""
    names = ("models", "flash_attn", "flash_attn_interface", "einops")
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] in names}
    for k in saved:
        del sys.modules[k]
    if cpu_attention or importlib.util.find_spec("flash_attn") is None:
        sys.modules["flash_attn_interface"] = None  # type: ignore[assignment] -- makes that import fail
        sys.modules["flash_attn"] = types.SimpleNamespace(flash_attn_func=flash_attn_func)  # type: ignore[assignment]
    if "einops" in saved:
        sys.modules["einops"] = saved["einops"]
    elif importlib.util.find_spec("einops") is None:
        sys.modules["einops"] = types.SimpleNamespace(rearrange=_rearrange)  # type: ignore[assignment]
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        sys.path.remove(str(root))
        for k in [k for k in sys.modules if k.split(".")[0] in names]:
            del sys.modules[k]
        sys.modules.update(saved)


_CACHE: dict[tuple[str, str, bool], Reference] = {}


def _git_commit(root: Path) -> str | None:
    """The checkout's commit, when it is a git work tree."""
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def load_reference(root: str | Path, arch: str, cpu_attention: bool = True) -> Reference:
    """Import an architecture (``module@Class`` as in their configs) and its loss head from a checkout.

    Raises:
        FileNotFoundError: ``root`` has no ``models/`` package.
        ImportError: a dependency of theirs is missing (e.g. ``pydantic``).
    """
    root = Path(root).resolve()
    key = (str(root), arch, cpu_attention)
    if key in _CACHE:
        return _CACHE[key]
    if not (root / "models").is_dir():
        raise FileNotFoundError(f"{root} is not a TRM/HRM checkout (no models/ folder)")
    module_name, class_name = arch.split("@")
    with _imports_from(root, cpu_attention):
        model_cls = getattr(importlib.import_module("models." + module_name), class_name)
        loss_head_cls = importlib.import_module("models.losses").ACTLossHead
        sparse_cls = importlib.import_module("models.sparse_embedding").CastedSparseEmbeddingSignSGD_Distributed
    commit = _git_commit(root)
    ref = Reference(root, arch, model_cls, loss_head_cls, sparse_cls, commit)
    _CACHE[key] = ref
    return ref


def load_reference_for(config: ModelConfig, root: str | Path, cpu_attention: bool = True) -> Reference:
    """The reference architecture of one of our configs (``trm`` -> TRM's, ``hrm`` -> HRM's ``hrm_act_v1``)."""
    return load_reference(root, REFERENCE_ARCHS[config.name][0], cpu_attention)


def reference_model_config(config: ModelConfig, batch_size: int, forward_dtype: str = "float32") -> dict[str, Any]:
    """The ``config_dict`` their ACT wrapper takes for our ``config`` (what their ``create_model`` passes)."""
    arch = reference_arch(config, forward_dtype)
    arch.pop("name")
    return {
        **arch,
        "batch_size": batch_size,
        "seq_len": config.seq_len,
        "vocab_size": config.vocab_size,
        "num_puzzle_identifiers": config.num_puzzle_identifiers,
        "causal": False,  # pretrain.py adds it; their config classes ignore it
    }


def build_reference_model(
    ref: Reference,
    config: ModelConfig,
    batch_size: int,
    forward_dtype: str = "float32",
    device: str | torch.device = "cpu",
) -> torch.nn.Module:
    """Their ACT wrapper for our ``config``, freshly initialised by their code on ``device``.

    ``batch_size`` must be the training batch: their sparse puzzle embedding keeps a gradient buffer of that size.
    """
    with torch.device(device):
        return ref.model_cls(reference_model_config(config, batch_size, forward_dtype))


# ---- the authors' TRM-DEQ (jacobfa/Attractor) -------------------------------------------------------------------
#: where their TRM-DEQ lives in a checkout of jacobfa/Attractor: a package ``trm`` with relative imports
AUTHORS_PACKAGE_DIR = Path("experiments") / "attractor_puzzles"


@dataclass(frozen=True)
class AuthorsReference:
    """The authors' TRM-DEQ classes, imported from a checkout of jacobfa/Attractor.

    Attributes:
        root: the checkout.
        model_cls: ``trm.trm_deq.TRMDEQ`` (their ACT wrapper around ``TRMDEQ_Inner``).
        loss_head_cls: ``trm.losses_deq.ACTLossHeadDEQ`` (TRM's loss plus ``lambda * jacobian_reg``).
        anderson: ``trm.trm_deq._anderson_solve``, their solver (for the side-by-side benchmark).
        commit: the checkout's git commit, when it is a git work tree.
    """

    root: Path
    model_cls: type
    loss_head_cls: type
    anderson: Any
    commit: str | None


@contextlib.contextmanager
def _authors_imports(root: Path):
    """``sys.path``/``sys.modules`` set up for importing their ``trm`` package, then restored."""
    names = ("trm", "einops")
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] in names}
    for k in saved:
        del sys.modules[k]
    if "einops" in saved:
        sys.modules["einops"] = saved["einops"]
    elif importlib.util.find_spec("einops") is None:
        sys.modules["einops"] = types.SimpleNamespace(rearrange=_rearrange)  # type: ignore[assignment]
    path = str(root / AUTHORS_PACKAGE_DIR)
    sys.path.insert(0, path)
    try:
        yield
    finally:
        sys.path.remove(path)
        for k in [k for k in sys.modules if k.split(".")[0] in names]:
            del sys.modules[k]
        sys.modules.update(saved)


def load_authors(root: str | Path) -> AuthorsReference:
    """Import the authors' TRM-DEQ from a checkout of jacobfa/Attractor (their code runs unchanged, on CPU too).

    Raises:
        FileNotFoundError: ``root`` has no ``experiments/attractor_puzzles/trm/trm_deq.py``.
        ImportError: a dependency of theirs is missing (e.g. ``pydantic``).
    """
    root = Path(root).resolve()
    key = (str(root), "authors", False)
    if key in _CACHE:
        return _CACHE[key]  # type: ignore[return-value]
    if not (root / AUTHORS_PACKAGE_DIR / "trm" / "trm_deq.py").is_file():
        raise FileNotFoundError(f"{root} is not a jacobfa/Attractor checkout (no {AUTHORS_PACKAGE_DIR}/trm/trm_deq.py)")
    with _authors_imports(root):
        deq = importlib.import_module("trm.trm_deq")
        losses = importlib.import_module("trm.losses_deq")
    commit = _git_commit(root)
    ref = AuthorsReference(root, deq.TRMDEQ, losses.ACTLossHeadDEQ, deq._anderson_solve, commit)
    _CACHE[key] = ref  # type: ignore[assignment]
    return ref


def authors_model_config(config: ModelConfig, batch_size: int, forward_dtype: str = "float32") -> dict[str, Any]:
    """The ``config_dict`` of their ``TRMDEQ`` for our ``attractor`` ``variant=authors`` config.

    Raises:
        ValueError: the config is not the authors variant, or uses a setting their model does not have
            (our Anderson instead of theirs, a damped phantom step).
    """
    if config.name != "attractor" or config.variant != "authors":
        raise ValueError(f"expected an attractor config with variant='authors', got {config.name}/{config.variant}")
    s = config.solver
    if s.method != "authors":
        raise ValueError(f"their TRMDEQ always uses their own Anderson; solver.method={s.method!r} has no equivalent")
    trm_like = dataclasses.replace(config, name="trm", variant="")
    arch = reference_model_config(trm_like, batch_size, forward_dtype)
    arch.pop("causal")  # TRMDEQConfig is built directly, without pretrain.py's extra key
    return {
        **arch,
        "deq_inner": True,
        "deq_max_iter": s.max_iter,
        "deq_min_iter": s.min_iter,
        "deq_tol": s.tol,
        "deq_anderson_m": s.m,
        "deq_anderson_beta": s.beta,
        "bptt_through": s.phantom_steps,
        "jacobian_reg_lambda": s.jacobian_reg,
        "jacobian_reg_n_samples": s.jacobian_reg_samples,
    }


# --------------------------------------------------------------------------------------------------------
# The authors' language models (jacobfa/Attractor, package ``attractor``)
# --------------------------------------------------------------------------------------------------------


def load_authors_lm(root: str | Path) -> types.ModuleType:
    """Import the authors' LM package ``attractor`` (their ``Attractor``, ``Parcae``, ``GPT`` and configs).

    Their package is named ``attractor``, which no package of this suite is, so it stays imported (their
    classes refer to their modules). It runs unchanged on CPU: their attention falls back to PyTorch SDPA.

    Returns:
        the ``attractor.models`` package; e.g. ``load_authors_lm(root).attractor.config.AttractorConfig``.

    Raises:
        FileNotFoundError: ``root`` has no ``attractor/models/attractor/attractor.py``.
    """
    root = Path(root).resolve()
    if not (root / "attractor" / "models" / "attractor" / "attractor.py").is_file():
        raise FileNotFoundError(f"{root} is not a jacobfa/Attractor checkout (no attractor/models/attractor/*.py)")
    loaded = sys.modules.get("attractor")
    if loaded is not None:
        if Path(loaded.__file__ or "").resolve().parent.parent != root:
            raise ImportError(f"another 'attractor' package is already imported from {loaded.__file__}")
        return importlib.import_module("attractor.models")
    sys.path.insert(0, str(root))
    try:
        for family in ("attractor", "parcae", "gpt"):
            importlib.import_module(f"attractor.models.{family}.config")
    finally:
        sys.path.remove(str(root))
    return importlib.import_module("attractor.models")


def authors_lm_config(config: Any) -> dict[str, Any]:
    """Keyword arguments of their ``AttractorConfig`` for our ``attractor`` LM config (``variant="authors"``).

    The shared fields are those of their ``attractor-small-140m.py`` with our widths: RMSNorm with gains,
    0.5·ReLU², QK-norm, rotary, no biases, tied embeddings, untruncated vocabulary (``padding_multiple=1``).

    Raises:
        ValueError: a setting their model does not have (our equilibrium solver, a softcap, ...).
    """
    c, s = config, config.solver
    if c.name != "attractor" or c.variant != "authors":
        raise ValueError(f"expected an attractor config with variant='authors', got {c.name}/{c.variant}")
    if s.method != "authors" or s.backward not in ("neumann", "ift"):
        raise ValueError(f"their Attractor has their Anderson and a Neumann or IFT backward: {s.method}/{s.backward}")
    if s.backward == "neumann" and s.neumann_terms != 1:
        raise ValueError("their one-step backward is one Neumann term")
    if not (c.norm_weight and not c.embed_norm and c.mlp_act_scale == 0.5 and c.gamma_max is not None):
        raise ValueError("their blocks have RMSNorm gains, no embedding norm, 0.5·ReLU² and sigmoid gates")
    return {
        "name": "attractor-suite-fidelity",
        "block_size": c.seq_len,
        "vocab_size": c.vocab_size,
        "padding_multiple": 1,
        "n_embd": c.d_model,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_heads,
        "intermediate_size": c.mlp_ratio * c.d_model,
        "bias": False,
        "tie_embeddings": True,
        "block_class_name": "TransformerPreNormBlock",
        "norm_class_name": "RMSNorm",
        "norm_eps": 1e-5,
        "mlp_class_name": "BaseMLP",
        "nonlin_name": "ReLU2",
        "qk_norm": True,
        "logit_softcap": c.logit_softcap,
        "rope_settings": {"rope_base": c.rope_base},
        "n_backbone_layers": c.n_prelude,
        "n_fp_blocks": c.n_core,
        "solver": "anderson",
        "max_iter": s.max_iter,
        "min_iter": s.min_iter,
        "tol": s.tol,
        "anderson_m": s.m,
        "anderson_beta": s.beta,
        "backward_type": "onestep" if s.backward == "neumann" else "anderson",
        "backward_max_iter": s.ift_max_iter,
        "backward_min_iter": 0,
        "backward_tol": s.ift_tol,
        "adjoint_grad_clip": None,
        "layer_scale_init": c.layer_scale_init,
        "gamma_max": c.gamma_max,
        "init_strategy": "scaled-zero" if c.init == "scaled_zero" else "normal",
        "init_orthogonal": c.init_orthogonal,
    }


def authors_parcae_config(config: Any) -> dict[str, Any]:
    """Keyword arguments of their ``ParcaeConfig`` for our ``parcae`` LM config (``variant="authors"``).

    The shared fields are those of their ``parcae-small-140m.py`` with our widths and split: RMSNorm with gains,
    0.5·ReLU², QK-norm, rotary, no biases, tied embeddings, ``prelude_norm``, the diagonal injection, the
    "like-init" state, ``poisson-truncated-full`` depths drawn per sequence, untruncated vocabulary.

    Raises:
        ValueError: a setting their model does not have (a softcap, parameter-free norms, ...).
    """
    c = config
    if c.name != "parcae" or c.variant != "authors":
        raise ValueError(f"expected a parcae config with variant='authors', got {c.name}/{c.variant}")
    if not (c.norm_weight and not c.embed_norm and c.mlp_act_scale == 0.5 and c.recurrence_sampling == "sequence"):
        raise ValueError("their Parcae has RMSNorm gains, no embedding norm, 0.5·ReLU² and per-sequence depths")
    return {
        "name": "attractor-suite-fidelity",
        "block_size": c.seq_len,
        "vocab_size": c.vocab_size,
        "padding_multiple": 1,
        "n_embd": c.d_model,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_heads,
        "intermediate_size": c.mlp_ratio * c.d_model,
        "bias": False,
        "tie_embeddings": True,
        "block_class_name": "TransformerPreNormBlock",
        "norm_class_name": "RMSNorm",
        "norm_eps": 1e-5,
        "mlp_class_name": "BaseMLP",
        "nonlin_name": "ReLU2",
        "qk_norm": True,
        "logit_softcap": c.logit_softcap,
        "prelude_norm": True,
        "rope_settings": {"rope_base": c.rope_base},
        "init_strategy": "scaled-zero" if c.init == "scaled_zero" else "normal",
        "init_orthogonal": c.init_orthogonal,
        "injection_type": "diagonal",
        "state_init": "like-init",
        "recurrent_embedding_dimension": c.d_model,
        "recurrent_intermediation_embedding_dimension": c.mlp_ratio * c.d_model,
        "n_layers_in_prelude": c.n_prelude,
        "n_layers_in_recurrent_block": c.n_core,
        "n_layers_in_coda": c.n_coda,
        "mean_recurrence": int(c.mean_recurrence),
        "mean_backprop_depth": c.bptt_steps,
        "sampling_scheme": "poisson-truncated-full",
        "recurrent_iteration_method": "per-sequence",
    }
