"""Leaderboard: score submitted checkpoints safely into a versioned, real database.

    python -m leaderboard submit runs/my-run --task sudoku6 --name alice
    python -m leaderboard show
    python -m leaderboard export --html board.html

A submission is untrusted: it is opened without running any of its code (safetensors, or pickles only through
``torch.load(weights_only=True)``), validated against the architecture its ``meta.json`` names and the task's
bounds (`leaderboard.validate`), scored in a separate worker process under hard memory, CPU-time and wall-clock
limits (`leaderboard.worker`) under a versioned task spec (`leaderboard.tasks`), and recorded in SQLite or any
SQLAlchemy database (`leaderboard.db`).
"""

import importlib

# Public names load on first use (PEP 562): `python -m leaderboard --help` must not wait for torch.
_EXPORTS = {
    "leaderboard.db": ["Board"],
    "leaderboard.scoring": ["submit", "verify"],
    "leaderboard.tasks": ["TASKS", "get_task"],
    "leaderboard.validate": ["Limits", "SubmissionError", "inspect_submission", "open_submission"],
    "leaderboard.worker": ["WorkerLimits"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value  # cache: later lookups skip __getattr__
        return value
    raise AttributeError(f"module 'leaderboard' has no attribute {name!r}")
