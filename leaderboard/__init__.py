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

from leaderboard.db import Board
from leaderboard.scoring import submit, verify
from leaderboard.tasks import TASKS, get_task
from leaderboard.validate import Limits, SubmissionError, inspect_submission, open_submission
from leaderboard.worker import WorkerLimits

__all__ = [
    "TASKS",
    "Board",
    "Limits",
    "SubmissionError",
    "WorkerLimits",
    "get_task",
    "inspect_submission",
    "open_submission",
    "submit",
    "verify",
]
