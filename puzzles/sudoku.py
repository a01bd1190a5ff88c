"""Sudoku grids: parsing, formatting and constraint checking for 4x4, 6x6 and 9x9 boards.

A grid is a numpy ``int8`` array of shape ``(N, N)``: 0 is a blank, 1..N are digits. Boxes are
``box = (rows, cols)`` with ``N = rows * cols``; the supported shapes are in :data:`BOX_SHAPES`
(a 6x6 grid has boxes 2 rows tall and 3 columns wide). The text form is one character per cell,
row-major, ``.`` or ``0`` for a blank; whitespace is ignored, so both the 81-character line of the
Sudoku-Extreme CSV and a 9-line block parse.

Usage::

    from puzzles.sudoku import parse_sudoku, format_sudoku, pretty_sudoku
    g = parse_sudoku("4...3.......6..8..........1....5..9..8....6...7.2........1.27..5.3....4.9........")
    print(pretty_sudoku(g))
    assert format_sudoku(g) == "4...3.......6..8..........1....5..9..8....6...7.2........1.27..5.3....4.9........"

The exact solver lives in :mod:`puzzles.sudoku_solver`, the generator in
:mod:`puzzles.sudoku_generator`.
"""

from __future__ import annotations

import numpy as np

from puzzles.errors import PuzzleConstraintError, PuzzleFormatError

#: Grid side -> box shape ``(rows, cols)``.
BOX_SHAPES: dict[int, tuple[int, int]] = {4: (2, 2), 6: (2, 3), 9: (3, 3)}


def box_for(n: int) -> tuple[int, int]:
    """Return the box shape ``(rows, cols)`` of an ``n x n`` sudoku.

    Raises:
        PuzzleFormatError: if ``n`` is not one of the supported sides (4, 6, 9).
    """
    try:
        return BOX_SHAPES[int(n)]
    except KeyError:
        raise PuzzleFormatError(f"unsupported sudoku side {n}; supported sides are {sorted(BOX_SHAPES)}") from None


def _check_box(box: tuple[int, int] | None, n: int) -> tuple[int, int]:
    """Resolve ``box`` (``None`` = default for ``n``) and check that it tiles an ``n x n`` grid."""
    if box is None:
        return box_for(n)
    try:
        br, bc = (int(v) for v in box)
    except (TypeError, ValueError):
        raise PuzzleFormatError(f"box must be a pair (rows, cols), got {box!r}") from None
    if br < 1 or bc < 1 or br * bc != n:
        raise PuzzleFormatError(f"box {box!r} does not tile a {n}x{n} grid (rows * cols must be {n})")
    return br, bc


def parse_sudoku(text: str, box: tuple[int, int] | None = None) -> np.ndarray:
    """Parse a sudoku from text, one character per cell, row-major.

    Whitespace (including newlines) is ignored; ``.`` and ``0`` are blanks; ``1``..``N`` are
    digits. The side is inferred from the length (16, 36 or 81 cells) unless ``box`` is given.

    Args:
        text: the puzzle text.
        box: box shape; default is :func:`box_for` of the inferred side.

    Returns:
        ``(N, N)`` int8 grid, 0 = blank.

    Raises:
        PuzzleFormatError: wrong number of cells, unknown character, or digit larger than N (the
            message names the row and column, counted from 1).
        PuzzleConstraintError: two equal givens in one row, column or box.
    """
    if not isinstance(text, str):
        raise PuzzleFormatError(f"sudoku text must be a str, got {type(text).__name__}")
    cells = "".join(text.split())
    if box is not None:
        n = int(box[0]) * int(box[1])
        if len(cells) != n * n:
            raise PuzzleFormatError(f"sudoku text has {len(cells)} cells; a {box[0]}x{box[1]}-box sudoku has {n * n}")
    else:
        sides = {s * s: s for s in BOX_SHAPES}
        if len(cells) not in sides:
            raise PuzzleFormatError(
                f"sudoku text has {len(cells)} cells; expected 16, 36 or 81 (one per cell, "
                "'.' or '0' for blanks, whitespace ignored)"
            )
        n = sides[len(cells)]
    box = _check_box(box, n)
    grid = np.zeros((n, n), dtype=np.int8)
    for k, ch in enumerate(cells):
        r, c = divmod(k, n)
        if ch in ".0":
            continue
        if not ch.isdigit() or not ch.isascii():
            raise PuzzleFormatError(
                f"unknown character {ch!r} at row {r + 1}, column {c + 1}; use digits 1-{n} and '.' or '0' for blanks"
            )
        d = int(ch)
        if d > n:
            raise PuzzleFormatError(f"digit {d} at row {r + 1}, column {c + 1} is larger than {n}")
        grid[r, c] = d
    validate_givens(grid, box)
    return grid


