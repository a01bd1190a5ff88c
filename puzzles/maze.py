"""Maze-Hard engine: parse, validate, format, solve (BFS) and verify 2-D grid mazes.

A maze is a square ``numpy.uint8`` array of HRM/TRM token ids (the format of the
``maze-30x30-hard-1k`` dataset), one token per cell::

    0 pad (never inside a maze)   1 '#' wall   2 ' ' open   3 'S' start   4 'G' goal   5 'o' path

The label of a maze is the same grid with the cells of one shortest S→G path marked ``PATH``.
Mazes usually have many shortest paths; the labelled one is the parent chain of the breadth-first
search from S that expands neighbours in the order down, left, right, up, each cell keeping the
neighbour that discovered it first. That rule reproduces all 1000 labels of the real Maze-Hard train
split (checked in ``tests/test_maze.py``), so a model that learns it can match the labels exactly;
:func:`check_prediction` also reports whether a prediction is *some* valid shortest path.

``PATH`` tokens in an input maze are treated as open cells: the solvers ignore them and their
outputs carry only the freshly computed path, so ``solve_maze(solve_maze(m)) == solve_maze(m)`` and
a label can be passed wherever a maze is expected.

Usage::

    from puzzles.maze import parse_maze, solve_maze, pretty_maze, check_prediction
    maze = parse_maze(open("maze.txt").read())     # 900-char line or 30 lines of 30
    label = solve_maze(maze)
    print(pretty_maze(label))
    check_prediction(maze, model_output)           # PathCheck(matches_label, valid_shortest, reason)

Run ``python -m puzzles.maze FILE`` to solve a maze stored as text and print it with its path.
"""

from __future__ import annotations

import math
import sys
from typing import NamedTuple

import numpy as np
from numba import njit

from puzzles.errors import NoSolutionError, PuzzleConstraintError, PuzzleError, PuzzleFormatError

PAD, WALL, OPEN, START, GOAL, PATH = 0, 1, 2, 3, 4, 5
# Character of token id t is CHARSET[t - 1] (id 0 is padding and has no character).
CHARSET = "# SGo"
DEFAULT_SIZE = 30
# Neighbour expansion order of the reference BFS, as (row, column) steps: down, left, right, up.
# Changing it changes which of the many shortest paths becomes the label.
BFS_ORDER = ((1, 0), (0, -1), (0, 1), (-1, 0))

_CHAR_TO_TOKEN = {c: i + 1 for i, c in enumerate(CHARSET)}
# Lookup table bytes -> token id, 0 marking a character outside CHARSET.
_BYTE_TO_TOKEN = np.zeros(256, dtype=np.uint8)
for _c, _t in _CHAR_TO_TOKEN.items():
    _BYTE_TO_TOKEN[ord(_c)] = _t
_TOKEN_TO_BYTE = np.frombuffer(b"?" + CHARSET.encode(), dtype=np.uint8)


class PathCheck(NamedTuple):
    """Verdict of :func:`check_prediction` on one predicted labelled grid.

    Attributes:
        matches_label: the prediction equals the reference label cell for cell.
        valid_shortest: the prediction marks *a* shortest S→G path (not necessarily the label's)
            and leaves every other cell as in the maze.
        reason: ``"ok"`` when both hold, otherwise a short explanation of the first failure.
    """

    matches_label: bool
    valid_shortest: bool
    reason: str


# --------------------------------------------------------------------------------------------
# Parsing, validation and formatting
# --------------------------------------------------------------------------------------------


def _side(n_cells: int, what: str) -> int:
    n = math.isqrt(n_cells)
    if n * n != n_cells:
        raise PuzzleFormatError(f"{what} has {n_cells} cells, which is not a square number; a maze is N×N")
    return n


def _check_start_goal(grid: np.ndarray) -> None:
    """Raise PuzzleConstraintError unless ``grid`` (N, N) holds exactly one START and one GOAL."""
    for token, name in ((START, "start 'S'"), (GOAL, "goal 'G'")):
        where = np.argwhere(grid == token)
        if len(where) != 1:
            cells = ", ".join(f"({r}, {c})" for r, c in where[:5]) + (", ..." if len(where) > 5 else "")
            at = f" at {cells}" if len(where) else ""
            raise PuzzleConstraintError(f"maze has {len(where)} {name} cells{at}; expected exactly one")


