"""The papers' published accuracies, per puzzle task: facts about models on tasks, shown as "reported".

`recursive_models.report` adds them to a sweep's table (``source = reported``) and `leaderboard.tasks` puts them
on the board next to measured scores; both import them from here, so training and reporting never depend on
the board. Tasks without published numbers (the CPU presets) have no entry.

    from recursive_models.reported import REPORTED
    for name, model, parameters, accuracy, source in REPORTED["sudoku-extreme"]:
        print(f"{name:16} {accuracy:.1%}  ({source})")
"""

from __future__ import annotations

#: one published number: (shown name, registered model, parameters, test exact accuracy, where it is published)
Reported = tuple[str, str, int, float, str]

# HRM and TRM: the TRM paper (Jolicoeur-Martineau 2025), Table 1 (HRM 27M, TRM with self-attention 7M; TRM-MLP
# 5M on Sudoku). Attractor: "Solve the Loop" (2026), 27M.
SUDOKU_EXTREME: tuple[Reported, ...] = (
    ("HRM", "hrm", 27_000_000, 0.550, "TRM paper, Table 1"),
    ("TRM (attention)", "trm", 7_000_000, 0.747, "TRM paper, Table 1"),
    ("TRM (MLP)", "trm", 5_000_000, 0.874, "TRM paper, Table 1"),
    ("Attractor-TRM", "attractor", 27_000_000, 0.914, "Solve the Loop (2026)"),
)
MAZE_HARD: tuple[Reported, ...] = (
    ("HRM", "hrm", 27_000_000, 0.745, "TRM paper, Table 1"),
    ("TRM (attention)", "trm", 7_000_000, 0.853, "TRM paper, Table 1"),
    ("Attractor-TRM", "attractor", 27_000_000, 0.931, "Solve the Loop (2026)"),
)

#: puzzle dataset name (`puzzles.datasets`) -> its published numbers
REPORTED: dict[str, tuple[Reported, ...]] = {"sudoku-extreme": SUDOKU_EXTREME, "maze-hard": MAZE_HARD}