def as_grid(x: np.ndarray | list, box: tuple[int, int] | None = None) -> np.ndarray:
    """Check an array-like sudoku and return it as a C-contiguous ``(N, N)`` int8 grid.

    Accepts any integer array (or nested list) of digits 0..N with 0 = blank. Token encodings
    (such as the HRM/TRM ``1 = blank, 2..10 = digits``) are not accepted here; decode them first.

    Raises:
        PuzzleFormatError: wrong shape, non-integer dtype, or values outside 0..N.
        PuzzleConstraintError: two equal givens in one row, column or box.
    """
    a = np.asarray(x)
    if a.ndim != 2:
        raise PuzzleFormatError(f"sudoku grid must have shape (N, N), got {a.shape}")
    g, box = check_digit_array(a, box)
    validate_givens(g, box)
    return g


def check_digit_array(x: np.ndarray, box: tuple[int, int] | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Check the shape, dtype and value range of one grid ``(N, N)`` or a batch ``(B, N, N)``.

    Shared by :func:`as_grid` and the batch solvers so both report bad input the same way; the
    givens' consistency is checked separately (:func:`validate_givens`).

    Returns:
        ``(grids, box)``: the input as C-contiguous int8 and the resolved box shape.

    Raises:
        PuzzleFormatError: wrong shape, non-integer dtype, or a value outside 0..N, naming the grid
            (for a batch), row and column (1-based).
    """
    a = np.asarray(x)
    if a.ndim not in (2, 3) or a.shape[-1] != a.shape[-2]:
        raise PuzzleFormatError(f"sudoku grids must have shape (N, N) or (B, N, N), got {a.shape}")
    n = a.shape[-1]
    box = _check_box(box, n)
    if a.dtype == bool or not np.issubdtype(a.dtype, np.integer):
        raise PuzzleFormatError(f"sudoku grids must hold integers 0..{n}, got dtype {a.dtype}")
    bad = np.argwhere((a < 0) | (a > n))
    if len(bad):
        *grid, r, c = (int(v) for v in bad[0])
        where = f"grid {grid[0]}: " if grid else ""
        value = int(a[tuple(bad[0])])
        raise PuzzleFormatError(f"{where}value {value} at row {r + 1}, column {c + 1} is outside 0..{n} (0 = blank)")
    return np.ascontiguousarray(a, dtype=np.int8), box


def format_sudoku(grid: np.ndarray, blank: str = ".") -> str:
    """Return the row-major one-line text form (the inverse of :func:`parse_sudoku`)."""
    g = np.asarray(grid)
    return "".join(blank if v == 0 else str(int(v)) for v in g.reshape(-1))


def pretty_sudoku(grid: np.ndarray, box: tuple[int, int] | None = None, blank: str = ".") -> str:
    """Return a multi-line, human-readable rendering with box separators."""
    g = np.asarray(grid)
    n = g.shape[0]
    br, bc = _check_box(box, n)
    sep = "+".join(["-" * (2 * bc + 1)] * br)
    lines = []
    for r in range(n):
        if r and r % br == 0:
            lines.append(sep)
        parts = []
        for s in range(br):
            cells = g[r, s * bc : (s + 1) * bc]
            parts.append(" " + " ".join(blank if v == 0 else str(int(v)) for v in cells) + " ")
        lines.append("|".join(parts))
    return "\n".join(lines)


def _units(n: int, box: tuple[int, int]):
    """Yield ``(kind, index, cells)`` for every row, column and box; ``cells`` are (r, c) pairs."""
    br, bc = box
    for r in range(n):
        yield "row", r, [(r, c) for c in range(n)]
    for c in range(n):
        yield "column", c, [(r, c) for r in range(n)]
    for b in range(n):
        r0, c0 = (b // br) * br, (b % br) * bc
        yield "box", b, [(r0 + i, c0 + j) for i in range(br) for j in range(bc)]


def validate_givens(grid: np.ndarray, box: tuple[int, int] | None = None) -> None:
    """Raise if two equal digits share a row, column or box (blanks are ignored).

    Raises:
        PuzzleConstraintError: naming the digit, the unit and the two positions, e.g.
            ``digit 5 appears twice in row 3 (columns 2 and 7)`` (all counted from 1).
    """
    g = np.asarray(grid)
    n = g.shape[0]
    box = _check_box(box, n)
    for kind, idx, cells in _units(n, box):
        seen: dict[int, tuple[int, int]] = {}
        for r, c in cells:
            d = int(g[r, c])
            if d == 0:
                continue
            if d in seen:
                r0, c0 = seen[d]
                if kind == "row":
                    where = f"columns {c0 + 1} and {c + 1}"
                elif kind == "column":
                    where = f"rows {r0 + 1} and {r + 1}"
                else:
                    where = f"cells r{r0 + 1}c{c0 + 1} and r{r + 1}c{c + 1}"
                raise PuzzleConstraintError(f"digit {d} appears twice in {kind} {idx + 1} ({where})")
            seen[d] = (r, c)


def is_solution(grid: np.ndarray, box: tuple[int, int] | None = None) -> bool:
    """Return whether ``grid`` is completely filled and every row, column and box is 1..N."""
    g = np.asarray(grid)
    if g.ndim != 2 or g.shape[0] != g.shape[1]:
        return False
    n = g.shape[0]
    br, bc = _check_box(box, n)
    want = np.arange(1, n + 1)
    boxes = g.reshape(bc, br, br, bc).transpose(0, 2, 1, 3).reshape(n, n)
    return all(np.array_equal(np.sort(block, axis=1), np.broadcast_to(want, (n, n))) for block in (g, g.T, boxes))


def check_solution(puzzle: np.ndarray, solution: np.ndarray, box: tuple[int, int] | None = None) -> None:
    """Raise a clear error unless ``solution`` is a valid filled grid that keeps every given.

    Raises:
        PuzzleFormatError: shapes differ, or a cell of the solution is blank or out of range.
        PuzzleConstraintError: the solution repeats a digit in a unit, or changes a given.
    """
    p, s = np.asarray(puzzle), np.asarray(solution)
    if p.shape != s.shape or p.ndim != 2:
        raise PuzzleFormatError(f"puzzle shape {p.shape} and solution shape {s.shape} differ")
    n = p.shape[0]
    box = _check_box(box, n)
    bad = np.argwhere((s < 1) | (s > n))
    if len(bad):
        r, c = bad[0]
        raise PuzzleFormatError(f"solution cell row {r + 1}, column {c + 1} is {int(s[r, c])}, not 1..{n}")
    validate_givens(s, box)
    diff = np.argwhere((p != 0) & (p != s))
    if len(diff):
        r, c = diff[0]
        raise PuzzleConstraintError(
            f"solution has {int(s[r, c])} at row {r + 1}, column {c + 1} where the puzzle gives {int(p[r, c])}"
        )