def parse_maze(text: str, size: int | None = None) -> np.ndarray:
    r"""Parse a maze from text over ``CHARSET = "# SGo"``.

    Two layouts are accepted: one line of N*N characters in row-major order (the form of the
    Maze-Hard CSV ``question``/``answer`` columns), or N lines of N characters each (the form of
    :func:`pretty_maze`). Spaces are open cells, so lines are never stripped of blanks; only
    ``\r`` and empty lines at the very start or end are dropped.

    Args:
        text: the maze text. ``'o'`` path cells are allowed (a labelled maze parses too).
        size: the expected side N; ``None`` infers it from the text.

    Returns:
        ``(N, N)`` uint8 array of token ids.

    Raises:
        PuzzleFormatError: not a string, a character outside ``CHARSET``, unequal line lengths, a
            non-square grid or a side different from ``size``.
        PuzzleConstraintError: not exactly one ``S`` and one ``G``.
    """
    if not isinstance(text, str):
        raise PuzzleFormatError(f"maze text must be a str, got {type(text).__name__}")
    lines = text.replace("\r", "").split("\n")
    while lines and lines[0] == "":
        lines.pop(0)
    while lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise PuzzleFormatError("maze text is empty")
    if len(lines) == 1:
        n = _side(len(lines[0]), "single-line maze text")
        rows = [lines[0][i * n : (i + 1) * n] for i in range(n)]
    else:
        for r, line in enumerate(lines):
            if len(line) != len(lines[0]):
                raise PuzzleFormatError(
                    f"maze line {r} has {len(line)} characters but line 0 has {len(lines[0])}; "
                    "all lines must have equal length"
                )
        if len(lines) != len(lines[0]):
            raise PuzzleFormatError(f"maze has {len(lines)} lines of {len(lines[0])} characters; must be square")
        n, rows = len(lines), lines
    if size is not None and n != size:
        raise PuzzleFormatError(f"maze is {n}×{n}; expected {size}×{size}")
    for r, row in enumerate(rows):
        for c, ch in enumerate(row):
            if ch not in _CHAR_TO_TOKEN:
                raise PuzzleFormatError(f"character {ch!r} at row {r}, column {c} is not one of {CHARSET!r}")
    grid = _BYTE_TO_TOKEN[np.frombuffer("".join(rows).encode("ascii"), dtype=np.uint8)].reshape(n, n)
    _check_start_goal(grid)
    return grid


def _as_token_array(arr: object, what: str) -> np.ndarray:
    """Return ``arr`` as an integer ndarray, raising PuzzleFormatError for non-integer data."""
    a = np.asarray(arr)
    if a.dtype.kind not in "iu":
        raise PuzzleFormatError(f"{what} must hold integer token ids, got dtype {a.dtype}")
    return a


def as_maze(arr: object, size: int | None = None) -> np.ndarray:
    """Validate an array of token ids as a maze and return it as a fresh ``(N, N)`` uint8 array.

    Args:
        arr: ``(N, N)`` or flat ``(N*N,)`` integer array (a row of the HRM ``.npy`` files is flat).
        size: the expected side N, or ``None`` for any.

    Returns:
        A new ``(N, N)`` uint8 array (the input is never aliased).

    Raises:
        PuzzleFormatError: wrong dtype, dimensions or side, or a token outside 1..5 (0 = padding).
        PuzzleConstraintError: not exactly one START and one GOAL.
    """
    a = _as_token_array(arr, "maze")
    if a.ndim == 1:
        a = a.reshape(_side(a.size, "flat maze array"), -1)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise PuzzleFormatError(f"maze array has shape {a.shape}; expected (N, N) or (N*N,)")
    if size is not None and a.shape[0] != size:
        raise PuzzleFormatError(f"maze is {a.shape[0]}×{a.shape[1]}; expected {size}×{size}")
    bad = np.argwhere((a < WALL) | (a > PATH))
    if len(bad):
        r, c = bad[0]
        raise PuzzleFormatError(
            f"token {int(a[r, c])} at row {r}, column {c} is not a maze token "
            "(1 '#', 2 ' ', 3 'S', 4 'G', 5 'o'; 0 is padding)"
        )
    grid = a.astype(np.uint8, copy=True)
    _check_start_goal(grid)
    return grid


def format_maze(grid: object) -> str:
    """Return a maze (or labelled maze) as one row-major line of N*N characters over ``CHARSET``."""
    g = as_maze(grid)
    return _TOKEN_TO_BYTE[g].tobytes().decode("ascii")


