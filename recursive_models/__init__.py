"""recursive_models: HRM, TRM, Attractor-TRM and a Transformer baseline with deep supervision and ACT.

    from recursive_models import build_model, MODELS, load_checkpoint
    model = build_model("attractor", "27m", task="sudoku-extreme")
    model, meta = load_checkpoint("runs/my-run/checkpoint")      # no training code needed

Train: ``python -m recursive_models.train model=attractor size=27m task=sudoku-extreme``.
Evaluate: ``python -m recursive_models.evaluate runs/my-run``.
Layout: ``layers.py`` (shared blocks), ``base.py`` (config, carry, ACT), ``models/`` (one file per model),
``registry.py``, ``losses.py``, ``config.py`` + ``conf/`` (hydra), ``trainer.py``, ``checkpoint.py``,
``evaluation.py``, ``train.py`` / ``evaluate.py`` (CLIs), ``convert.py`` (import TRM/HRM reference checkpoints:
``python -m recursive_models.convert --from trm STEP_FILE OUT_DIR``), ``reference.py`` (the reference code from a
local checkout, for fidelity tests and benchmarks).
"""

import recursive_models.models  # noqa: F401 -- registers the built-in models in MODELS
from recursive_models.base import Carry, ModelConfig, RecursiveModel, SolverConfig
from recursive_models.registry import MODELS, build_model, from_config, register_model, resolve_config

__all__ = [
    "MODELS",
    "Carry",
    "ModelConfig",
    "RecursiveModel",
    "SolverConfig",
    "build_model",
    "from_config",
    "load_checkpoint",
    "register_model",
    "resolve_config",
]


def __getattr__(name: str):
    if name == "load_checkpoint":
        from recursive_models.checkpoint import load_checkpoint

        return load_checkpoint
    raise AttributeError(f"module 'recursive_models' has no attribute {name!r}")
