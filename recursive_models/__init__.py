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

from __future__ import annotations

import importlib

# Public names load on first use (PEP 562): `python -m recursive_models.report --help` (and every other CLI's
# --help and argument errors) must not wait for torch. The registry's names register the built-in models first.
_EXPORTS = {
    "recursive_models.base": ["Carry", "ModelConfig", "RecursiveModel", "SolverConfig"],
    "recursive_models.registry": ["MODELS", "build_model", "from_config", "register_model", "resolve_config"],
    "recursive_models.checkpoint": ["load_checkpoint"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        if _WHERE[name] == "recursive_models.registry":
            importlib.import_module("recursive_models.models")  # registers the built-in models in MODELS
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value  # cache: later lookups skip __getattr__
        return value
    raise AttributeError(f"module 'recursive_models' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
