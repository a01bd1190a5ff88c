"""Error types raised by the puzzles package.

Every malformed input raises one of these (all are ``ValueError`` subclasses), with a message
that names the offending row, column, unit, character or file, so a user never has to read a
traceback from deep inside a solver to learn what was wrong with their puzzle.

Example::

    from puzzles.errors import PuzzleFormatError
    try:
        parse_sudoku("12")
    except PuzzleFormatError as e:
        print(e)   # "sudoku text has 2 cells; expected 16, 36 or 81 ..."
"""

from __future__ import annotations


class PuzzleError(ValueError):
    """Base class of every error about a puzzle's content or a dataset file."""


class PuzzleFormatError(PuzzleError):
    """The text, array or file does not have the documented shape, length or alphabet."""


class PuzzleConstraintError(PuzzleError):
    """The puzzle is well formed but breaks a rule (two equal givens in a unit, two starts)."""


class NoSolutionError(PuzzleError):
    """The puzzle is well formed but has no solution (or the goal is unreachable)."""


class DatasetError(PuzzleError):
    """A dataset folder or CSV is missing a file, has inconsistent arrays or bad metadata."""
