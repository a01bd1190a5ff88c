"""Import checkpoints of the official TRM and HRM code, and of the authors' TRM-DEQ, into this suite's format.

    python -m recursive_models.convert --from trm checkpoints/P/RUN/step_65100 runs/trm-ref  # all_config.yaml beside
    python -m recursive_models.convert --from authors OUT/step-00013020.pt runs/trmdeq --task sudoku-extreme
    python -m recursive_models.convert --from hrm step_26040 runs/hrm-ref --task sudoku-extreme
    python -m recursive_models.convert --from trm step_N out/ --set H_cycles=3 --set L_cycles=6 ...  # no config
    python -m leaderboard submit runs/trm-ref --task sudoku-extreme --name trm-reference       # score the result

The references (SamsungSAILMontreal/TinyRecursiveModels, sapientinc/HRM) save ``model.state_dict()`` of
``torch.compile(ACTLossHead(ACT wrapper))`` with `torch.save`, so tensor names carry ``_orig_mod.model.inner.``
(``model.inner.`` without compile); their ``pretrain.py`` writes the run's configuration to ``all_config.yaml``
beside the checkpoints. Neither file holds the dataset's sizes, so they are read from the weights (vocabulary,
puzzle identifiers, hidden size, layer counts, mixer) and from learned positions / MLP-T widths, ``--seq-len``,
``--task`` or the run's dataset folder (sequence length); the rest (heads, cycles, expansion, positions, halting)
must come from the config file or ``--set KEY=VALUE`` in the reference's own option names.

Every tensor is mapped by name (`key_map`); a missing, unexpected or misshaped tensor, an option this suite
cannot express, or two sources that disagree is an error naming it (`ConversionError`; the CLI prints
``error: ...`` and exits 2). The checkpoint is read with ``torch.load(weights_only=True)``. Weights are stored
in float32 (the references keep their initial states in their ``forward_dtype``, bfloat16 by default; the
up-cast is exact). The output folder holds ``model.safetensors`` and ``meta.json`` (`recursive_models.checkpoint`),
loadable with `recursive_models.load_checkpoint` and accepted by the leaderboard.

``--from authors`` reads a checkpoint of the authors' ``train_trm_deq.py`` (jacobfa/Attractor): one `torch.save`'d
dict with ``model_state`` (``TRMDEQ.state_dict()``), ``ema_state`` (the EMA of its parameters, which their
evaluation uses, and so do we when it is there) and ``model_config`` (the ``TRMDEQConfig`` options). Its network
and tensor names are TRM's, so it goes through the TRM path and becomes our ``attractor`` ``variant=authors``
with their solver settings (``deq_*``, ``bptt_through``, ``jacobian_reg_*``).

`to_reference_state_dict` and `reference_arch` go the other way (our model -> the reference's tensor names and
arch options); the tests and ``benchmarks/train_step.py`` use them to build the reference model with the same
weights. Fidelity is checked against the reference code in ``tests/test_convert.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

# torch and the models load inside the functions that need them, so `--help` and argument errors are instant.
if TYPE_CHECKING:
    import torch

    from recursive_models.base import ModelConfig, RecursiveModel

#: the ``arch.name`` each reference run records, per ``--from`` (TRM's repository also carries a copy of HRM)
REFERENCE_ARCHS = {
    "trm": ("recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1",),
    "hrm": (
        "hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1",
        "recursive_reasoning.hrm@HierarchicalReasoningModel_ACTV1",
    ),
}
#: architectures of the reference repositories that have no counterpart here
UNSUPPORTED_ARCHS = ("trm_singlez", "trm_hier6", "transformers_baseline")
#: wrapper prefixes of a saved reference state dict, outermost first (compile, loss head, ACT wrapper)
PREFIXES = ("_orig_mod.model.inner.", "model.inner.", "_orig_mod.inner.", "inner.", "")

_REQUIRED = object()
# The reference config classes' fields with their defaults (_REQUIRED: the reference has no default and nothing
# here can infer it; None: inferred from the weights or the dataset, or not part of the model).
_COMMON_OPTIONS: dict[str, Any] = {
    "batch_size": None,  # training batch (sizes the sparse embedding's gradient buffer; not in the weights)
    "seq_len": None,
    "vocab_size": None,
    "num_puzzle_identifiers": None,
    "puzzle_emb_ndim": 0,
    "H_cycles": _REQUIRED,
    "L_cycles": _REQUIRED,
    "H_layers": None,
    "L_layers": None,
    "hidden_size": None,
    "expansion": _REQUIRED,
    "num_heads": _REQUIRED,
    "pos_encodings": _REQUIRED,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "halt_max_steps": _REQUIRED,
    "halt_exploration_prob": _REQUIRED,
    "forward_dtype": "bfloat16",
}
_OPTIONS = {
    "trm": {**_COMMON_OPTIONS, "mlp_t": False, "puzzle_emb_len": 16, "no_ACT_continue": True},
    "hrm": {**_COMMON_OPTIONS, "mlp_t": False},  # mlp_t: only in the copy of HRM inside TRM's repository
}
_BOOKKEEPING = ("name", "loss")  # arch keys of pretrain.py's config that are not model options
_DTYPES = ("bfloat16", "float16", "float32")


#: the authors' TRMDEQConfig options beyond TRM's, their defaults, and the `SolverConfig` field each sets
AUTHORS_DEQ_OPTIONS: dict[str, tuple[Any, str]] = {
    "deq_max_iter": (8, "max_iter"),
    "deq_min_iter": (4, "min_iter"),
    "deq_tol": (1e-3, "tol"),
    "deq_anderson_m": (5, "m"),
    "deq_anderson_beta": (1.0, "beta"),
    "bptt_through": (1, "phantom_steps"),
    "jacobian_reg_lambda": (0.0, "jacobian_reg"),
    "jacobian_reg_n_samples": (1, "jacobian_reg_samples"),
}


class ConversionError(ValueError):
    """A reference checkpoint or config that cannot be converted; the message names the problem."""


# ---- tensor names ----------------------------------------------------------------------------------------
def key_map(kind: str, config: ModelConfig) -> dict[str, str]:
    """Reference tensor name (wrapper prefixes removed) -> our state-dict name, for one architecture.

    Reference names are those of ``TinyRecursiveReasoningModel_ACTV1_Inner`` and
    ``HierarchicalReasoningModel_ACTV1_Inner``: ``CastedEmbedding.embedding_weight``, ``CastedLinear.weight/bias``,
    ``CastedSparseEmbedding.weights``, ``H_init``/``L_init``, and blocks under ``{H,L}_level.layers.i`` with
    ``self_attn.{qkv,o}_proj``, ``mlp_t`` and ``mlp.{gate_up,down}_proj``. Rotary tables and the sparse
    embedding's local buffers are non-persistent on both sides.
    """
    m = {
        "embed_tokens.embedding_weight": "encoder.embed_tokens.weight",
        "lm_head.weight": "heads.lm_head.weight",
        "q_head.weight": "heads.q_head.weight",
        "q_head.bias": "heads.q_head.bias",
    }
    if config.puzzle_emb_len > 0:
        m["puzzle_emb.weights"] = "encoder.puzzle_emb.weight"
    if config.pos_encodings == "learned":
        m["embed_pos.embedding_weight"] = "encoder.embed_pos"
    if kind == "trm":
        # TRM's z_H is the answer y and z_L the latent z; one network, stored as L_level.
        m["H_init"], m["L_init"] = "y_init", "z_init"
        modules = {"L_level": ("net", config.layers)}
    elif kind == "hrm":
        m["H_init"], m["L_init"] = "zh_init", "zl_init"
        modules = {"H_level": ("h_module", config.h_layers), "L_level": ("l_module", config.layers)}
    else:
        raise ConversionError(f"unknown reference {kind!r}; choose 'trm' or 'hrm'")
    for ref_module, (our_module, n) in modules.items():
        for i in range(n):
            r, o = f"{ref_module}.layers.{i}", f"{our_module}.blocks.{i}"
            if config.mixer == "mlp":
                m[f"{r}.mlp_t.gate_up_proj.weight"] = f"{o}.mixer.mlp.gate_up.weight"
                m[f"{r}.mlp_t.down_proj.weight"] = f"{o}.mixer.mlp.down.weight"
            else:
                m[f"{r}.self_attn.qkv_proj.weight"] = f"{o}.mixer.qkv.weight"
                m[f"{r}.self_attn.o_proj.weight"] = f"{o}.mixer.proj.weight"
            m[f"{r}.mlp.gate_up_proj.weight"] = f"{o}.mlp.gate_up.weight"
            m[f"{r}.mlp.down_proj.weight"] = f"{o}.mlp.down.weight"
    return m


def strip_prefix(state: dict[str, torch.Tensor]) -> tuple[str, dict[str, torch.Tensor]]:
    """Remove the wrapper prefix (see `PREFIXES`) found on the token embedding; returns ``(prefix, inner state)``.

    Raises:
        ConversionError: no token embedding under any known prefix, or tensors outside the prefix.
    """
    for p in PREFIXES:
        if p + "embed_tokens.embedding_weight" in state:
            stray = sorted(k for k in state if not k.startswith(p))
            if stray:
                raise ConversionError(f"unexpected tensor(s) {stray[:6]} outside the model's prefix {p!r}")
            return p, {k[len(p) :]: v for k, v in state.items()}
    raise ConversionError(
        f"missing tensor 'embed_tokens.embedding_weight' (under any of the prefixes {list(PREFIXES[:-1])} or none): "
        f"is this a TRM/HRM checkpoint? First keys: {sorted(state)[:4]}"
    )


def to_reference_state_dict(model: RecursiveModel, prefix: str = "_orig_mod.model.inner.") -> dict[str, torch.Tensor]:
    """Our model's weights under the reference's tensor names, as its ``pretrain.py`` would save them."""
    kind = model.config.name
    if kind == "attractor" and model.config.variant == "authors":
        kind = "trm"  # the authors' TRMDEQ has TRM's network and tensor names
    ours = model.state_dict()
    return {prefix + r: ours[o].detach().clone() for r, o in key_map(kind, model.config).items()}


# ---- configs ---------------------------------------------------------------------------------------------
def _ceil_div(a: int, b: int) -> int:
    return -(a // -b)


def reference_arch(config: ModelConfig, forward_dtype: str = "float32") -> dict[str, Any]:
    """The reference's ``arch`` options for our ``config`` (inverse of the conversion; raises if inexpressible).

    The result has the reference option names (``H_cycles``, ``L_layers``, ``mlp_t``, ...) plus ``name``; add
    ``batch_size``, ``seq_len``, ``vocab_size`` and ``num_puzzle_identifiers`` to build the reference model.
    """
    c = config
    if c.name not in REFERENCE_ARCHS:
        raise ConversionError(f"model {c.name!r} has no reference implementation; only 'trm' and 'hrm' do")
    if c.norm != "post":
        raise ConversionError(f"norm={c.norm!r}: the references only have post-norm blocks")
    ndim = (c.puzzle_emb_ndim or c.puzzle_emb_len * c.hidden_size) if c.puzzle_emb_len else 0
    arch: dict[str, Any] = {
        "name": REFERENCE_ARCHS[c.name][0],
        "H_cycles": c.h_cycles,
        "L_cycles": c.l_cycles,
        "H_layers": c.h_layers,
        "L_layers": c.layers,
        "hidden_size": c.hidden_size,
        "expansion": c.expansion,
        "num_heads": c.num_heads,
        "pos_encodings": c.pos_encodings,
        "puzzle_emb_ndim": ndim,
        "halt_max_steps": c.halt_max_steps,
        "halt_exploration_prob": c.halt_exploration_prob,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "forward_dtype": forward_dtype,
    }
    if c.name == "trm":
        arch.update(mlp_t=c.mixer == "mlp", puzzle_emb_len=c.puzzle_emb_len, no_ACT_continue=not c.act_continue)
    else:
        if c.mixer != "attention":
            raise ConversionError("HRM with mixer='mlp' exists only in TRM's copy of HRM; not supported here")
        if c.pos_encodings not in ("rope", "learned"):
            raise ConversionError(f"HRM's reference has no pos_encodings={c.pos_encodings!r}")
        if not c.act_continue:
            raise ConversionError("HRM's reference always uses the Q-learning continue head (act_continue=True)")
        if c.puzzle_emb_len != _ceil_div(ndim, c.hidden_size):
            raise ConversionError(
                f"HRM's reference gives the puzzle embedding ceil(puzzle_emb_ndim / hidden) positions; "
                f"puzzle_emb_len={c.puzzle_emb_len} with a {ndim}-wide embedding is not expressible"
            )
    return arch


def read_reference_config(path: str | os.PathLike) -> tuple[dict, dict]:
    """``(arch, run)`` from a reference run's ``all_config.yaml`` (``arch`` section and the top level)."""
    import yaml

    p = Path(path)
    try:
        cfg = yaml.safe_load(p.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConversionError(f"{p}: cannot read the reference config ({e})") from None
    if not isinstance(cfg, dict):
        raise ConversionError(f"{p}: not a YAML mapping")
    if "arch" in cfg:
        if not isinstance(cfg["arch"], dict):
            raise ConversionError(f"{p}: 'arch' is not a mapping")
        return dict(cfg["arch"]), cfg
    return dict(cfg), {}  # a bare arch section


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings to a dict; values are parsed as YAML scalars (``3``, ``4.0``, ``true``, ``rope``)."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConversionError(f"--set expects KEY=VALUE in the reference's option names, got {item!r}")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return out


def _dataset_meta(run: dict) -> tuple[dict | None, str | None]:
    """The reference run's dataset metadata and folder (``test/`` or ``train/dataset.json``), when on this machine.

    TRM's config names the folders ``data_paths`` (a list), HRM's ``data_path``.
    """
    paths = run.get("data_paths") or run.get("data_path") or []
    paths = [str(p) for p in (paths if isinstance(paths, list) else [paths])]
    for d in paths:
        for split in ("test", "train"):
            f = Path(str(d)) / split / "dataset.json"
            if f.is_file():
                try:
                    return json.loads(f.read_text()), str(d)
                except (OSError, json.JSONDecodeError):
                    continue
    return None, (str(paths[0]) if paths else None)


def _layer_indices(state: dict[str, torch.Tensor], module: str) -> list[int]:
    pat = re.compile(rf"^{re.escape(module)}\.layers\.(\d+)\.")
    return sorted({int(m.group(1)) for k in state if (m := pat.match(k))})


def resolve_arch(kind: str, arch: dict, state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Check the reference options of ``kind`` against the weights; returns every option with its value.

    Unknown options, an unsupported architecture name, required options that are missing, and values that
    disagree with the weights' shapes raise `ConversionError`.
    """
    if kind not in _OPTIONS:
        raise ConversionError(f"unknown reference {kind!r}; choose 'trm' or 'hrm'")
    name = arch.get("name")
    if name is not None:
        if any(u in str(name) for u in UNSUPPORTED_ARCHS):
            raise ConversionError(f"unsupported reference architecture {name!r}: only TRM and HRM convert")
        if name not in REFERENCE_ARCHS[kind]:
            other = next((k for k, v in REFERENCE_ARCHS.items() if name in v), None)
            hint = f" (it is a {other.upper()} run: use --from {other})" if other else ""
            raise ConversionError(f"arch.name {name!r} is not a {kind.upper()} architecture{hint}")
    options = _OPTIONS[kind]
    unknown = sorted(set(arch) - set(options) - set(_BOOKKEEPING))
    if unknown:
        raise ConversionError(
            f"unknown {kind.upper()} option(s) {unknown}: not in the reference config class, so this suite "
            f"cannot know what they change; known options: {sorted(options)}"
        )
    a = {k: arch.get(k, v) for k, v in options.items()}

    # From the weights: the widths and counts no config file records.
    vocab, hidden = state["embed_tokens.embedding_weight"].shape

    def settle(key: str, found: Any, source: str) -> None:
        if a[key] is not None and a[key] != found:
            raise ConversionError(f"{key}={a[key]!r} in the config, but {source} has {found!r}")
        a[key] = found

    settle("hidden_size", int(hidden), "embed_tokens.embedding_weight")
    settle("vocab_size", int(vocab), "embed_tokens.embedding_weight")
    if "puzzle_emb.weights" in state:
        n_ids, ndim = state["puzzle_emb.weights"].shape
        if arch.get("puzzle_emb_ndim") is not None and arch["puzzle_emb_ndim"] != ndim:
            raise ConversionError(
                f"puzzle_emb_ndim={arch['puzzle_emb_ndim']} in the config, but puzzle_emb.weights has {ndim} columns"
            )
        a["puzzle_emb_ndim"] = int(ndim)
        settle("num_puzzle_identifiers", int(n_ids), "puzzle_emb.weights")
    elif a["puzzle_emb_ndim"]:
        raise ConversionError(
            f"missing tensor 'puzzle_emb.weights' (the config has puzzle_emb_ndim={a['puzzle_emb_ndim']})"
        )
    else:
        a["num_puzzle_identifiers"] = a["num_puzzle_identifiers"] or 1
    modules = ["L_level"] + (["H_level"] if kind == "hrm" else [])
    if kind == "trm" and _layer_indices(state, "H_level"):
        raise ConversionError("unexpected tensors under 'H_level': TRM has one network (L_level)")
    for module, key in zip(modules, ("L_layers", "H_layers"), strict=False):
        idx = _layer_indices(state, module)
        if idx != list(range(len(idx))) or not idx:
            raise ConversionError(f"{module}.layers.*: found layer indices {idx}, expected 0..n-1 with n >= 1")
        if a[key] is not None and a[key] != len(idx):
            raise ConversionError(f"{key}={a[key]} in the config, but the checkpoint has {len(idx)} {module} layers")
        a[key] = len(idx)
    has_mlp_t = any(".mlp_t." in k for k in state)
    if "mlp_t" not in arch:
        a["mlp_t"] = has_mlp_t
    if bool(a["mlp_t"]) != has_mlp_t:
        raise ConversionError(
            f"mlp_t={a['mlp_t']} in the config, but the checkpoint {'has' if has_mlp_t else 'has no'} mlp_t tensors"
        )
    if has_mlp_t and name == REFERENCE_ARCHS["hrm"][0]:
        raise ConversionError("mlp_t tensors in an hrm_act_v1 checkpoint: that HRM has no MLP-T mixer")

    missing = sorted(k for k, v in a.items() if v is _REQUIRED)
    if missing:
        raise ConversionError(
            f"missing {kind.upper()} option(s) {missing}: give the run's all_config.yaml (--config) or "
            f"--set KEY=VALUE for each"
        )
    for key, want in (("rms_norm_eps", 1e-5), ("rope_theta", 10000.0)):
        if not math.isclose(float(a[key]), want):
            raise ConversionError(f"unsupported option {key}={a[key]}: this suite's blocks use {want}")
    if a["forward_dtype"] not in _DTYPES:
        raise ConversionError(f"unsupported forward_dtype {a['forward_dtype']!r}; the references use one of {_DTYPES}")
    if a["pos_encodings"] not in ("rope", "learned") and kind == "hrm" and name != REFERENCE_ARCHS["hrm"][1]:
        raise ConversionError(
            f"unsupported pos_encodings {a['pos_encodings']!r}: the reference HRM only has 'rope' and 'learned'"
        )
    if int(a["hidden_size"]) % int(a["num_heads"]):
        raise ConversionError(f"hidden_size {a['hidden_size']} is not divisible by num_heads {a['num_heads']}")
    return a


def _puzzle_emb_len(kind: str, a: dict) -> int:
    # TRM: an explicit puzzle_emb_len (16 by default), 0 meaning ceil(ndim / hidden); HRM: always the latter.
    auto = _ceil_div(int(a["puzzle_emb_ndim"]), int(a["hidden_size"]))
    if kind == "trm" and a["puzzle_emb_len"]:
        if not a["puzzle_emb_ndim"]:
            raise ConversionError(
                f"puzzle_emb_ndim=0 with puzzle_emb_len={a['puzzle_emb_len']}: the reference TRM does not run with "
                "this combination (its carry and input lengths differ); set puzzle_emb_len=0"
            )
        if a["puzzle_emb_len"] < auto:
            raise ConversionError(
                f"puzzle_emb_len={a['puzzle_emb_len']} positions cannot hold a {a['puzzle_emb_ndim']}-wide embedding"
            )
        return int(a["puzzle_emb_len"])
    return auto


def model_config(kind: str, a: dict, seq_len: int, size: str = "converted") -> ModelConfig:
    """Our `ModelConfig` for resolved reference options ``a`` (see `resolve_arch`)."""
    from recursive_models.base import ModelConfig

    positions_emb = _puzzle_emb_len(kind, a)
    ndim = int(a["puzzle_emb_ndim"])
    pos = a["pos_encodings"] if a["pos_encodings"] in ("rope", "learned") else "none"
    return ModelConfig(
        name=kind,
        size=size,
        vocab_size=int(a["vocab_size"]),
        seq_len=int(seq_len),
        num_puzzle_identifiers=int(a["num_puzzle_identifiers"]),
        hidden_size=int(a["hidden_size"]),
        num_heads=int(a["num_heads"]),
        expansion=float(a["expansion"]),
        layers=int(a["L_layers"]),
        h_layers=int(a["H_layers"]) if kind == "hrm" else 0,
        h_cycles=int(a["H_cycles"]),
        l_cycles=int(a["L_cycles"]),
        mixer="mlp" if a["mlp_t"] else "attention",
        pos_encodings=pos,
        norm="post",
        puzzle_emb_len=positions_emb,
        # 0 is our spelling of "as wide as all the positions" (HRM's case), so such configs equal our builders'.
        puzzle_emb_ndim=0 if ndim == positions_emb * int(a["hidden_size"]) else ndim,
        halt_max_steps=int(a["halt_max_steps"]),
        halt_exploration_prob=float(a["halt_exploration_prob"]),
        act_continue=True if kind == "hrm" else not a["no_ACT_continue"],
    )


def _seq_len(
    kind: str,
    a: dict,
    state: dict[str, torch.Tensor],
    *,
    seq_len: int | None,
    task: str | None,
    data_meta: dict | None,
) -> int:
    """The sequence length from every source available; they must agree."""
    found: dict[str, int] = {}
    p = _puzzle_emb_len(kind, a)
    if seq_len is not None:
        found["--seq-len"] = int(seq_len)
    if a.get("seq_len") is not None:
        found["the config's seq_len"] = int(a["seq_len"])
    if "embed_pos.embedding_weight" in state:
        found["embed_pos.embedding_weight"] = int(state["embed_pos.embedding_weight"].shape[0]) - p
    t = next((k for k in state if k.endswith(".mlp_t.gate_up_proj.weight")), None)
    if t is not None:
        found[t] = int(state[t].shape[1]) - p
    if task is not None:
        from recursive_models.registry import task_info

        info = task_info(task)
        if info["vocab_size"] != a["vocab_size"]:
            raise ConversionError(
                f"--task {task} has vocabulary {info['vocab_size']}, but the checkpoint's is {a['vocab_size']}"
            )
        found[f"--task {task}"] = int(info["seq_len"])
    if data_meta is not None:
        found["the run's dataset.json"] = int(data_meta["seq_len"])
    if not found:
        raise ConversionError(
            "cannot tell the sequence length (rotary positions keep no table in the checkpoint): pass --seq-len N "
            "or --task NAME"
        )
    if len(set(found.values())) > 1:
        raise ConversionError(f"the sources of the sequence length disagree: {found}")
    value = next(iter(found.values()))
    if value < 1:
        raise ConversionError(f"sequence length {value} from {found}: inconsistent with puzzle_emb_len={p}")
    return value


def convert_state(
    kind: str,
    state: dict[str, torch.Tensor],
    arch: dict,
    *,
    seq_len: int | None = None,
    task: str | None = None,
    data_meta: dict | None = None,
) -> tuple[RecursiveModel, dict[str, Any]]:
    """Our model with a reference state dict's weights.

    Args:
        kind: ``trm`` or ``hrm``.
        state: the reference state dict (any wrapper prefix, see `PREFIXES`).
        arch: reference options (an ``all_config.yaml`` arch section and/or overrides).
        seq_len: sequence length when the weights cannot tell it.
        task: a registered dataset name (gives the sequence length and checks the vocabulary).
        data_meta: the reference run's ``dataset.json`` (checked against the weights).

    Returns:
        ``(model, info)``: the model in eval mode and ``{"prefix", "arch", "dtypes"}``.
    """
    import torch

    from recursive_models.registry import from_config

    bad = [k for k, v in state.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise ConversionError(f"not a state dict: entry {bad[0]!r} is not a tensor")
    prefix, inner = strip_prefix(state)
    a = resolve_arch(kind, arch, inner)
    length = _seq_len(kind, a, inner, seq_len=seq_len, task=task, data_meta=data_meta)
    if data_meta is not None:
        for key in ("vocab_size", "num_puzzle_identifiers"):
            if key in data_meta and int(data_meta[key]) != a[key]:
                raise ConversionError(f"the run's dataset.json has {key}={data_meta[key]}, the checkpoint {a[key]}")
    config = model_config(kind, a, length)
    model = from_config(config)
    ours = model.state_dict()
    mapping = key_map(kind, config)
    assert set(mapping.values()) == set(ours), "key_map must cover our state dict exactly"
    missing = sorted(prefix + k for k in mapping if k not in inner)
    unexpected = sorted(prefix + k for k in inner if k not in mapping)
    if missing or unexpected:
        raise ConversionError(
            f"the checkpoint does not match a {kind.upper()} with these options: missing tensor(s) {missing[:6]}"
            f"{' ...' if len(missing) > 6 else ''}, unexpected tensor(s) {unexpected[:6]}"
            f"{' ...' if len(unexpected) > 6 else ''}"
        )
    converted, dtypes = {}, {}
    for ref_name, our_name in mapping.items():
        t = inner[ref_name]
        if tuple(t.shape) != tuple(ours[our_name].shape):
            raise ConversionError(
                f"tensor {prefix + ref_name!r} has shape {list(t.shape)}, but the options "
                f"(hidden_size={a['hidden_size']}, expansion={a['expansion']}, num_heads={a['num_heads']}, "
                f"seq_len={length}) need {list(ours[our_name].shape)} for {our_name!r}"
            )
        if not t.is_floating_point():
            raise ConversionError(f"tensor {prefix + ref_name!r} has dtype {t.dtype}, expected a floating type")
        if not bool(torch.isfinite(t).all()):
            raise ConversionError(f"tensor {prefix + ref_name!r} has non-finite values (NaN or Inf)")
        dtypes[str(t.dtype).removeprefix("torch.")] = dtypes.get(str(t.dtype).removeprefix("torch."), 0) + 1
        converted[our_name] = t.detach().to(torch.float32).contiguous()  # bf16/fp16 -> fp32 is exact
    model.load_state_dict(converted, strict=True)
    return model.eval(), {"prefix": prefix, "arch": a, "dtypes": dtypes}


# ---- files -----------------------------------------------------------------------------------------------
def _safe_load(p: Path) -> Any:
    """``torch.load(p, weights_only=True)`` on the CPU; a file that is not one is a `ConversionError`."""
    import pickle

    import torch

    if not p.is_file():
        raise FileNotFoundError(f"no such checkpoint file: {p}")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConversionError(f"{p}: not loadable with torch.load(weights_only=True): {first[:200]}") from None


def load_reference_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A reference checkpoint (a `torch.save`'d state dict), read with ``weights_only=True`` on the CPU."""
    p = Path(path)
    obj = _safe_load(p)
    if not isinstance(obj, dict) or not obj:
        raise ConversionError(f"{p}: expected a state dict (tensor name -> tensor), got {type(obj).__name__}")
    return obj


def _task_of(vocab: int, seq_len: int, task: str | None) -> tuple[str, str | None]:
    """The registered dataset this model fits (``--task``, or the only one with its vocabulary and length)."""
    from puzzles.datasets import DATASETS
    from recursive_models.registry import task_info

    if task is not None:
        return task, task_info(task)["kind"]
    fits = [n for n in DATASETS if (i := task_info(n))["vocab_size"] == vocab and i["seq_len"] == seq_len]
    return (fits[0], task_info(fits[0])["kind"]) if len(fits) == 1 else ("unknown", None)


def convert_checkpoint(
    kind: str,
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    config: str | os.PathLike | None = None,
    overrides: dict | None = None,
    seq_len: int | None = None,
    task: str | None = None,
    data: str | None = None,
    force: bool = False,
) -> tuple[Path, dict]:
    """Convert a reference checkpoint file into ``out_dir`` (``model.safetensors`` + ``meta.json``).

    Args:
        kind: ``trm`` or ``hrm``.
        checkpoint: the reference's ``step_N`` file.
        out_dir: the checkpoint folder to write (must not exist unless ``force``).
        config: the run's ``all_config.yaml`` (default: the one beside ``checkpoint``, if any).
        overrides: reference options that replace or complete the config (``{"H_cycles": 3}``).
        seq_len: see `convert_state`.
        task: see `convert_state`; also names the task in ``meta.json`` (default: the only registered dataset
            with the model's vocabulary and sequence length, if one).
        data: dataset folder recorded in ``meta.json`` (what ``recursive_models.evaluate`` scores by default).
        force: replace an existing ``out_dir``.

    Returns:
        ``(out_dir, meta)``.
    """
    import torch

    from recursive_models.checkpoint import FORMAT_VERSION, git_commit, write_weights_folder

    ckpt = Path(checkpoint)
    out = Path(out_dir)
    if out.exists() and not force:
        raise ConversionError(f"{out} exists; pass --force to replace it")
    if config is None and (ckpt.parent / "all_config.yaml").is_file():
        config = ckpt.parent / "all_config.yaml"
    if kind == "authors":
        state, arch, run = read_authors_checkpoint(ckpt)
        arch.update(overrides or {})
        data_meta, data_dir = None, None
        model, info = convert_authors_state(state, arch, seq_len=seq_len, task=task)
        info["weights"] = "reference (EMA)" if run.pop("ema") else "reference"
    else:
        arch, run = read_reference_config(config) if config is not None else ({}, {})
        arch.update(overrides or {})
        data_meta, data_dir = _dataset_meta(run)
        state = load_reference_checkpoint(ckpt)
        model, info = convert_state(kind, state, arch, seq_len=seq_len, task=task, data_meta=data_meta)
    c = model.config
    task_name, task_kind = _task_of(c.vocab_size, c.seq_len, task)
    loss = arch.get("loss") if isinstance(arch.get("loss"), dict) else {}
    h = hashlib.sha256()
    with open(ckpt, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    step = re.search(r"step[_-](\d+)", ckpt.name)
    meta = {
        "format_version": FORMAT_VERSION,
        "model": asdict(c),
        "task": {"name": task_name, "kind": task_kind, "data_dir": data or data_dir or ""},
        "config": {"model": {"name": c.name, "loss_type": _loss_type(loss)}, "reference_run": run or None},
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "weights": info.get("weights", "reference"),
        "converted_from": {
            "reference": kind,
            "checkpoint": str(ckpt.resolve()),
            "sha256": h.hexdigest(),
            "config_file": str(Path(config).resolve()) if config is not None else None,
            "overrides": overrides or {},
            "state_dict_prefix": info["prefix"],
            "source_dtypes": info["dtypes"],
            "arch": info["arch"],
        },
        "step": int(step.group(1)) if step else 0,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    write_weights_folder(out, model.state_dict(), meta)
    return out, meta


def read_authors_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """``(state, model_config, train_config)`` of an authors' ``train_trm_deq.py`` checkpoint.

    The state is ``model_state`` with the parameters replaced by ``ema_state`` when present (what their evaluation
    runs; buffers such as the initial states are only in ``model_state``).
    """
    p = Path(path)
    obj = _safe_load(p)
    if not isinstance(obj, dict) or not isinstance(obj.get("model_state"), dict):
        raise ConversionError(f"{p}: not a train_trm_deq.py checkpoint (expected a dict with 'model_state')")
    if not isinstance(obj.get("model_config"), dict):
        raise ConversionError(f"{p}: the checkpoint has no 'model_config' (the TRMDEQConfig options)")
    state = dict(obj["model_state"])
    ema = obj.get("ema_state")
    if isinstance(ema, dict) and ema:
        stray = sorted(k for k in ema if k not in state)
        if stray:
            raise ConversionError(f"{p}: ema_state has tensor(s) {stray[:4]} that model_state lacks")
        state.update(ema)
    train = obj.get("train_config") if isinstance(obj.get("train_config"), dict) else {}
    return state, dict(obj["model_config"]), {**train, "ema": isinstance(ema, dict) and bool(ema)}


def convert_authors_state(
    state: dict[str, torch.Tensor], arch: dict, *, seq_len: int | None = None, task: str | None = None
) -> tuple[RecursiveModel, dict[str, Any]]:
    """Our ``attractor`` ``variant=authors`` with the weights of an authors' ``TRMDEQ`` (see `convert_state`)."""
    from dataclasses import replace

    from recursive_models.base import SolverConfig
    from recursive_models.registry import from_config

    arch = dict(arch)
    if not arch.pop("deq_inner", True):
        raise ConversionError("deq_inner=False: this TRMDEQ is a plain TRM; convert it with --from trm")
    solver = {"method": "authors"}
    for key, (default, field) in AUTHORS_DEQ_OPTIONS.items():
        solver[field] = arch.pop(key, default)
    trm, info = convert_state("trm", state, arch, seq_len=seq_len, task=task)
    config = replace(trm.config, name="attractor", variant="authors", solver=SolverConfig(**solver))
    try:
        model = from_config(config)
    except ValueError as e:
        raise ConversionError(f"the authors' options do not make a valid model: {e}") from None
    model.load_state_dict(trm.state_dict(), strict=True)
    info["arch"] = {**info["arch"], **{k: solver[f] for k, (_, f) in AUTHORS_DEQ_OPTIONS.items()}}
    return model.eval(), info


def _loss_type(loss: dict) -> str:
    name = str(loss.get("loss_type", "stablemax_cross_entropy"))
    return "softmax" if name.startswith("softmax") else "stablemax"


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; prints a JSON summary, or ``error: ...`` and exits 2."""
    p = argparse.ArgumentParser(prog="python -m recursive_models.convert", description=__doc__.splitlines()[0])
    p.add_argument("--from", dest="kind", required=True, choices=[*sorted(REFERENCE_ARCHS), "authors"],
                   help="reference code: TRM, HRM, or the authors' TRM-DEQ (jacobfa/Attractor)")  # fmt: skip
    p.add_argument("checkpoint", help="the reference's checkpoint file (e.g. checkpoints/PROJECT/RUN/step_N)")
    p.add_argument("out_dir", help="checkpoint folder to write (model.safetensors + meta.json)")
    p.add_argument("--config", help="the run's all_config.yaml (default: the one beside the checkpoint)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="reference option (repeatable)")
    p.add_argument("--seq-len", type=int, help="puzzle sequence length, when the weights cannot tell it")
    p.add_argument("--task", help="registered dataset (sequence length, vocabulary check, meta.json)")
    p.add_argument("--data", help="dataset folder to record in meta.json (default evaluation data)")
    p.add_argument("--force", action="store_true", help="replace OUT_DIR if it exists")
    args = p.parse_args(argv)
    try:
        out, meta = convert_checkpoint(
            args.kind,
            args.checkpoint,
            args.out_dir,
            config=args.config,
            overrides=parse_overrides(args.set),
            seq_len=args.seq_len,
            task=args.task,
            data=args.data,
            force=args.force,
        )
    except (ConversionError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    c = meta["model"]
    summary = {
        "out_dir": str(out),
        "model": c["name"],
        "parameters": meta["parameters"],
        "task": meta["task"]["name"],
        "seq_len": c["seq_len"],
        "vocab_size": c["vocab_size"],
        "state_dict_prefix": meta["converted_from"]["state_dict_prefix"],
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