def pretty_maze(grid: object) -> str:
    """Return a maze (or labelled maze) as N lines of N characters, parseable by :func:`parse_maze`."""
    line = format_maze(grid)
    n = math.isqrt(len(line))
    return "\n".join(line[i * n : (i + 1) * n] for i in range(n))


def strip_path(grid: np.ndarray) -> np.ndarray:
    """Return a copy of ``grid`` with every ``PATH`` token turned back into ``OPEN``."""
    out = np.array(grid, dtype=np.uint8, copy=True)
    out[out == PATH] = OPEN
    return out


# --------------------------------------------------------------------------------------------
# Breadth-first search (numba)
# --------------------------------------------------------------------------------------------
# The BFS runs on a flat copy of the grid padded with a one-cell wall border, so the inner loop
# needs no bounds checks: cell (r, c) of an N×N maze is index (r + 1) * (N + 2) + (c + 1).


@njit(cache=True, nogil=True)
def _bfs_padded(free, width, start, goal, parent, dist, stamp, mark, queue):
    """BFS on a padded flat grid; return the S→G distance in moves, or -1 if G is unreachable.

    ``free[i]`` is nonzero for passable cells. ``stamp[i] == mark`` marks cells discovered in this
    search, so the scratch arrays are reused across searches without clearing. ``parent[v]`` is the
    cell that discovered ``v`` first, which fixes the labelled path among all shortest paths.
    """
    # Order matters: down, left, right, up (see BFS_ORDER).
    o0, o1, o2, o3 = width, -1, 1, -width
    stamp[start] = mark
    parent[start] = -1
    dist[start] = 0
    queue[0] = start
    head, tail = 0, 1
    while head < tail:
        u = queue[head]
        head += 1
        du = dist[u] + 1
        for k in range(4):
            v = u + (o0 if k == 0 else o1 if k == 1 else o2 if k == 2 else o3)
            if free[v] != 0 and stamp[v] != mark:
                stamp[v] = mark
                parent[v] = u
                dist[v] = du
                # Stopping at G's discovery is safe: its parent chain is already final.
                if v == goal:
                    return du
                queue[tail] = v
                tail += 1
    return -1


