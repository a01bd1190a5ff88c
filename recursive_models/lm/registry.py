"""Language-model registry: `LMConfig`, `LMSolverConfig`, `LM_MODELS`, `register_lm_model` and `build_lm`.

    from recursive_models.lm.registry import build_lm, LM_MODELS, LM_SIZES
    model = build_lm("attractor", "tiny")                                  # ~0.84M parameters, CPU-sized
    model = build_lm("parcae", "small", vocab_size=50304, seq_len=1024)    # any LMConfig field overrides
    model = build_lm("deq", "base", solver={"max_iter": 32, "mixing": "sequence"})

Sizes are ONE dial, ``depth`` (see `size_fields`): ``d_model = 32·depth``, ``n_layers = depth`` blocks' worth
of parameters, ``n_heads = max(2, d_model // 64)``. Every family spends those ``n_layers`` blocks differently
(its ``layer_split``: prelude / weight-tied core / coda), so that all families have the same parameter count
to within a few percent at each size (tested to ±10% of GPT). Resolution order:
``LMConfig`` defaults < family ``DEFAULTS`` < the variant's (``VARIANTS[variant]``; Parcae, DEQ, Attractor) < size
(`size_fields` then the family's ``SIZES`` preset) < overrides; the layer split is filled in last from the
resolved ``n_layers`` (and variant) unless given explicitly.

A family registers with ``@register_lm_model("name")`` and sets ``DEFAULTS``, ``SIZES`` and ``layer_split``;
see ``models/attractor.py``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING

from recursive_models.base import check_keys
from recursive_models.registry import registrar

if TYPE_CHECKING:
    from recursive_models.lm.layers import LanguageModel

#: size name -> depth, the one dial every width derives from
LM_SIZES: dict[str, int] = {"tiny": 4, "small": 8, "base": 16}

#: default context length per size (the data pipeline may override it)
_SEQ_LEN = {"tiny": 256, "small": 512, "base": 1024}


@dataclass
class LMSolverConfig:
    """Fixed-point solve of the DEQ and Attractor LMs (passed to `equilibrium.fixed_point`).

    Defaults are the paper's Attractor settings (Anderson, m=5, at most 64 and at least 6 iterations, relative
    tolerance 3e-4, one-step backward); families and sizes override them (CPU presets use fewer iterations).

    Precision: the solver state is float32 even under bf16 autocast, but ``f`` itself is then only
    bf16-accurate, which puts a floor of about 1e-3 under the relative residual of an ungated map (measured on the
    tiny DEQ, and on the Attractor with gates at 1; the Attractor at its 0.1 gate init stays below 3e-4). With
    bf16 and such maps use ``tol`` >= 2e-3, or the solve runs to ``max_iter`` every time.

    Attributes:
        method: ``anderson`` or ``picard`` (`equilibrium`'s), or ``authors``: the authors' LM Anderson
            (`recursive_models.lm.authors.authors_anderson`; Attractor only), one solver sample per sequence
            and one stopping decision for the whole batch, reproduced step for step.
        max_iter: iteration budget; ``forward(..., iters=T)`` replaces it (T=0 skips the solve).
        min_iter: no position/sequence counts as converged before this many iterations.
        tol: tolerance on the ``stop_mode`` residual.
        stop_mode: ``rel`` (``‖f(z)-z‖/‖f(z)‖``) or ``abs``.
        m: Anderson window.
        beta: Anderson/Picard damping (1 = none).
        backward: ``onestep``, ``phantom`` or ``ift`` (see `equilibrium.backward`).
        phantom_steps: ``k`` damped steps of the phantom gradient.
        phantom_tau: damping of the phantom steps.
        ift_max_iter: adjoint-solve budget of ``ift``.
        ift_tol: adjoint-solve tolerance of ``ift``.
        neumann_terms: terms of the ``neumann`` backward (1 = the authors' one-step ``u = v + Jᵀv``).
        mixing: what one solver *sample* is. ``token`` (default) folds the positions into the batch, state
            ``(B·T, D)``: every position has its own Anderson weights, residual, convergence test and freeze, so
            every iterate is exactly causal (see ``layers.solve_sequence``). ``sequence`` treats a sequence as one
            sample, state ``(B, T, D)`` (the paper's / equilibrium's per-sample convergence): the Anderson weights
            and the stopping iteration of a sequence depend on all its positions, so a *partially converged*
            iterate leaks future tokens into past positions (bounded by the residual; gone at the fixed point).
    """

    method: str = "anderson"
    max_iter: int = 64
    min_iter: int = 6
    tol: float = 3e-4
    stop_mode: str = "rel"
    m: int = 5
    beta: float = 1.0
    backward: str = "onestep"
    phantom_steps: int = 2
    phantom_tau: float = 0.5
    ift_max_iter: int = 16
    ift_tol: float = 1e-4
    neumann_terms: int = 1
    mixing: str = "token"

    def __post_init__(self) -> None:
        if self.method not in ("anderson", "picard", "authors"):
            raise ValueError(f"unknown solver method {self.method!r}; choose 'anderson', 'picard' or 'authors'")
        if self.mixing not in ("token", "sequence"):
            raise ValueError(f"unknown solver mixing {self.mixing!r}; choose 'token' or 'sequence'")
        if self.max_iter < 0 or self.min_iter < 0:
            raise ValueError(f"max_iter and min_iter must be >= 0, got {self.max_iter}, {self.min_iter}")


@dataclass
class LMConfig:
    """Architecture of one language model (the builder arguments saved next to every checkpoint).

    Attributes:
        name: registry name (``gpt``, ``parcae``, ``deq``, ``attractor``).
        size: size name the widths came from, for the record (``custom`` when built directly).
        vocab_size: tokens in the vocabulary (tied input/output embedding ``(V, D)``).
        seq_len: maximum context (rotary tables are built for it).
        d_model: residual width ``D``.
        n_layers: the parameter budget in blocks; GPT uses exactly this many blocks.
        n_heads: attention heads (head dim ``D / n_heads``, even for rotary).
        mlp_ratio: ReLU² MLP inner width ``mlp_ratio · D``.
        rope_base: rotary base frequency.
        logit_softcap: ``c · tanh(logits / c)`` when set (nanochat uses 15); ``None`` disables it.
        n_prelude: non-recurrent blocks before the loop: Parcae's prelude, DEQ's input-injection prelude,
            the Attractor's backbone. ``None``: the family's ``layer_split`` of ``n_layers``.
        n_core: weight-tied blocks applied at every iteration: Parcae's recurrent core, DEQ's ``f``, the
            Attractor module ``T``.
        n_coda: blocks after the loop (Parcae only; 0 elsewhere).
        mean_recurrence: Parcae's mean training depth (Poisson, at least 1).
        bptt_steps: Parcae backpropagates through at most the last this-many recurrent steps.
        recurrence_sampling: Parcae's depth draw, ``sequence`` (one depth per sequence) or ``batch``.
        eval_recurrence: Parcae's fixed depth in evaluation (``iters`` overrides it).
        layer_scale_init: initial per-channel gate on the Attractor module's residual updates.
        solver_init: the Attractor's solver start: ``proposal`` (y0), ``zero`` or ``gaussian``.
        injection: how the Attractor module sees y0: ``additive`` (T(y + y0) every step), ``initial`` (only as
            the starting state; needs ``solver_init="proposal"``) or ``concat`` (a linear map of [y, y0]).
        proposal_loss_weight: weight of an extra cross-entropy on the decoded proposal y0 (0 = off).
        variant: the Attractor LM's map: ``authors`` (their ``Attractor``: ``y ← FPHead(y + c) - y`` from the
            backbone output ``c``, decoded as ``ln_f(y*)``) or ``projected`` (this suite's first version: a
            projected, normalised proposal and re-normalised iterates). Parcae: ``authors`` (their Parcae) or
            ``diagonal`` (this suite's first); DEQ: ``authors`` (their EQLM's block settings) or ``nanochat``
            (this suite's first). GPT has no variants.
        norm_weight: learned gains in every RMSNorm (block norms and the final ``ln_f``), as in the authors'
            code; ``False``: parameter-free norms (nanochat).
        embed_norm: normalise the token embedding before the first block (nanochat); the authors feed
            ``wte[idx]`` unnormalised.
        mlp_act_scale: the ReLU² scale, 1 (nanochat) or 0.5 (the authors' ``Relu2``).
        gamma_max: bound of the Attractor module's sigmoid gates ``sigmoid(r)·gamma_max`` (the authors');
            ``None``: plain linear gates initialised to ``layer_scale_init``.
        init: ``scaled_zero`` (the authors' table: std ``sqrt(2/(5D))`` everywhere, zero output projections
            except in the Attractor module) or ``lecun`` (this suite's first version: LeCun normal, GPT-2
            residual scaling, embedding std ``1/sqrt(D)``).
        init_orthogonal: draw the ``scaled_zero`` matrices as scaled truncated-orthogonal ones (the authors').
        tie_head: decode with the token embedding (every family); ``False`` gives the DEQ its own ``V×D`` head
            (Table 3's "DEQ"; ``True`` is its "DEQ + tied unembedding"). Other families reject ``False``.
        solver: the DEQ/Attractor fixed-point solve.
    """

    name: str = "gpt"
    size: str = "custom"
    vocab_size: int = 256
    seq_len: int = 256
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 2
    mlp_ratio: int = 4
    rope_base: float = 10000.0
    logit_softcap: float | None = 15.0
    n_prelude: int | None = None
    n_core: int | None = None
    n_coda: int | None = None
    mean_recurrence: float = 8.0
    bptt_steps: int = 4
    recurrence_sampling: str = "sequence"
    eval_recurrence: int = 8
    layer_scale_init: float = 0.1
    solver_init: str = "proposal"
    injection: str = "additive"
    proposal_loss_weight: float = 0.0
    variant: str = "authors"
    norm_weight: bool = False
    embed_norm: bool = True
    mlp_act_scale: float = 1.0
    gamma_max: float | None = None
    init: str = "lecun"
    init_orthogonal: bool = False
    tie_head: bool = True
    solver: LMSolverConfig = field(default_factory=LMSolverConfig)

    def __post_init__(self) -> None:
        if isinstance(self.solver, dict):
            self.solver = _solver_from_dict(self.solver)
        if self.init not in ("lecun", "scaled_zero"):
            raise ValueError(f"unknown init {self.init!r}; choose 'lecun' or 'scaled_zero'")
        if self.gamma_max is not None and not self.gamma_max > 0:
            raise ValueError(f"gamma_max must be > 0 or None, got {self.gamma_max!r}")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(f"d_model {self.d_model} must split into {self.n_heads} heads of even size (rotary)")

    @classmethod
    def from_dict(cls, d: dict) -> LMConfig:
        """Inverse of `dataclasses.asdict`; unknown keys are an error (a typo, or a checkpoint of another version)."""
        d = check_keys(cls, d, "LM config")
        if isinstance(d.get("solver"), dict):
            d["solver"] = _solver_from_dict(d["solver"])
        return cls(**d)

    def to_dict(self) -> dict:
        """Plain-JSON form (``from_dict(to_dict())`` round-trips)."""
        return asdict(self)


def _solver_from_dict(d: dict) -> LMSolverConfig:
    return LMSolverConfig(**check_keys(LMSolverConfig, d, "solver config"))


LM_MODELS: dict[str, type[LanguageModel]] = {}


#: class decorator ``@register_lm_model("name")``: add a `LanguageModel` subclass to `LM_MODELS`
register_lm_model = registrar(LM_MODELS, "LM family")


def size_fields(depth: int) -> dict:
    """The widths the one size dial sets: ``d_model = 32·depth``, ``n_layers = depth``, 64-wide heads (min 2)."""
    if depth < 2:
        raise ValueError(f"depth must be >= 2, got {depth}")
    d_model = 32 * depth
    return {"d_model": d_model, "n_layers": depth, "n_heads": max(2, d_model // 64)}


def resolve_lm_config(name: str, size: str, **overrides) -> LMConfig:
    """The `LMConfig` of family ``name`` at ``size`` (see the module docstring for the resolution order).

    Args:
        name: registry name.
        size: a key of `LM_SIZES`.
        **overrides: `LMConfig` fields; ``solver`` may be a dict of `LMSolverConfig` fields (merged).

    Raises:
        ValueError: unknown family, size or field, naming the choices.
    """
    if name not in LM_MODELS:
        raise ValueError(f"unknown LM family {name!r}; registered: {sorted(LM_MODELS)}")
    if size not in LM_SIZES:
        raise ValueError(f"unknown LM size {size!r}; sizes are {sorted(LM_SIZES)}")
    known = {f.name for f in fields(LMConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown LM option(s) {sorted(unknown)}; LMConfig fields are {sorted(known)}")
    cls = LM_MODELS[name]
    variant = overrides.get("variant", cls.DEFAULTS.get("variant"))
    if cls.VARIANTS and variant not in cls.VARIANTS:
        raise ValueError(f"unknown {name} variant {variant!r}; variants are {sorted(cls.VARIANTS)}")
    if not cls.VARIANTS and "variant" in overrides:
        raise ValueError(f"the {name} family has no variants (got variant={overrides['variant']!r})")
    values: dict = {"name": name, "size": size}
    solver: dict = {}
    layers = (
        cls.DEFAULTS,
        cls.VARIANTS.get(variant, {}),
        {"seq_len": _SEQ_LEN[size], **size_fields(LM_SIZES[size])},
        cls.SIZES.get(size, {}),
    )
    for layer in (*layers, overrides):
        for k, v in layer.items():
            if k == "solver":
                solver.update(asdict(v) if isinstance(v, LMSolverConfig) else dict(v))
            else:
                values[k] = v
    split = _split(cls, values["n_layers"], values.get("variant"))
    for k, v in split.items():
        if values.get(k) is None:
            values[k] = v
    values["solver"] = solver
    return LMConfig.from_dict(values)


def _split(cls: type[LanguageModel], n_layers: int, variant: str | None) -> dict[str, int]:
    """The family's layer split; families with variants split per variant."""
    return cls.layer_split(n_layers, variant) if cls.VARIANTS else cls.layer_split(n_layers)


def build_lm(name: str, size: str, **overrides) -> LanguageModel:
    """Build a registered LM family at a named size; see `resolve_lm_config` for the arguments.

    Returns:
        the `LanguageModel` (an ``nn.Module``) with freshly initialised weights.
    """
    return lm_from_config(resolve_lm_config(name, size, **overrides))


def lm_from_config(config: LMConfig | dict) -> LanguageModel:
    """Build a model from a resolved `LMConfig` (or its dict, e.g. read from a checkpoint's ``meta.json``)."""
    if isinstance(config, dict):
        config = LMConfig.from_dict(config)
    if config.name not in LM_MODELS:
        raise ValueError(f"unknown LM family {config.name!r}; registered: {sorted(LM_MODELS)}")
    cls = LM_MODELS[config.name]
    split = _split(cls, config.n_layers, config.variant)
    missing = {k: v for k, v in split.items() if getattr(config, k) is None}
    if missing:
        config = LMConfig.from_dict({**config.to_dict(), **missing})
    return cls(config)


# Register the built-in families whenever the registry is imported, so `LM_MODELS` is complete for anyone who
# iterates it (the tests). At this point every name above exists, so the families' own
# `from recursive_models.lm.registry import ...` resolves even when they are imported first.
import recursive_models.lm.models  # noqa: E402, F401
