"""The model registry: `MODELS`, `register_model`, `build_model` and the named sizes.

    from recursive_models import build_model, MODELS
    model = build_model("attractor", "27m", task="sudoku-extreme")      # 27.3M parameters
    model = build_model("trm", "tiny", task="sudoku6", l_cycles=2)       # any ModelConfig field overrides

A model class registers itself with ``@register_model("name")`` and declares ``SIZES`` (size name -> the
`ModelConfig` fields it sets) and ``TASK_ARCH`` (puzzle kind -> fields that depend on the task, e.g. TRM's
``n = 6`` latent updates on Sudoku and ``4`` on mazes). A model with variants (the Attractor) also declares
``VARIANTS`` (variant -> size -> fields) and ``DEFAULT_VARIANT``. Resolution order: defaults < size < variant's
size < task < overrides.
"""

from __future__ import annotations

from dataclasses import asdict, fields

from recursive_models.base import ModelConfig, RecursiveModel, SolverConfig

MODELS: dict[str, type[RecursiveModel]] = {}


def registrar(registry: dict[str, type], what: str):
    """A ``@register("name")`` class decorator for ``registry``: sets ``cls.name``; a second use of a name fails."""

    def register(name: str):
        def wrap(cls: type) -> type:
            if name in registry:
                raise ValueError(f"{what} {name!r} is already registered")
            cls.name = name
            registry[name] = cls
            return cls

        return wrap

    return register


#: class decorator ``@register_model("name")``: add a `RecursiveModel` subclass to `MODELS`
register_model = registrar(MODELS, "model")


def _ensure_loaded() -> None:
    # Importing the package registers the built-in models.
    import recursive_models.models  # noqa: F401


def task_info(task: str) -> dict:
    """``vocab_size``, ``seq_len``, ``num_puzzle_identifiers`` and ``kind`` of a registered puzzle dataset."""
    from puzzles.datasets import DATASETS

    if task not in DATASETS:
        raise ValueError(f"unknown task {task!r}; registered datasets: {sorted(DATASETS)}")
    spec = DATASETS[task]
    return {"vocab_size": spec.vocab_size, "seq_len": spec.seq_len, "num_puzzle_identifiers": 1, "kind": spec.kind}


def sizes_of(model: str) -> list[str]:
    """Size names a model defines."""
    _ensure_loaded()
    return list(MODELS[model].SIZES)


def resolve_config(
    model: str, size: str, task: str = "sudoku-extreme", *, task_meta: dict | None = None, **overrides
) -> ModelConfig:
    """The `ModelConfig` for ``model`` at ``size`` on ``task`` (see the module docstring).

    Args:
        model: registry name.
        size: one of the model's sizes.
        task: registry name of the dataset; its kind picks task-dependent fields.
        task_meta: ``vocab_size`` / ``seq_len`` / ``num_puzzle_identifiers`` / ``kind`` of a dataset folder,
            when it differs from the registry's (a real-data folder); defaults to `task_info`.
        **overrides: `ModelConfig` fields; ``solver`` may be a dict of `SolverConfig` fields.

    Raises:
        ValueError: unknown model, size, task or field, naming the choices.
    """
    _ensure_loaded()
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; registered models: {sorted(MODELS)}")
    cls = MODELS[model]
    if size not in cls.SIZES:
        raise ValueError(f"model {model!r} has no size {size!r}; its sizes are {sorted(cls.SIZES)}")
    overrides = dict(overrides)
    meta = dict(task_meta) if task_meta is not None else task_info(task)
    kind = meta.pop("kind")
    known = {f.name for f in fields(ModelConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown model option(s) {sorted(unknown)}; ModelConfig fields are {sorted(known)}")
    values: dict = {"name": model, "size": size, **meta}
    variants: dict = getattr(cls, "VARIANTS", {})
    variant = overrides.pop("variant", None) or ""
    if variants:
        variant = variant or cls.DEFAULT_VARIANT
        if variant not in variants:
            raise ValueError(f"model {model!r} has no variant {variant!r}; its variants are {sorted(variants)}")
        values["variant"] = variant
    elif variant:
        raise ValueError(f"model {model!r} has no variants (got variant={variant!r})")
    solver = {}
    for layer in (cls.SIZES[size], variants.get(variant, {}).get(size, {}), cls.TASK_ARCH.get(kind, {}), overrides):
        for k, v in layer.items():
            if k == "solver":
                solver.update(asdict(v) if isinstance(v, SolverConfig) else dict(v))
            elif v is not None:
                values[k] = v
    values["solver"] = solver
    return ModelConfig.from_dict(values)


def build_model(model: str, size: str, task: str = "sudoku-extreme", *, task_meta: dict | None = None, **overrides):
    """Build a registered model; see `resolve_config` for the arguments.

    Returns:
        the `RecursiveModel` (an ``nn.Module``) with freshly initialised weights.
    """
    config = resolve_config(model, size, task, task_meta=task_meta, **overrides)
    return from_config(config)


def from_config(config: ModelConfig) -> RecursiveModel:
    """Build a model from a resolved `ModelConfig` (e.g. one read from a checkpoint's ``meta.json``)."""
    _ensure_loaded()
    if config.name not in MODELS:
        raise ValueError(f"unknown model {config.name!r}; registered models: {sorted(MODELS)}")
    return MODELS[config.name](config)