@njit(cache=True, nogil=True)
def _solve_batch(grids, labels, lengths):
    """Solve ``grids`` (B, N, N) into ``labels`` (B, N, N); ``lengths[b]`` = path cells or -1."""
    b_count, n = grids.shape[0], grids.shape[1]
    w = n + 2
    free = np.zeros(w * w, dtype=np.uint8)
    parent = np.empty(w * w, dtype=np.int32)
    dist = np.empty(w * w, dtype=np.int32)
    stamp = np.zeros(w * w, dtype=np.int32)
    queue = np.empty(w * w, dtype=np.int32)
    for b in range(b_count):
        start, goal = -1, -1
        for r in range(n):
            for c in range(n):
                t = grids[b, r, c]
                i = (r + 1) * w + c + 1
                free[i] = 1 if t != 1 else 0
                if t == 3:
                    start = i
                elif t == 4:
                    goal = i
                # PATH marks in the input are dropped: the output carries only the new path.
                labels[b, r, c] = 2 if t == 5 else t
        d = _bfs_padded(free, w, start, goal, parent, dist, stamp, b + 1, queue)
        if d < 0:
            lengths[b] = -1
            continue
        lengths[b] = d + 1
        v = parent[goal]
        while v != start:
            labels[b, v // w - 1, v % w - 1] = 5
            v = parent[v]


@njit(cache=True, nogil=True)
def _path_cells(grid, out):
    """Write the BFS path's padded-free (r, c) cells S..G into ``out``; return their count or -1."""
    n = grid.shape[0]
    w = n + 2
    free = np.zeros(w * w, dtype=np.uint8)
    parent = np.empty(w * w, dtype=np.int32)
    dist = np.empty(w * w, dtype=np.int32)
    stamp = np.zeros(w * w, dtype=np.int32)
    queue = np.empty(w * w, dtype=np.int32)
    start, goal = -1, -1
    for r in range(n):
        for c in range(n):
            i = (r + 1) * w + c + 1
            free[i] = 1 if grid[r, c] != 1 else 0
            if grid[r, c] == 3:
                start = i
            elif grid[r, c] == 4:
                goal = i
    d = _bfs_padded(free, w, start, goal, parent, dist, stamp, 1, queue)
    if d < 0:
        return -1
    v = goal
    for k in range(d, -1, -1):
        out[k, 0] = v // w - 1
        out[k, 1] = v % w - 1
        v = parent[v]
    return d + 1


@njit(cache=True, nogil=True)
def _distances(grid, dist_out):
    """Fill ``dist_out`` (N, N) with BFS distances in moves from S (-1 = unreachable or wall)."""
    n = grid.shape[0]
    queue = np.empty(n * n, dtype=np.int32)
    dist_out[:, :] = -1
    tail = 0
    for r in range(n):
        for c in range(n):
            if grid[r, c] == 3:
                dist_out[r, c] = 0
                queue[0] = r * n + c
                tail = 1
    head = 0
    while head < tail:
        u = queue[head]
        head += 1
        r, c = u // n, u % n
        for k in range(4):
            rr = r + (1 if k == 0 else -1 if k == 3 else 0)
            cc = c + (-1 if k == 1 else 1 if k == 2 else 0)
            if 0 <= rr < n and 0 <= cc < n and grid[rr, cc] != 1 and dist_out[rr, cc] < 0:
                dist_out[rr, cc] = dist_out[r, c] + 1
                queue[tail] = rr * n + cc
                tail += 1


def _grid_batch(grids: object) -> tuple[np.ndarray, tuple[int, ...]]:
    """Validate a batch ``(B, N, N)`` or ``(B, N*N)`` of mazes; return it as (B, N, N) uint8."""
    a = _as_token_array(grids, "maze batch")
    shape = a.shape
    if a.ndim == 2:
        n = _side(a.shape[1], "each flat maze of the batch")
        a = a.reshape(a.shape[0], n, n)
    if a.ndim != 3 or a.shape[1] != a.shape[2]:
        raise PuzzleFormatError(f"maze batch has shape {shape}; expected (B, N, N) or (B, N*N)")
    bad = np.argwhere((a < WALL) | (a > PATH))
    if len(bad):
        b, r, c = bad[0]
        raise PuzzleFormatError(f"maze {b}: token {int(a[b, r, c])} at row {r}, column {c} is not a maze token")
    for token, name in ((START, "start 'S'"), (GOAL, "goal 'G'")):
        counts = (a == token).sum(axis=(1, 2))
        wrong = np.flatnonzero(counts != 1)
        if len(wrong):
            raise PuzzleConstraintError(f"maze {wrong[0]} has {counts[wrong[0]]} {name} cells; expected exactly one")
    return np.ascontiguousarray(a, dtype=np.uint8), shape


def _solve_raw(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solve validated (B, N, N) uint8 mazes; lengths are -1 where G is unreachable."""
    labels = np.empty_like(g)
    lengths = np.empty(len(g), dtype=np.int32)
    _solve_batch(g, labels, lengths)
    return labels, lengths


def shortest_path(grid: object) -> np.ndarray:
    """Return the labelled shortest path as ``(L, 2)`` int64 (row, column) cells from S to G inclusive.

    Among all shortest paths this is the reference one (BFS from S, neighbours expanded down, left,
    right, up, each cell's parent the first cell that discovered it). ``PATH`` cells count as open.

    Raises:
        PuzzleFormatError, PuzzleConstraintError: ``grid`` is not a valid maze (see :func:`as_maze`).
        NoSolutionError: G cannot be reached from S.
    """
    g = as_maze(grid)
    out = np.empty((g.size, 2), dtype=np.int64)
    count = _path_cells(g, out)
    if count < 0:
        raise NoSolutionError("the goal 'G' is not reachable from the start 'S'")
    return out[:count].copy()


def path_length(grid: object) -> int:
    """Return the number of cells on a shortest S→G path, S and G included (the CSV ``rating``)."""
    return len(shortest_path(grid))


def distances(grid: object) -> np.ndarray:
    """Return ``(N, N)`` int32 BFS distances in moves from S; -1 for walls and unreachable cells."""
    g = as_maze(grid)
    out = np.empty(g.shape, dtype=np.int32)
    _distances(g, out)
    return out


def solve_maze(grid: object) -> np.ndarray:
    """Return the label of a maze: a copy with the reference shortest path's cells marked ``PATH``.

    S and G keep their tokens; ``PATH`` tokens already in ``grid`` are cleared first.

    Raises:
        PuzzleFormatError, PuzzleConstraintError: ``grid`` is not a valid maze.
        NoSolutionError: G cannot be reached from S.
    """
    labels, _ = solve_mazes(as_maze(grid)[None])
    return labels[0]


def solve_mazes(grids: object) -> tuple[np.ndarray, np.ndarray]:
    """Solve a batch of mazes in one numba call.

    Args:
        grids: ``(B, N, N)`` or ``(B, N*N)`` integer token ids.

    Returns:
        ``(labels, lengths)``: labels in the input's shape (uint8), and ``(B,)`` int32 numbers of
        path cells including S and G.

    Raises:
        PuzzleFormatError, PuzzleConstraintError: some maze is malformed (the message names it).
        NoSolutionError: some maze has an unreachable goal (the message names them).
    """
    g, shape = _grid_batch(grids)
    labels, lengths = _solve_raw(g)
    unsolved = np.flatnonzero(lengths < 0)
    if len(unsolved):
        raise NoSolutionError(
            f"{len(unsolved)} maze(s) have an unreachable goal, first indices {unsolved[:10].tolist()}"
        )
    return labels.reshape(shape), lengths


# --------------------------------------------------------------------------------------------
# Verifying predictions
# --------------------------------------------------------------------------------------------

# Reason codes of _check_path (0 = valid shortest path).
_REASONS = (
    "ok",
    "a cell other than an open cell was changed (walls, S and G must stay as in the maze)",
    "an open cell holds a token other than ' ' or 'o'",
    "the marked cells do not form a single simple path starting at S",
    "the marked path does not end at G",
    "the marked path is connected but has extra cells off the path",
    "the marked path is longer than the shortest path",
    "the goal is unreachable, so no path is valid",
)


@njit(cache=True, nogil=True)
def _check_path(maze, pred, opt_cells):
    """Return 0 if ``pred`` marks a shortest S→G path of ``opt_cells`` cells in ``maze``, else a reason code.

    ``maze`` and ``pred`` are (N, N) int64; ``maze`` holds no PATH tokens.
    """
    n = maze.shape[0]
    marked = 0
    sr, sc = -1, -1
    for r in range(n):
        for c in range(n):
            m, p = maze[r, c], pred[r, c]
            if m == 2:
                if p == 5:
                    marked += 1
                elif p != 2:
                    return 2
            elif p != m:
                return 1
            if m == 3:
                sr, sc = r, c
    if opt_cells < 0:
        return 7
    # Walk from S along the marked cells (PATH or G); every step must have exactly one way on.
    pr, pc = -1, -1
    r, c = sr, sc
    steps = 0
    while True:
        nxt_r, nxt_c, ways = -1, -1, 0
        for k in range(4):
            rr = r + (1 if k == 0 else -1 if k == 3 else 0)
            cc = c + (-1 if k == 1 else 1 if k == 2 else 0)
            if 0 <= rr < n and 0 <= cc < n and not (rr == pr and cc == pc):
                if pred[rr, cc] == 5 or pred[rr, cc] == 4:
                    ways += 1
                    nxt_r, nxt_c = rr, cc
        if ways != 1:
            return 3
        pr, pc, r, c = r, c, nxt_r, nxt_c
        steps += 1
        if pred[r, c] == 4:
            break
        if steps > marked:
            return 3
    # steps moves visited steps - 1 PATH cells; any other marked cell hangs off the path.
    if steps - 1 != marked:
        return 5
    if steps + 1 != opt_cells:
        return 6
    return 0


@njit(cache=True, nogil=True)
def _check_batch(mazes, preds, opt_cells, codes):
    """Run :func:`_check_path` over a batch, writing reason codes into ``codes``."""
    for i in range(mazes.shape[0]):
        codes[i] = _check_path(mazes[i], preds[i], opt_cells[i])


def _prediction_array(pred: object, n: int) -> tuple[np.ndarray | None, str]:
    """Coerce a prediction to (N, N) int64, or return ``(None, reason)`` when impossible."""
    try:
        a = np.asarray(pred)
    except Exception as e:  # an arbitrary object may fail to convert in arbitrary ways
        return None, f"prediction is not array-like ({type(e).__name__})"
    if a.dtype.kind not in "iub":
        return None, f"prediction has non-integer dtype {a.dtype}"
    if a.size != n * n or a.ndim not in (1, 2) or (a.ndim == 2 and a.shape != (n, n)):
        return None, f"prediction has shape {a.shape}; expected ({n}, {n}) or ({n * n},)"
    return a.reshape(n, n).astype(np.int64), ""


def check_prediction(maze: object, prediction: object, label: object | None = None) -> PathCheck:
    """Score one predicted labelled grid against a maze.

    Args:
        maze: the maze (``PATH`` tokens in it are ignored, so its label can be passed too).
        prediction: the predicted labelled grid, ``(N, N)`` or flat ``(N*N,)`` integer tokens.
            Anything malformed (wrong shape or dtype, tokens out of range) is scored as wrong.
        label: the reference label; ``None`` computes it with :func:`solve_maze`.

    Returns:
        ``PathCheck(matches_label, valid_shortest, reason)``.

    Raises:
        PuzzleFormatError, PuzzleConstraintError: ``maze`` or ``label`` is malformed (those are
            the scorer's inputs, not the model's).
    """
    m = strip_path(as_maze(maze))
    n = m.shape[0]
    # The optimal length always comes from the maze, so a wrong given label cannot move the bar.
    bfs_label, lengths = _solve_raw(m[None])
    opt = int(lengths[0])
    ref = (bfs_label[0] if opt > 0 else None) if label is None else as_maze(label, size=n)
    p, why = _prediction_array(prediction, n)
    if p is None:
        return PathCheck(False, False, why)
    matches = ref is not None and bool(np.array_equal(p, ref))
    code = _check_path(m.astype(np.int64), p, opt)
    if code == 0 and not matches:
        diff = int((p != ref).sum())
        return PathCheck(False, True, f"a valid shortest path, differing from the label in {diff} cells")
    if code != 0 and matches:
        # Only possible when a given label is itself not a shortest path of this maze.
        return PathCheck(True, False, "matches the given label, but " + _REASONS[code])
    return PathCheck(matches, code == 0, _REASONS[code])


def check_predictions(
    mazes: object, predictions: object, labels: object | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Score a batch of predictions; the batch form of :func:`check_prediction` for scorers.

    Args:
        mazes: ``(B, N, N)`` or ``(B, N*N)`` mazes.
        predictions: ``(B, N, N)`` or ``(B, N*N)`` predicted labelled grids (any integer dtype).
            A prediction with tokens outside the maze alphabet is scored False, not an error.
        labels: reference labels of the same shape as ``mazes``; ``None`` recomputes them.

    Returns:
        ``(matches_label, valid_shortest)``, two ``(B,)`` bool arrays.

    Raises:
        PuzzleFormatError: the batches disagree in size, or ``predictions`` cannot be viewed as
            ``B`` grids of the mazes' side.
        NoSolutionError: some maze has an unreachable goal and ``labels`` is None.
    """
    m, _ = _grid_batch(mazes)
    m = np.where(m == PATH, OPEN, m).astype(np.uint8)
    b, n = m.shape[0], m.shape[1]
    p = np.asarray(predictions)
    if p.dtype.kind not in "iub" or p.shape[:1] != (b,) or p.size != b * n * n:
        raise PuzzleFormatError(
            f"predictions have shape {p.shape} and dtype {p.dtype}; expected integer ({b}, {n}, {n}) or ({b}, {n * n})"
        )
    p = p.reshape(b, n, n).astype(np.int64)
    ref, lengths = _solve_raw(m)
    if labels is not None:
        ref, _ = _grid_batch(labels)
        if ref.shape != m.shape:
            raise PuzzleFormatError(f"labels have shape {np.shape(labels)}; expected {m.shape}")
    # An unsolvable maze has no label to match (its BFS "label" is just the maze).
    matches = (p == ref).all(axis=(1, 2)) & (lengths > 0)
    codes = np.empty(b, dtype=np.int32)
    _check_batch(m.astype(np.int64), p, lengths, codes)
    return matches, codes == 0


def main(argv: list[str] | None = None) -> int:
    """Solve the maze in a text file (or stdin) and print it with its path; returns the exit status."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m puzzles.maze",
        description="Solve a maze (900-character line or N lines of '# SG' text) and print its shortest path.",
    )
    parser.add_argument("file", nargs="?", help="text file holding the maze (default: standard input)")
    args = parser.parse_args(argv)
    try:
        if args.file:
            with open(args.file) as f:
                text = f.read()
        else:
            text = sys.stdin.read()
        label = solve_maze(parse_maze(text))
    except (OSError, PuzzleError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(pretty_maze(label))
    print(f"shortest path: {int((label == PATH).sum()) + 2} cells")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
