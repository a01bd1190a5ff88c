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
    lr: float = 3e-3
    lr_warmup_steps: int = 50
    lr_min_ratio: float = 0.1
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float | None = 1.0
    eval_interval: int = 0
    eval_batches: int | None = 40
    eval_batch_size: int = 32
    log_interval: int = 10
    seed: int = 0
    out_dir: str = "runs/lm-${model.name}-${model.size}-${now:%Y%m%d-%H%M%S}"
    progress: bool = True
    threads: int | None = None


@dataclass
class LMTrainConfig:
    """The whole LM training configuration."""

    model: LMModelSection = field(default_factory=LMModelSection)
    data: LMDataSection = field(default_factory=LMDataSection)
    trainer: LMTrainerSection = field(default_factory=LMTrainerSection)


def register_lm_configs() -> None:
    """Register the schema with hydra's ConfigStore (``lm/conf/config.yaml`` extends ``lm_train_schema``)."""
    ConfigStore.instance().store(name="lm_train_schema", node=LMTrainConfig)
