"""Validity-preserving augmentations for Sudoku (any r×c box shape) and mazes (dihedral group).

Sudoku: a random relabelling of the digits, permutations of the bands, of the rows inside each
band, of the stacks and of the columns inside each stack, and (for square boxes only) a
transpose. Every one of these maps a valid grid to a valid grid and a unique-solution puzzle to
a unique-solution puzzle, and it is applied identically to the puzzle and to its solution.

Maze: the 8 symmetries of the square, numbered as in the HRM/TRM ``dihedral_transform`` so
datasets built here and there agree on what transform id ``k`` means.

Usage::

    rng = np.random.default_rng(0)
    p2, s2 = augment_sudoku(puzzle, solution, rng, box=(3, 3))
    m2 = dihedral(maze, 5)
"""

from __future__ import annotations

import numpy as np

from puzzles.errors import PuzzleFormatError

# Inverse of each dihedral transform id (rot90 and rot270 swap; the reflections are involutions).
DIHEDRAL_INVERSE = (0, 3, 2, 1, 4, 5, 6, 7)


def sudoku_permutation(
    rng: np.random.Generator, box: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, bool, np.ndarray]:
    """Draw one random validity-preserving Sudoku symmetry.

    Args:
        rng: the random generator to draw from.
        box: ``(rows, cols)`` of one box; the grid side is ``N = rows * cols``.

    Returns:
        ``(row_perm, col_perm, transpose, digit_map)``: new row ``i`` is old row ``row_perm[i]``
        (same for columns, applied after the optional transpose), and ``digit_map[d]`` is the
        new label of digit ``d`` (``digit_map[0] == 0`` keeps blanks blank).
    """
    br, bc = box
    n = br * bc
    # A band is `br` rows tall and there are `bc` bands; a stack is `bc` columns wide, `br` stacks.
    bands = rng.permutation(bc)
    row_perm = np.concatenate([b * br + rng.permutation(br) for b in bands])
    stacks = rng.permutation(br)
    col_perm = np.concatenate([s * bc + rng.permutation(bc) for s in stacks])
    transpose = bool(br == bc and rng.random() < 0.5)
    digit_map = np.concatenate([[0], rng.permutation(np.arange(1, n + 1))]).astype(np.int8)
    return row_perm, col_perm, transpose, digit_map


def apply_sudoku_permutation(
    grid: np.ndarray, row_perm: np.ndarray, col_perm: np.ndarray, transpose: bool, digit_map: np.ndarray
) -> np.ndarray:
    """Apply a symmetry drawn by :func:`sudoku_permutation` to a grid of shape ``(..., N, N)``."""
    g = np.swapaxes(grid, -1, -2) if transpose else grid
    g = g[..., row_perm, :][..., :, col_perm]
    return digit_map[g.astype(np.intp)].astype(grid.dtype)


def augment_sudoku(
    puzzle: np.ndarray, solution: np.ndarray, rng: np.random.Generator, box: tuple[int, int] = (3, 3)
) -> tuple[np.ndarray, np.ndarray]:
    """Apply one random symmetry to a puzzle and its solution (digits 0..N, 0 = blank).

    Args:
        puzzle: ``(N, N)`` integer grid, 0 for blanks.
        solution: ``(N, N)`` integer grid, the puzzle's solution.
        rng: random generator (seed it for reproducible augmentation).
        box: box shape ``(rows, cols)``.

    Returns:
        The transformed ``(puzzle, solution)``, same dtype as the inputs.
    """
    n = box[0] * box[1]
    for name, g in (("puzzle", puzzle), ("solution", solution)):
        if g.shape != (n, n):
            raise PuzzleFormatError(f"{name} has shape {g.shape}; a {box[0]}x{box[1]}-box sudoku is ({n}, {n})")
    perm = sudoku_permutation(rng, box)
    return apply_sudoku_permutation(puzzle, *perm), apply_sudoku_permutation(solution, *perm)


def augment_sudoku_copies(
    puzzle: np.ndarray, solution: np.ndarray, rng: np.random.Generator, copies: int, box: tuple[int, int] = (3, 3)
) -> tuple[np.ndarray, np.ndarray]:
    """Make ``copies`` independently augmented versions of one puzzle and its solution at once.

    Draws the same family of symmetries as :func:`sudoku_permutation`, vectorised over the
    copies (a handful of array draws and one gather instead of ``copies`` Python calls), which
    is what the dataset builder needs for the paper's 1000 augmentations per training puzzle.

    Returns:
        ``(puzzles, solutions)`` of shape ``(copies, N, N)``.
    """
    br, bc = box
    n = br * bc

    def perms(count: int, size: int) -> np.ndarray:  # (copies, count, size), each row a permutation
        return rng.permuted(np.broadcast_to(np.arange(size), (copies, count, size)), axis=-1)

    # Row perm = a permutation of the bc bands, then a permutation of the br rows inside each band.
    rows = (perms(1, bc)[:, 0, :, None] * br + perms(bc, br)).reshape(copies, n, 1)
    cols = (perms(1, br)[:, 0, :, None] * bc + perms(br, bc)).reshape(copies, 1, n)
    flip = (rng.random(copies) < 0.5).reshape(copies, 1, 1) & (br == bc)
    digits = np.concatenate([np.zeros((copies, 1), np.int64), 1 + perms(1, n)[:, 0]], axis=1)  # (copies, N+1)
    k = np.arange(copies).reshape(copies, 1, 1)
    out = []
    for g in (puzzle, solution):
        src = np.where(flip, g.T[None], g[None])  # (copies, N, N), transposed where drawn
        moved = src[k, rows, cols]
        out.append(digits[k, moved.astype(np.intp)].astype(g.dtype))
    return out[0], out[1]


def dihedral(grid: np.ndarray, k: int) -> np.ndarray:
    """Return transform ``k`` (0..7) of the dihedral group applied to the last two axes.

    Ids follow HRM/TRM: 0 identity, 1-3 rotations by 90/180/270 degrees counter-clockwise,
    4 left-right flip, 5 up-down flip, 6 transpose, 7 anti-transpose.
    """
    axes = (-2, -1)
    if k == 0:
        out = grid
    elif k in (1, 2, 3):
        out = np.rot90(grid, k=k, axes=axes)
    elif k == 4:
        out = np.flip(grid, axis=-1)
    elif k == 5:
        out = np.flip(grid, axis=-2)
    elif k == 6:
        out = np.swapaxes(grid, -1, -2)
    elif k == 7:
        out = np.flip(np.rot90(grid, k=1, axes=axes), axis=-1)
    else:
        raise ValueError(f"dihedral transform id must be in 0..7, got {k}")
    return np.ascontiguousarray(out)


def inverse_dihedral(grid: np.ndarray, k: int) -> np.ndarray:
    """Undo :func:`dihedral` with the same id ``k``."""
    return dihedral(grid, DIHEDRAL_INVERSE[k])
