"""Sudoku-Extreme and Maze-Hard: generators, exact solvers, raters, data formats and datasets.

The public names below are imported lazily (on first use), so ``import puzzles`` stays cheap and
does not load numba until a solver or generator is actually needed::

    import puzzles
    grid = puzzles.parse_sudoku("4...3.......6..8..........1....5..9..8....6...7.2........1.27..5.3....4.9........")
    puzzles.rate(grid)                         # tdoku's guess count to the first solution
    maze = puzzles.generate_mazes(4, seed=0)   # MazeBatch of 30×30 Maze-Hard mazes

Command-line tools: ``python -m puzzles.build`` (dataset folders), ``python -m puzzles.verify``,
``python -m puzzles.data``, ``python -m puzzles.sudoku_generator``, ``python -m puzzles.maze_generator``,
``python -m puzzles.maze``, ``python -m puzzles.play`` (play a puzzle: human, exact solver or a checkpoint).

Importing the package registers the Gymnasium envs ``puzzles/Sudoku-v0`` and ``puzzles/Maze-v0``
(see `puzzles.envs`).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "puzzles.errors": ["PuzzleError", "PuzzleFormatError", "PuzzleConstraintError", "NoSolutionError", "DatasetError"],
    "puzzles.sudoku": [
        "BOX_SHAPES", "box_for", "parse_sudoku", "as_grid", "format_sudoku", "pretty_sudoku",
        "validate_givens", "is_solution", "check_solution",
    ],
    "puzzles.sudoku_solver": [
        "solve", "solve_full", "SolveResult", "count_solutions", "rate", "solve_batch", "rate_batch",
    ],
    "puzzles.sudoku_generator": ["generate_sudoku", "PROFILES", "DifficultyProfile", "SudokuBatch"],
    "puzzles.maze": [
        "CHARSET", "WALL", "OPEN", "START", "GOAL", "PATH", "PathCheck", "as_maze", "parse_maze", "format_maze",
        "pretty_maze", "shortest_path", "path_length", "solve_maze", "solve_mazes", "check_prediction",
        "check_predictions",
    ],
    "puzzles.maze_generator": ["MAZE_PRESETS", "MazeBatch", "generate_mazes", "maze_preset"],
    "puzzles.augment": ["augment_sudoku", "augment_sudoku_copies", "dihedral", "inverse_dihedral"],
    "puzzles.formats": ["PuzzleTable", "Split", "read_csv", "write_csv", "read_split", "write_split"],
    "puzzles.datasets": ["DATASETS", "DatasetSpec", "get_dataset"],
    "puzzles.data": ["PuzzleDataset", "make_dataloader", "IGNORE_LABEL_ID"],
}  # fmt: skip
# Gymnasium envs: registered now, their modules load on the first gymnasium.make.
from puzzles.envs import register_envs as _register_envs  # noqa: E402

_register_envs()

_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value  # cache: later lookups skip __getattr__
        return value
    raise AttributeError(f"module 'puzzles' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
