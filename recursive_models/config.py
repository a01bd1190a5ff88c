"""Typed hydra schemas of ``python -m recursive_models.train`` (the YAML files live in ``conf/``).

The composed config is a `TrainConfig`; every group file is merged into these dataclasses, so a misspelled
key or a value of the wrong type fails when the config is composed, before anything runs::

    python -m recursive_models.train trainer.lr2=1e-3
    # -> Could not override 'trainer.lr2'. ... Key 'lr2' not in 'TrainerConfig'
    python -m recursive_models.train +trainer.stpes=10
    # -> error: unknown config key trainer.stpes: TrainerSection has no such field (did you mean trainer.steps?)

Hydra's ``+`` appends a key even to a typed section, so `check_schema` (called by both trainers before anything
runs) refuses keys the schema does not declare.

Groups: ``model`` (trm, hrm, attractor, transformer), ``size`` (tiny, 7m, 27m), ``task`` (sudoku6, maze-small,
sudoku-extreme, maze-hard) and ``experiment`` (paper reproductions). Architecture fields left ``None`` come
from the model's size builder (`recursive_models.registry`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class SolverOverrides:
    """`recursive_models.base.SolverConfig` fields; ``None`` keeps the size builder's value."""

    method: str | None = None
    max_iter: int | None = None
    min_iter: int | None = None
    tol: float | None = None
    stop_mode: str | None = None
    m: int | None = None
    beta: float | None = None
    backward: str | None = None
    phantom_steps: int | None = None
    phantom_tau: float | None = None
    ift_max_iter: int | None = None
    ift_tol: float | None = None
    autocast_tol: float | None = None
    jacobian_reg: float | None = None
    jacobian_reg_samples: int | None = None


@dataclass
class ModelSection:
    """Which model and size, plus optional architecture overrides (``None``: from the size builder)."""

    name: str = MISSING
    size: str = MISSING
    variant: str | None = None  # attractor: paper (default), authors, backbone
    loss_type: str = "stablemax"
    hidden_size: int | None = None
    num_heads: int | None = None
    expansion: float | None = None
    layers: int | None = None
    h_layers: int | None = None
    backbone_layers: int | None = None
    h_cycles: int | None = None
    l_cycles: int | None = None
    mixer: str | None = None
    pos_encodings: str | None = None
    norm: str | None = None
    puzzle_emb_len: int | None = None
    puzzle_emb_ndim: int | None = None
    halt_max_steps: int | None = None
    halt_exploration_prob: float | None = None
    act_continue: bool | None = None
    solver: SolverOverrides = field(default_factory=SolverOverrides)


@dataclass
class TaskSection:
    """The dataset: a registered `puzzles` dataset built into ``cache_dir`` when missing, or ``data_dir``."""

    name: str = MISSING
    data_dir: str | None = None
    cache_dir: str = "data"
    train: int = 1000
    test: int = 1000
    aug: int = 0
    build_seed: int = 0
    augment: bool = True


@dataclass
class TrainerSection:
    """Optimisation, precision, logging and checkpointing."""

    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    batch_size: int = 256
    grad_accum: int = 1
    steps: int = 2000
    max_minutes: float | None = None  # wall-time budget of the training loop (evaluation excluded); null: none
    max_flops: float | None = None  # training-FLOP budget (measured, see recursive_models.trainer); null: none
    count_flops: bool = True  # measure training FLOPs (one step in every log_interval) for reports and budgets
    lr: float = 1e-4
    lr_warmup_steps: int = 100
    lr_min_ratio: float = 1.0
    weight_decay: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.95
    puzzle_emb_lr: float = 1e-2
    puzzle_emb_weight_decay: float = 1.0
    grad_clip: float | None = None
    ema: bool = True
    ema_rate: float = 0.999
    eval_interval: int = 0
    eval_batch_size: int = 512
    eval_limit: int | None = None
    checkpoint_interval: int = 500
    keep_checkpoints: int = 2
    seed: int = 0
    out_dir: str = "runs/${model.name}-${model.size}-${task.name}-${now:%Y%m%d-%H%M%S}"
    resume: bool = False
    log_interval: int = 10
    tensorboard: bool = False
    progress: bool = True
    threads: int | None = None
    # ours: on CPU, probe a few examples first; refuse a run that would not fit in memory, announce a long one
    preflight: bool = True


@dataclass
class TrainConfig:
    """The whole training configuration."""

    model: ModelSection = field(default_factory=ModelSection)
    task: TaskSection = field(default_factory=TaskSection)
    trainer: TrainerSection = field(default_factory=TrainerSection)
    experiment: str | None = None


def check_schema(cfg: Any) -> None:
    """Refuse keys that no schema field declares, anywhere in a composed config.

    Hydra's struct mode already refuses ``trainer.stpes=10``, but its append syntax ``+trainer.stpes=10`` adds
    the key on purpose, and the trainer would silently ignore it. This walks every section typed by a dataclass
    (`TrainConfig` here, `recursive_models.lm.config.LMTrainConfig` for the LM trainer) and names the first
    unknown key; free-form sections typed ``dict`` (the LM's ``model.overrides``) are left to their own checks.

    Raises:
        ValueError: one line naming the key and the closest field.
    """
    import dataclasses
    import difflib

    from omegaconf import DictConfig, OmegaConf

    def walk(node: DictConfig, prefix: str) -> None:
        schema = OmegaConf.get_type(node)
        if dataclasses.is_dataclass(schema):
            known = [f.name for f in dataclasses.fields(schema)]
            for key in node.keys():
                if key not in known:
                    close = difflib.get_close_matches(str(key), known, n=1)
                    hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
                    raise ValueError(f"unknown config key {prefix}{key}: {schema.__name__} has no such field{hint}")
        for key in node.keys():
            child = node._get_node(key)  # the node itself: reading the value would resolve interpolations
            if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing():
                walk(child, f"{prefix}{key}.")

    if isinstance(cfg, DictConfig):
        walk(cfg, "")


def register_configs() -> None:
    """Register the schema with hydra's ConfigStore (``conf/config.yaml`` extends ``train_schema``)."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)


def model_overrides(section: Any) -> dict:
    """The non-``None`` architecture fields of a ``model`` section, as `build_model` keyword arguments."""
    skip = {"name", "size", "loss_type", "solver"}
    out = {k: v for k, v in dict(section).items() if k not in skip and v is not None}
    solver = {k: v for k, v in dict(section["solver"]).items() if v is not None}
    if solver:
        out["solver"] = solver
    return out
