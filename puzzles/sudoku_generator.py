"""Seeded Sudoku generator with difficulty profiles (4x4, 6x6, 9x9).

Each item ``i`` is built from its own ``np.random.SeedSequence([seed, i])``, so a batch is the
same for a given seed whatever the number of worker processes. For one item:

1. draw the target rating bin from the profile (a distribution over bins of the rating, i.e. the
   guesses the exact solver needs, see :func:`puzzles.sudoku_solver.rate`);
2. draw a random full grid (DPLL on an empty grid with a random digit order per cell);
3. remove givens in random order while the solution stays unique (stop at the first given that
   cannot go, or with ``minimal=True`` try every given, giving a minimal puzzle);
4. if the rating is below the bin, hill-climb: move one given to another cell (``-1+1``) or drop
   one, keep the move when the puzzle stays unique and the rating does not fall or leave the bin;
   restart from a new grid after ``patience`` fruitless evaluations. Random minimal puzzles need
   about one guess on average; hard bins are reached by this climb, which is the slow part.

The "extreme" profile on 9x9 works differently (the approach of tdoku's generator): items come in
chunks of :data:`EXTREME_CHUNK`, chunk ``c`` built from ``SeedSequence([seed, c])`` alone (so again
independent of ``workers``, and a shorter batch is a prefix of a longer one). Each item of a chunk gets
a target rating drawn (stratified) from the real Sudoku-Extreme rating table and a target givens count
drawn from the real givens of that rating's bin. A population search for hard puzzles (pool scored by
D, the geometric mean of ``rating + 1`` over 8 random symmetric copies, minus 1; step: drop 1-3 givens
of a hard member, re-add givens of its solution until unique, each where the other solution the
uniqueness check found differs, minimise, keep when harder than the weakest member) runs in rounds from
fresh pools until it reaches the D the chunk's hardest target needs. Every scored puzzle is a
candidate. Hardest targets first, each item takes an unused candidate with D near its target and givens
near its count, and the one of 64 (up to 2,048 for the tail) random symmetric copies whose rating *as
stored* is closest to the target (ratings vary widely across symmetric copies). By default
(``own_grids=True``) no two items of a chunk share a solution grid up to symmetry (:func:`_value_move`
in the search and for outputs, :func:`_grid_key` to compare grids); with ``own_grids=False`` the items
of a chunk come from the search's few lineages, each a different random symmetric copy (about as fast,
and its bulk a little closer to the real ratings, see the results). ``target_bins`` holds the profile
bin of each item's target. See :func:`_extreme_chunk`;
benchmarks/results/sudoku_extreme_distribution.md compares the output with the real set.

Usage::

    from puzzles.sudoku_generator import generate_sudoku
    batch = generate_sudoku(100, profile="extreme", seed=0)     # multiprocessing over all cores
    batch.puzzles.shape, batch.ratings.mean()
    generate_sudoku(500, box=(2, 3), profile="any", seed=1)    # 6x6 for CPU training

    python -m puzzles.sudoku_generator --n 1000 --seed 1 --out gen.json     # JSON vs. real sample
    python -m puzzles.sudoku_generator --n 1000 --shared-grids               # puzzles may share grids
"""

# numba kernels draw from numba's own per-process generator (np.random.seed / randint inside @njit,
# seeded per item), which only the legacy np.random API reaches, hence:
# ruff: noqa: NPY002
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import multiprocessing as mp
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import njit
from tqdm import tqdm

from puzzles import sudoku_solver
from puzzles.errors import PuzzleFormatError
from puzzles.sudoku import _check_box
from puzzles.sudoku_solver import _g_solve, _scratch9, _solve9_s, solve_batch, unit_tables

log = logging.getLogger(__name__)

_NO_LIMIT = 1 << 30


@dataclass(frozen=True)
class DifficultyProfile:
    """A target distribution of ratings, as probabilities over inclusive rating bins.

    Attributes:
        name: registry key.
        bins: ``((lo, hi), ...)`` inclusive rating ranges.
        probs: probability of each bin (sums to 1).
        description: where the numbers come from.
    """

    name: str
    bins: tuple[tuple[int, int], ...]
    probs: tuple[float, ...]
    description: str

    def __post_init__(self):
        if len(self.bins) != len(self.probs) or not self.bins:
            raise ValueError(f"profile {self.name!r}: need one probability per bin")
        if abs(sum(self.probs) - 1.0) > 1e-6 or min(self.probs) < 0:
            raise ValueError(f"profile {self.name!r}: probabilities must be >= 0 and sum to 1")
        if any(lo > hi or lo < 0 for lo, hi in self.bins):
            raise ValueError(f"profile {self.name!r}: bins must be (lo, hi) with 0 <= lo <= hi")

    @property
    def max_rating(self) -> int:
        """Upper end of the highest bin with non-zero probability."""
        return max(hi for (lo, hi), p in zip(self.bins, self.probs, strict=True) if p > 0)


# Rating bins (powers of two) and the share of each in the 1,000 real Sudoku-Extreme train rows of
# ../shared/data/sudoku_extreme_sample (their CSV `rating` column: mean 20.8, median 15, 13% zero).
# Our rater reproduces that column exactly on 98.6% of those rows (Spearman 0.9998), so the same
# numbers describe the distribution under our rater.
_EXTREME_BINS = ((0, 0), (1, 1), (2, 3), (4, 7), (8, 15), (16, 31), (32, 63), (64, 127), (128, 255))
_EXTREME_COUNTS = (130, 86, 65, 88, 138, 245, 206, 39, 3)

PROFILES: dict[str, DifficultyProfile] = {
    "any": DifficultyProfile("any", ((0, _NO_LIMIT),), (1.0,), "no filter: whatever hole-digging yields"),
    "easy": DifficultyProfile("easy", ((0, 0),), (1.0,), "solvable by propagation alone (0 guesses)"),
    "medium": DifficultyProfile("medium", ((1, 7),), (1.0,), "1-7 guesses"),
    "extreme": DifficultyProfile(
        "extreme",
        _EXTREME_BINS,
        tuple(c / sum(_EXTREME_COUNTS) for c in _EXTREME_COUNTS),
        "rating distribution of the real Sudoku-Extreme train split (1k-row sample)",
    ),
}


@dataclass(frozen=True)
class SudokuBatch:
    """Generated puzzles with their unique solutions.

    Attributes:
        puzzles: ``(n, N, N)`` int8, 0 = blank.
        solutions: ``(n, N, N)`` int8.
        ratings: ``(n,)`` int32, guesses to the first solution (:func:`puzzles.sudoku_solver.rate`).
        target_bins: ``(n, 2)`` int64, the inclusive rating bin each item was drawn for.
        evaluations: ``(n,)`` int64, solver calls spent on each item (a cost measure).
    """

    puzzles: np.ndarray
    solutions: np.ndarray
    ratings: np.ndarray
    target_bins: np.ndarray
    evaluations: np.ndarray

    def __len__(self) -> int:
        return len(self.puzzles)


# ---------------------------------------------------------------------------------------------
# numba kernels
# ---------------------------------------------------------------------------------------------


@njit(cache=True)
def _count(p, limit, n, units, peers, tmp, s9, g_scr, order):
    """``(n_solutions, guesses)`` of flat grid ``p`` with the engine that fits its size."""
    if n == 9:
        return _solve9_s(p, limit, tmp, s9)
    cands, dones, rem, cells = g_scr
    return _g_solve(p, limit, order, units, peers, n, tmp, cands, dones, rem, cells, 0)


@njit(cache=True)
def _random_symmetry(p, s, q, t, br, bc):
    """Write a random validity-preserving symmetry of puzzle ``p`` / solution ``s`` into ``q`` / ``t``.

    Permutes bands, rows in bands, stacks, columns in stacks, relabels digits and (square boxes)
    transposes. The rating is not invariant under these, so they are moves of the climb.
    """
    n = br * bc
    rows = np.empty(n, np.int64)
    cols = np.empty(n, np.int64)
    bands = np.random.permutation(bc)  # bc bands of br rows
    for b in range(bc):
        rr = np.random.permutation(br)
        for k in range(br):
            rows[b * br + k] = bands[b] * br + rr[k]
    stacks = np.random.permutation(br)  # br stacks of bc columns
    for b in range(br):
        cc = np.random.permutation(bc)
        for k in range(bc):
            cols[b * bc + k] = stacks[b] * bc + cc[k]
    dig = np.zeros(n + 1, np.int8)
    pm = np.random.permutation(n) + 1
    for k in range(n):
        dig[k + 1] = pm[k]
    tr = br == bc and np.random.random() < 0.5
    for r in range(n):
        for c in range(n):
            src = cols[c] * n + rows[r] if tr else rows[r] * n + cols[c]
            q[r * n + c] = dig[p[src]]
            t[r * n + c] = dig[s[src]]


@njit(cache=True)
def _make_puzzle(nseed, br, bc, units, peers, lo, hi, minimal, patience, max_evals, out_p, out_s):
    """Build one puzzle whose rating lies in ``[lo, hi]``; returns ``(rating, evaluations, ok)``.

    ``ok`` is False when ``max_evals`` solver calls did not reach the bin; ``out_p`` then holds the
    puzzle whose rating came closest.
    """
    np.random.seed(nseed)
    n = br * bc
    nn = n * n
    s9 = _scratch9()
    g_scr = (
        np.empty((nn + 2, nn), dtype=np.int32),
        np.empty((nn + 2, nn), dtype=np.uint8),
        np.empty(nn + 2, dtype=np.int64),
        np.empty(nn + 2, dtype=np.int64),
    )
    ident = np.empty((nn, n), dtype=np.int64)
    for i in range(nn):
        for k in range(n):
            ident[i, k] = k + 1
    order = np.empty((nn, n), dtype=np.int64)
    tmp = np.zeros(nn, dtype=np.int8)
    sol = np.zeros(nn, dtype=np.int8)
    p = np.zeros(nn, dtype=np.int8)
    q = np.zeros(nn, dtype=np.int8)
    s2 = np.zeros(nn, dtype=np.int8)
    evals = 0
    best_gap = _NO_LIMIT
    best_r = -1
    while True:
        _random_grid_into(sol, n, order, p, g_scr, units, peers)
        evals += 1
        # dig holes in random order while the solution stays unique; a climb toward a hard bin
        # starts from a minimal puzzle (a non-minimal one is far easier)
        p[:] = sol
        for c in np.random.permutation(nn):
            v = p[c]
            p[c] = 0
            k, g = _count(p, 2, n, units, peers, tmp, s9, g_scr, ident)
            evals += 1
            if k != 1:
                p[c] = v
                if not minimal and lo == 0:
                    break
        k, r = _count(p, 1, n, units, peers, tmp, s9, g_scr, ident)
        evals += 1
        last_gain = evals
        while True:
            if lo <= r <= hi:
                out_p[:] = p
                out_s[:] = sol
                return r, evals, True
            gap = lo - r if r < lo else r - hi
            if gap < best_gap:
                best_gap = gap
                best_r = r
                out_p[:] = p
                out_s[:] = sol
            if evals >= max_evals:
                return best_r, evals, False
            if r > hi or evals - last_gain > patience:
                break  # too hard for the bin (restart) or stuck on a plateau
            if 2 * r >= lo and np.random.random() < 0.3:
                # near the bin: a symmetric copy often rates differently (no uniqueness check needed)
                _random_symmetry(p, sol, q, s2, br, bc)
                k, rq = _count(q, 1, n, units, peers, tmp, s9, g_scr, ident)
                evals += 1
                if r <= rq <= hi:
                    if rq > r:
                        last_gain = evals
                    p[:] = q
                    sol[:] = s2
                    r = rq
                continue
            # move: drop one given, and half the time add another cell of the solution
            q[:] = p
            while True:
                a = np.random.randint(nn)
                if q[a] != 0:
                    break
            q[a] = 0
            if np.random.random() < 0.5:
                while True:
                    b = np.random.randint(nn)
                    if q[b] == 0 and b != a:
                        break
                q[b] = sol[b]
            k, g = _count(q, 2, n, units, peers, tmp, s9, g_scr, ident)
            evals += 1
            # guesses made while counting two solutions bound the rating from above
            if k != 1 or g < r:
                continue
            k, rq = _count(q, 1, n, units, peers, tmp, s9, g_scr, ident)
            evals += 1
            if r <= rq <= hi:
                if rq > r:
                    last_gain = evals
                p[:] = q
                r = rq
                if minimal and lo <= r:
                    # make it minimal; the rating may change, so re-check the bin on the next turn
                    for c in np.random.permutation(nn):
                        v = p[c]
                        if v == 0:
                            continue
                        p[c] = 0
                        k, g = _count(p, 2, n, units, peers, tmp, s9, g_scr, ident)
                        evals += 1
                        if k != 1:
                            p[c] = v
                    k, r = _count(p, 1, n, units, peers, tmp, s9, g_scr, ident)
                    evals += 1


# ---------------------------------------------------------------------------------------------
# "extreme": population search per chunk, then pick symmetric copies to match real ratings
# ---------------------------------------------------------------------------------------------

# Empirical rating distribution of the real Sudoku-Extreme train split: ``(rating, count)`` over the
# 1,000 rows of ../shared/data/sudoku_extreme_sample/sudoku-extreme_train_random1k_reconstructed.csv
# (``collections.Counter(df.rating)``; mean 20.8, median 15, 13% zero, q90 47, q99 102, max 194).
# Targets of the "extreme" profile are drawn from it (the product does not read the CSV).
_EXTREME_RATING_COUNTS = (
    (0, 130), (1, 86), (2, 43), (3, 22), (4, 22), (5, 19), (6, 23), (7, 24), (8, 13), (9, 14), (10, 12),
    (11, 16), (12, 18), (13, 26), (14, 22), (15, 17), (16, 14), (17, 17), (18, 18), (19, 13), (20, 11),
    (21, 24), (22, 17), (23, 16), (24, 17), (25, 14), (26, 14), (27, 13), (28, 22), (29, 15), (30, 14),
    (31, 6), (32, 14), (33, 8), (34, 13), (35, 14), (36, 5), (37, 11), (38, 13), (39, 7), (40, 10),
    (41, 9), (42, 9), (43, 11), (44, 4), (45, 12), (46, 6), (47, 4), (48, 3), (49, 2), (50, 4), (51, 6),
    (52, 5), (53, 5), (54, 5), (55, 6), (56, 3), (57, 3), (58, 4), (59, 3), (60, 2), (61, 1), (63, 4),
    (64, 1), (65, 1), (66, 2), (67, 5), (68, 2), (70, 1), (72, 3), (76, 1), (83, 1), (85, 2), (86, 2),
    (87, 2), (88, 1), (90, 1), (91, 2), (92, 1), (97, 1), (99, 1), (100, 1), (102, 1), (107, 1),
    (109, 1), (111, 1), (113, 1), (115, 1), (116, 1), (122, 1), (159, 1), (168, 1), (194, 1),
)  # fmt: skip

# Givens of the same 1,000 rows per rating bin of ``_EXTREME_BINS``: ``((givens, count), ...)`` per bin
# (mean 25.24; 98% of the rows are minimal puzzles, the rest are zero-rated ones with 33-35 givens; the
# 17-given rows are from the 17-clue collection). An item's givens target is drawn from its bin's row.
_EXTREME_GIVENS_COUNTS = (
    ((17, 10), (23, 3), (24, 13), (25, 43), (26, 27), (27, 14), (28, 1), (33, 6), (34, 11), (35, 2)),
    ((17, 3), (24, 11), (25, 18), (26, 34), (27, 18), (28, 2)),
    ((17, 1), (22, 1), (23, 1), (24, 9), (25, 9), (26, 22), (27, 18), (28, 4)),
    ((22, 3), (23, 7), (24, 26), (25, 15), (26, 23), (27, 11), (28, 3)),
    ((22, 1), (23, 19), (24, 30), (25, 31), (26, 41), (27, 12), (28, 4)),
    ((21, 1), (22, 9), (23, 20), (24, 54), (25, 45), (26, 86), (27, 22), (28, 7), (29, 1)),
    ((21, 1), (22, 7), (23, 25), (24, 46), (25, 41), (26, 55), (27, 20), (28, 11)),
    ((23, 7), (24, 15), (25, 7), (26, 9), (27, 1)),
    ((23, 2), (24, 1)),
)  # fmt: skip

# the real set's minimal puzzles have at most 29 givens; its 33-35-given ones are non-minimal, zero-rated
_MAX_MINIMAL_GIVENS = 30
ROUNDS = 3  # most search rounds per chunk (a round stalled below its hardest targets restarts)
EXTREME_CHUNK = 50  # items per chunk: chunk c is built from SeedSequence([seed, c]) alone
GRID_USE_W = 4  # with own_grids: pick penalty per output already taken from a candidate's grid
NEIGHBOUR_P = 0.5  # with own_grids: share of search children moved to another grid (_value_move)


@njit(cache=True)
def _rate9(p, tmp, s9):
    return _solve9_s(p, 1, tmp, s9)[1]


@njit(cache=True)
def _unique9(p, tmp, s9):
    return _solve9_s(p, 2, tmp, s9)[0] == 1


@njit(cache=True)
def _minimise9(p, tmp, s9):
    """Remove givens in random order while the solution stays unique; returns solver calls."""
    ev = 0
    for c in np.random.permutation(81):
        v = p[c]
        if v == 0:
            continue
        p[c] = 0
        ev += 1
        if not _unique9(p, tmp, s9):
            p[c] = v
    return ev


@njit(cache=True)
def _difficulty9(p, s, copies, q, t, tmp, s9):
    """Geometric mean of ``rating + 1`` over ``copies`` random symmetric copies, minus 1."""
    acc = 0.0
    for _ in range(copies):
        _random_symmetry(p, s, q, t, 3, 3)
        acc += np.log(_rate9(q, tmp, s9) + 1.0)
    return np.exp(acc / copies) - 1.0


@njit(cache=True)
def _relax_and_constrain(child, sol, tmp, s9):
    """Drop 1-3 givens of ``child``, then add givens of ``sol`` until it is unique again; returns calls.

    Each uniqueness check that fails leaves the first solution it found in ``tmp``: when that is not
    ``sol``, the next given goes to a random cell where the two differ, which rules that solution out;
    when it is ``sol`` itself, to a random blank cell. Adding givens only at random blanks (before
    2026-12-04) took about 13 checks per step and left a bulk of redundant givens for the minimisation to
    remove; with the targeted adds a round makes about 16% fewer solver calls, fewer rounds are needed, and
    1,000 puzzles took 45-55 s instead of 58-65 s with a bulk closer to the real ratings (see
    benchmarks/results/sudoku_extreme_distribution.md).
    """
    nn = 81
    drop = 1 + np.random.randint(3)
    for _d in range(drop):
        while True:
            c = np.random.randint(nn)
            if child[c] != 0:
                break
        child[c] = 0
    ev = 0
    while True:
        ev += 1
        if _unique9(child, tmp, s9):  # when not unique, tmp holds the first solution the check found
            break
        differ = 0
        for i in range(nn):
            differ += tmp[i] != sol[i]
        if differ > 0:
            pick = np.random.randint(differ)
            for i in range(nn):
                if tmp[i] != sol[i]:
                    if pick == 0:
                        child[i] = sol[i]
                        break
                    pick -= 1
            continue
        while True:
            c = np.random.randint(nn)
            if child[c] == 0:
                break
        child[c] = sol[c]
    return ev


@njit(cache=True)
def _value_move(p, s, q, s2, tmp, s9):
    """Move ``p`` / ``s`` (in place) to another grid by giving one given another digit; returns ``(moved, calls)``.

    Givens in random order, for each the other digits in random order that clash with no peer given: the
    first that leaves the puzzle unique, on a grid ``s2`` that is not merely ``s`` with the two digits
    swapped everywhere (a relabelling, i.e. the same grid up to symmetry: it happens when the new digit
    was not among the givens), replaces ``p`` / ``s``, and is minimised (the changed given can make others
    redundant). The new grid differs from ``s`` in 4-49 cells. Unlike a relabelled digit cycle between two
    lines (tried before, few stay unique) it is found within a dozen or so solver calls on hard minimal
    puzzles, and a search that takes such moves keeps candidates hard on many grids (see
    benchmarks/results/sudoku_extreme_distribution.md). ``q`` / ``s2`` are scratch.
    """
    ev = 0
    for c in np.random.permutation(81):
        if p[c] == 0:
            continue
        r0 = c // 9
        c0 = c % 9
        for v in np.random.permutation(9) + 1:
            if v == s[c]:
                continue
            clash = False
            for k in range(9):
                rr = (r0 // 3) * 3 + k // 3
                cc = (c0 // 3) * 3 + k % 3
                if p[r0 * 9 + k] == v or p[k * 9 + c0] == v or p[rr * 9 + cc] == v:
                    clash = True
                    break
            if clash:
                continue
            q[:] = p
            q[c] = v
            ev += 1
            if _solve9_s(q, 2, s2, s9)[0] != 1:
                continue
            _solve9_s(q, 1, s2, s9)  # the unique solution, into s2
            ev += 1
            a = s[c]
            relabel = True
            for i in range(81):
                w = v if s[i] == a else (a if s[i] == v else s[i])
                if s2[i] != w:
                    relabel = False
                    break
            if relabel:
                continue
            p[:] = q
            s[:] = s2
            return True, ev + _minimise9(p, tmp, s9)
    return False, ev


@njit(cache=True)
def _grid_key(s, key):
    """An invariant of ``s`` under the Sudoku symmetries into ``key`` (72 int64; equal for isomorphic grids).

    Two rows define a permutation of the digits (the digit above -> the digit below, column by column); its
    cycle type, coded as ``sum over cycles of 10 ** (length - 2)`` (no cycle has length 1: a column holds
    no digit twice), is unchanged by column permutations and relabelling. The 36 row-pair codes sorted,
    the same over column pairs, the two lists in lexicographic order (a transposition swaps them): line
    permutations, relabelling and transposition leave the key unchanged, so grids with different keys are
    never isomorphic. 2-cycles are the unavoidable rectangles ``a b / b a``; counting only those (tried
    first) gave 705 equal-key pairs among 1,000 random grids; this key gave none among 3,000.
    """
    perm = np.empty(10, np.int64)
    seen = np.empty(10, np.bool_)
    for t in range(2):
        k = 0
        for l1 in range(9):
            for l2 in range(l1 + 1, 9):
                for c in range(9):
                    if t == 0:
                        perm[s[l1 * 9 + c]] = s[l2 * 9 + c]
                    else:
                        perm[s[c * 9 + l1]] = s[c * 9 + l2]
                seen[:] = False
                code = 0
                for d in range(1, 10):
                    if seen[d]:
                        continue
                    length = 0
                    e = d
                    while not seen[e]:
                        seen[e] = True
                        e = perm[e]
                        length += 1
                    code += 10 ** (length - 2)
                key[t * 36 + k] = code
                k += 1
        key[t * 36 : t * 36 + 36] = np.sort(key[t * 36 : t * 36 + 36])
    for j in range(36):
        if key[j] != key[36 + j]:
            if key[j] > key[36 + j]:
                for m in range(36):
                    key[m], key[36 + m] = key[36 + m], key[m]
            break


@njit(cache=True)
def _same(a, b):
    """``(a == b).all()`` for two flat grids, without a temporary array (it runs every search step)."""
    for i in range(a.shape[0]):
        if a[i] != b[i]:
            return False
    return True


@njit(cache=True)
def _grid_taken(key, keys, k):
    """Whether ``key`` (a :func:`_grid_key`) equals one of ``keys[:k]``."""
    for j in range(k):
        if _same(keys[j], key):
            return True
    return False


@njit(cache=True)
def _pick_candidate(t, g, cd, cc, cl, lineage_use, cg, grid_use, used, lo, hi, logd):
    """Index of the candidate for target rating ``t`` and givens ``g`` (-1 when none is left).

    Among unused candidates whose D lies in ``[lo, hi]``: the least ``2 |givens - g| + uses of its
    lineage + GRID_USE_W x uses of its grid`` (``g`` capped at :data:`_MAX_MINIMAL_GIVENS`: such targets
    get givens added later; lineage uses spread a chunk's outputs over the search's lineages; grid uses,
    counted with ``own_grids`` only, prefer a candidate whose grid no output has taken yet, which needs no
    walk to a new grid, a walk that costs difficulty), random among ties; when the window is empty, the D
    nearest ``t`` in log scale.
    """
    k = -1
    kgap = _NO_LIMIT
    seen = 0
    for j in range(cd.shape[0]):
        if used[j] or cd[j] < lo or cd[j] > hi:
            continue
        gap = 2 * abs(cc[j] - min(g, _MAX_MINIMAL_GIVENS)) + lineage_use[cl[j]] + GRID_USE_W * grid_use[cg[j]]
        if gap < kgap:
            kgap = gap
            k = j
            seen = 1
        elif gap == kgap:
            seen += 1
            if np.random.randint(seen) == 0:
                k = j
    if k >= 0:
        return k
    lt = np.log(t + 1.0)
    bd = 1e30
    for j in range(cd.shape[0]):
        if not used[j] and abs(logd[j] - lt) < bd:
            bd = abs(logd[j] - lt)
            k = j
    return k


@njit(cache=True)
def _random_grid_into(out, n, order, z, g_scr, units, peers):
    """A random full ``n x n`` grid into ``out``: the generic engine on an empty grid, a random digit order per cell.

    ``order`` (``(n*n, n)`` int64), ``z`` (``n*n`` int8, zeroed here) and ``g_scr`` (the engine's four scratch
    arrays) are caller-owned so a loop over many grids allocates nothing.
    """
    for i in range(n * n):
        order[i] = np.random.permutation(n) + 1
    z[:] = 0
    cands, dones, rem, cells = g_scr
    _g_solve(z, 1, order, units, peers, n, out, cands, dones, rem, cells, 0)


@njit(cache=True)
def _random_grid(out, units, peers):
    """A random full 9x9 grid into ``out`` (:func:`_random_grid_into` with scratch of its own)."""
    nn = 81
    g_scr = (
        np.empty((nn + 2, nn), dtype=np.int32), np.empty((nn + 2, nn), dtype=np.uint8),
        np.empty(nn + 2, dtype=np.int64), np.empty(nn + 2, dtype=np.int64),
    )  # fmt: skip
    _random_grid_into(out, 9, np.empty((nn, 9), dtype=np.int64), np.zeros(nn, dtype=np.int8), g_scr, units, peers)


@njit(cache=True)
def _extreme_search(n_iter, rounds, want_d, pool_size, copies, neighbour_p, units, peers, s9):
    """Population search for hard puzzles; returns the candidates ``(puzzles, solutions, D, lineage, grid, calls)``.

    A pool of ``pool_size`` random minimal puzzles (each from its own random grid) scored by D
    (:func:`_difficulty9`); each step takes the harder of two random pool members, relaxes and
    re-constrains it on its grid (:func:`_relax_and_constrain`) and minimises it; with probability
    ``neighbour_p`` the relaxed child instead moves to another grid (:func:`_value_move`, which minimises;
    a child with no such move is minimised where it is): this spreads the lineages over many grids, and
    those children that stay hard carry the search on their new grids. The child is scored and replaces
    the pool's weakest member when harder (no duplicates).
    Every scored puzzle is a candidate; its lineage is the initial pool member it descends from, its grid the
    index of the candidate that first had its solution grid (a moved child starts a grid of its own).

    A round is ``n_iter`` steps from a fresh pool. A pool can stall on a plateau far below the hardest
    targets, so while no candidate has reached D >= ``want_d`` another round starts (up to ``rounds``).
    """
    nn = 81
    tmp = np.zeros(nn, dtype=np.int8)
    q = np.zeros(nn, dtype=np.int8)
    t2 = np.zeros(nn, dtype=np.int8)
    child = np.zeros(nn, dtype=np.int8)
    child_sol = np.zeros(nn, dtype=np.int8)
    cap = rounds * (pool_size + n_iter)
    cp = np.zeros((cap, nn), dtype=np.int8)
    cs = np.zeros((cap, nn), dtype=np.int8)
    cd = np.zeros(cap, dtype=np.float64)
    cl = np.zeros(cap, dtype=np.int64)
    cg = np.zeros(cap, dtype=np.int64)
    pool = np.zeros(pool_size, dtype=np.int64)  # candidate index of each pool member
    evals = 0
    nc = 0
    best_d = -1.0
    for rnd in range(rounds):
        if rnd > 0 and best_d >= want_d:
            break
        for j in range(pool_size):
            _random_grid(cs[nc], units, peers)
            cp[nc] = cs[nc]
            evals += 1 + _minimise9(cp[nc], tmp, s9)
            cd[nc] = _difficulty9(cp[nc], cs[nc], copies, q, t2, tmp, s9)
            evals += copies
            cl[nc] = rnd * pool_size + j
            cg[nc] = nc
            pool[j] = nc
            best_d = max(best_d, cd[nc])
            nc += 1
        for _ in range(n_iter):
            a = pool[np.random.randint(pool_size)]
            b = pool[np.random.randint(pool_size)]
            par = a if cd[a] >= cd[b] else b
            child[:] = cp[par]
            child_sol[:] = cs[par]
            evals += _relax_and_constrain(child, cs[par], tmp, s9)
            moved = False
            if neighbour_p > 0.0 and np.random.random() < neighbour_p:
                moved, ev = _value_move(child, child_sol, q, t2, tmp, s9)
                evals += ev
            if not moved:
                evals += _minimise9(child, tmp, s9)
            if neighbour_p == 0.0:
                np.random.random()  # the draw the shared-grid search always made here: keeps its batches as recorded
            dup = False
            for j in range(pool_size):
                if _same(cp[pool[j]], child):
                    dup = True
                    break
            if dup:
                continue
            d = _difficulty9(child, child_sol, copies, q, t2, tmp, s9)
            evals += copies
            cp[nc] = child
            cs[nc] = child_sol
            cd[nc] = d
            cl[nc] = cl[par]
            cg[nc] = nc if moved else cg[par]
            worst = 0
            for j in range(1, pool_size):
                if cd[pool[j]] < cd[pool[worst]]:
                    worst = j
            if d > cd[pool[worst]]:
                pool[worst] = nc
            best_d = max(best_d, d)
            nc += 1
    return cp[:nc], cs[:nc], cd[:nc], cl[:nc], cg[:nc], evals


@njit(cache=True)
def _on_own_grid(p, s, keys, i, tries, key, q, s2, tmp, s9):
    """Move ``p`` / ``s`` (in place) to a grid isomorphic to none of the grids keyed in ``keys[:i]``.

    Returns ``(ok, calls)``; ``key`` receives the :func:`_grid_key` of the final grid. Unchanged when
    ``s`` is new. Else a walk of up to ``tries`` :func:`_value_move` steps: one landing on a new grid ends
    it; one on a taken grid becomes the walk's current puzzle (all candidates of a lineage share one grid).
    """
    _grid_key(s, key)
    if not _grid_taken(key, keys, i):
        return True, 0
    ev = 0
    for _ in range(tries):
        moved, e = _value_move(p, s, q, s2, tmp, s9)
        ev += e
        if not moved:
            return False, ev
        _grid_key(s, key)
        if not _grid_taken(key, keys, i):
            return True, ev
    return False, ev


@njit(cache=True)
def _extreme_chunk(
    nseed, targets, givens, n_iter, pool_size, copies, pick_copies, own_grids, neighbour_p, units, peers,
    out_p, out_s, out_r,
):  # fmt: skip
    """Search (:func:`_extreme_search`), then one output per target.

    Returns ``(solver calls, outputs that fell back to a random minimal puzzle)``.

    Output ``i`` (target rating ``t = targets[i]``, givens ``g = givens[i]``): an unused candidate from
    :func:`_pick_candidate` with D in ``[0.6 t, 1.6 t]`` (D <= 0.5 for t = 0); with ``own_grids`` it is
    moved to a grid isomorphic to no earlier output's of the chunk (:func:`_on_own_grid`; candidates of
    one lineage share their grid). Random symmetric copies of it are rated (``pick_copies``; twice as many
    for t >= 32 and 32 times for t >= 64, where the search's D runs out and single copies must carry the
    tail) and the one rated closest to ``t`` is kept; up to 4 candidates are tried when none is within 10%. A zero-rated
    output whose ``g`` exceeds :data:`_MAX_MINIMAL_GIVENS` gets random givens of its solution up to ``g``
    (the real set's 33-35-given puzzles are such non-minimal easy ones; the rating stays 0).
    """
    np.random.seed(nseed)
    nn = 81
    s9 = _scratch9()
    # the hardest target asks for a search that reached about D = 0.45 t (as-stored ratings of copies
    # reach about twice their D); a stalled search gets up to 2 more rounds
    want_d = min(0.4 * targets.max(), 40.0) if targets.shape[0] else 0.0
    cp, cs, cd, cl, cg, evals = _extreme_search(
        n_iter, ROUNDS, want_d, pool_size, copies, neighbour_p, units, peers, s9
    )
    lineage_use = np.zeros(ROUNDS * pool_size, dtype=np.int64)
    nc = cd.shape[0]
    grid_use = np.zeros(nc, dtype=np.int64)  # outputs taken from each search grid (own_grids only)
    cc = (cp != 0).sum(axis=1)
    used = np.zeros(nc, dtype=np.bool_)
    logd = np.log(cd + 1.0)
    tmp = np.zeros(nn, dtype=np.int8)
    q = np.zeros(nn, dtype=np.int8)
    t2 = np.zeros(nn, dtype=np.int8)
    child = np.zeros(nn, dtype=np.int8)
    child_sol = np.zeros(nn, dtype=np.int8)
    best_q = np.zeros(nn, dtype=np.int8)
    best_t = np.zeros(nn, dtype=np.int8)
    keys = np.zeros((targets.shape[0], 72), dtype=np.int64)  # _grid_key of each output so far (own_grids)
    key = np.zeros(72, dtype=np.int64)
    nf = 0
    frame_grid = np.zeros(nn, dtype=np.int8)
    n_random = 0
    # hardest targets first: a softer target's window would otherwise take the few hardest candidates
    for i in np.argsort(-targets, kind="mergesort"):
        t = targets[i]
        lo = 0.6 * t
        hi = 1.6 * t if t > 0 else 0.5
        best_gap = _NO_LIMIT
        kbest = -1
        m_copies = pick_copies * (32 if t >= 64 else (2 if t >= 32 else 1))
        for _try in range(4):
            k = _pick_candidate(t, givens[i], cd, cc, cl, lineage_use, cg, grid_use, used, lo, hi, logd)
            if k < 0 and not own_grids:  # every candidate used (a tiny search): reuse one
                k = np.random.randint(nc)
            if k >= 0:
                used[k] = True
                child[:] = cp[k]
                child_sol[:] = cs[k]
                if own_grids:
                    ok, ev = _on_own_grid(child, child_sol, keys, nf, 400, key, q, t2, tmp, s9)
                    evals += ev
                    if not ok:
                        continue
            else:
                # no candidate left (a tiny search): a random minimal puzzle on a random grid
                _random_grid(child_sol, units, peers)
                child[:] = child_sol
                evals += 1 + _minimise9(child, tmp, s9)
                n_random += 1
            for _m in range(m_copies):
                _random_symmetry(child, child_sol, q, t2, 3, 3)
                r = _rate9(q, tmp, s9)
                evals += 1
                gap = abs(r - t)
                if gap < best_gap:
                    best_gap = gap
                    best_q[:] = q
                    best_t[:] = t2
                    frame_grid[:] = child_sol
                    kbest = k
                    out_r[i] = r
                    if gap == 0:
                        break
            if best_gap <= 0.1 * t:
                break
        if best_gap == _NO_LIMIT:  # every try failed to find a new grid: a random minimal puzzle
            _random_grid(child_sol, units, peers)
            child[:] = child_sol
            evals += 1 + _minimise9(child, tmp, s9)
            n_random += 1
            _random_symmetry(child, child_sol, best_q, best_t, 3, 3)
            frame_grid[:] = child_sol
            out_r[i] = _rate9(best_q, tmp, s9)
        if own_grids:
            _grid_key(frame_grid, keys[nf])
        nf += 1
        if kbest >= 0:
            lineage_use[cl[kbest]] += 1
            if own_grids:
                grid_use[cg[kbest]] += 1
        if out_r[i] == 0 and givens[i] > _MAX_MINIMAL_GIVENS:
            # the real set's non-minimal easy puzzles: add givens of the solution up to the target count
            # (adding givens cannot add guesses)
            have = (best_q != 0).sum()
            if have < givens[i]:
                for c in np.random.permutation(nn):
                    if have >= givens[i]:
                        break
                    if best_q[c] == 0:
                        best_q[c] = best_t[c]
                        have += 1
                out_r[i] = _rate9(best_q, tmp, s9)
                evals += 1
        out_p[i] = best_q
        out_s[i] = best_t
    return evals, n_random


def _extreme_targets(seed: int, c: int, k: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Target ratings and givens of chunk ``c`` and its numba seed, from ``SeedSequence([seed, c])``.

    Stratified draws from the real distribution: item ``j`` gets the empirical rating quantile at
    ``(pi(j) + u_j) / k`` (``pi`` a random permutation, ``u_j`` uniform), so every chunk covers the
    whole distribution (one item per 2% of it for ``k`` = 50) instead of an i.i.d. sample; its givens
    target is drawn from the real givens of its rating bin.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(c)]))
    table = np.repeat(*np.array(_EXTREME_RATING_COUNTS, dtype=np.int64).T)
    u = (rng.permutation(k) + rng.random(k)) / k
    targets = table[np.minimum((u * table.size).astype(np.int64), table.size - 1)]
    bins = np.searchsorted(np.array([hi for _, hi in _EXTREME_BINS]), targets)
    givens = np.zeros(k, dtype=np.int64)
    for j, b in enumerate(bins):
        vals, counts = np.array(_EXTREME_GIVENS_COUNTS[b], dtype=np.int64).T
        givens[j] = rng.choice(vals, p=counts / counts.sum())
    return targets, givens, int(rng.integers(0, 2**31 - 1))


def _drop_stale_kernel_cache() -> None:
    """Recompile this module's kernels when ``sudoku_solver.py`` changed since they were cached.

    numba's ``cache=True`` keys a kernel on its own source file only, but the kernels here compile the
    solver into themselves: after an upgrade that changes only the solver, they would keep running the
    old one (old speed, and old guess counts as ratings). A digest of the solver's source beside the
    cache decides; numba's cache objects are private API, so any surprise leaves the cache alone.
    """
    kernels = [f for f in globals().values() if hasattr(f, "_cache") and hasattr(f, "py_func")]
    try:
        digest = hashlib.sha256(Path(sudoku_solver.__file__).read_bytes()).hexdigest()
        stamp = Path(_extreme_chunk._cache._cache_path) / "sudoku_generator.solver.sha256"
        if stamp.is_file() and stamp.read_text() == digest:
            return
        for kernel in kernels:
            kernel._cache.flush()
        stamp.write_text(digest)
    except (AttributeError, OSError) as e:
        log.debug("numba kernel cache check skipped: %s", e)


_drop_stale_kernel_cache()


# ---------------------------------------------------------------------------------------------
# Python API
# ---------------------------------------------------------------------------------------------


def _item_plan(seed: int, i: int, profile: DifficultyProfile) -> tuple[int, int, int]:
    """Target bin ``(lo, hi)`` and numba seed of item ``i``, from its own seed sequence."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(i)]))
    k = int(rng.choice(len(profile.probs), p=np.asarray(profile.probs)))
    lo, hi = profile.bins[k]
    return lo, hi, int(rng.integers(0, 2**31 - 1))


def _make_items(args):
    """Worker: build items ``idx`` (a list) and return their arrays."""
    idx, seed, box, profile, minimal, patience, max_evals = args
    n = box[0] * box[1]
    units, peers = unit_tables(box)
    out = []
    for i in idx:
        lo, hi, nseed = _item_plan(seed, i, profile)
        p = np.zeros(n * n, dtype=np.int8)
        s = np.zeros(n * n, dtype=np.int8)
        r, ev, ok = _make_puzzle(nseed, box[0], box[1], units, peers, lo, hi, minimal, patience, max_evals, p, s)
        out.append((i, p, s, r, lo, hi, ev, ok))
    return out


def _make_extreme_chunk(args):
    """Worker: build chunk ``c`` of the "extreme" path (all its items, whatever ``n`` asks for)."""
    c, seed, n_iter, pool_size, own_grids = args
    units, peers = unit_tables((3, 3))
    targets, givens, nseed = _extreme_targets(seed, c, EXTREME_CHUNK)
    p = np.zeros((EXTREME_CHUNK, 81), dtype=np.int8)
    s = np.zeros((EXTREME_CHUNK, 81), dtype=np.int8)
    r = np.zeros(EXTREME_CHUNK, dtype=np.int64)
    neighbour_p = NEIGHBOUR_P if own_grids else 0.0
    ev, n_random = _extreme_chunk(
        nseed, targets, givens, n_iter, pool_size, 8, 64, own_grids, neighbour_p, units, peers, p, s, r
    )
    return c, p, s, r, targets, ev, int(n_random)


def _generate_extreme(n, seed, workers, progress, n_iter, pool_size, own_grids=False):
    """The "extreme" profile: chunks of :data:`EXTREME_CHUNK` items, see :func:`_extreme_chunk`."""
    profile = PROFILES["extreme"]
    n_chunks = -(-n // EXTREME_CHUNK)
    jobs = [(c, seed, int(n_iter), int(pool_size), bool(own_grids)) for c in range(n_chunks)]
    puzzles = np.zeros((n_chunks * EXTREME_CHUNK, 81), dtype=np.int8)
    solutions = np.zeros_like(puzzles)
    ratings = np.zeros(n_chunks * EXTREME_CHUNK, dtype=np.int32)
    targets = np.zeros(n_chunks * EXTREME_CHUNK, dtype=np.int64)
    evals = np.zeros(n_chunks * EXTREME_CHUNK, dtype=np.int64)
    bar = tqdm(total=n, desc="sudoku 9x9 extreme", disable=not progress or n < 2, unit="puzzle")  # no bar for one
    if workers > 1 and n_chunks > 1:
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        pool = ctx.Pool(min(workers, n_chunks))
        results = pool.imap_unordered(_make_extreme_chunk, jobs)
    else:
        pool = None
        results = map(_make_extreme_chunk, jobs)
    try:
        for c, p, s, r, t, ev, grids in results:
            sl = slice(c * EXTREME_CHUNK, (c + 1) * EXTREME_CHUNK)
            puzzles[sl], solutions[sl], ratings[sl], targets[sl] = p, s, r, t
            evals[sl] = ev // EXTREME_CHUNK
            log.debug("extreme chunk %d: %d solver calls, %d random fallback outputs", c, ev, grids)
            bar.update(min(EXTREME_CHUNK, n - c * EXTREME_CHUNK))
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    puzzles, solutions, ratings, targets, evals = puzzles[:n], solutions[:n], ratings[:n], targets[:n], evals[:n]
    counts = solve_batch(puzzles.reshape(n, 9, 9), limit=2)[1] if n else np.ones(0, dtype=np.int64)
    assert (counts == 1).all(), "extreme generator produced a puzzle without a unique solution"
    # report the profile bin of each item's target rating
    k = np.searchsorted(np.array([hi for _, hi in profile.bins]), targets)
    bins = np.asarray(profile.bins, dtype=np.int64)[k]
    return SudokuBatch(puzzles.reshape(n, 9, 9), solutions.reshape(n, 9, 9), ratings, bins, evals)


def generate_sudoku(
    n: int,
    *,
    box: tuple[int, int] = (3, 3),
    profile: str | DifficultyProfile = "extreme",
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    minimal: bool = False,
    patience: int = 4000,
    max_evals: int = 300_000,
    extreme_iters: int = 8_000,
    extreme_pool: int = 16,
    own_grids: bool = True,
) -> SudokuBatch:
    """Generate ``n`` unique-solution puzzles whose ratings follow ``profile``.

    Args:
        n: number of puzzles.
        box: box shape (2, 2), (2, 3) or (3, 3).
        profile: a key of :data:`PROFILES` or a :class:`DifficultyProfile`. Profiles asking for
            guesses ("medium", "extreme") need 9x9: smaller grids are solved by propagation.
        seed: base seed; item ``i`` uses ``SeedSequence([seed, i])``, so the output does not
            depend on ``workers``.
        workers: processes (default: all cores; 0 or 1 = in this process).
        progress: show a tqdm bar.
        minimal: make every puzzle minimal (no given can be removed keeping it unique).
        patience: solver calls without a rating gain before a climb restarts from a new grid.
        max_evals: solver calls allowed per item; an item that does not reach its bin keeps the
            closest puzzle found and a warning is logged.
        extreme_iters: search steps per round for a chunk of :data:`EXTREME_CHUNK` items of the
            "extreme" profile on 9x9 (up to :data:`ROUNDS` rounds, see :func:`_extreme_search`); more
            reaches harder puzzles, linearly slower.
        extreme_pool: population size of that search.
        own_grids: "extreme" only: no two puzzles of a chunk share a solution grid (up to the symmetries
            applied to each output), as in the real set: the search moves half its children to other
            grids by changing one given's digit (:func:`_value_move`), and an output whose candidate's
            grid is taken walks on by such moves. False: the outputs of a chunk come from a few lineages'
            grids, each a random symmetric copy (about as fast since 2026-12-04; the batches recorded before
            2026-12-03, and ``sudoku-extreme@2``'s split, were built so).

    Returns:
        :class:`SudokuBatch`.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    box = _check_box(box, int(box[0]) * int(box[1]))
    if box not in ((2, 2), (2, 3), (3, 3)):
        raise PuzzleFormatError(f"unsupported box {box}; use (2, 2), (2, 3) or (3, 3)")
    if isinstance(profile, str):
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; choose from {sorted(PROFILES)}")
        profile = PROFILES[profile]
    side = box[0] * box[1]
    if side != 9 and any(lo > 0 for (lo, _), pr in zip(profile.bins, profile.probs, strict=True) if pr > 0):
        raise ValueError(
            f"profile {profile.name!r} asks for guesses, but {side}x{side} sudokus are solved by "
            "propagation; use 'any' or 'easy'"
        )
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if profile is PROFILES["extreme"] and side == 9:
        return _generate_extreme(n, seed, workers, progress, extreme_iters, extreme_pool, own_grids)
    chunk = max(1, min(16, n // max(1, 4 * workers)))
    jobs = [
        (list(range(s, min(n, s + chunk))), seed, box, profile, bool(minimal), int(patience), int(max_evals))
        for s in range(0, n, chunk)
    ]
    puzzles = np.zeros((n, side * side), dtype=np.int8)
    solutions = np.zeros((n, side * side), dtype=np.int8)
    ratings = np.zeros(n, dtype=np.int32)
    bins = np.zeros((n, 2), dtype=np.int64)
    evals = np.zeros(n, dtype=np.int64)
    missed = 0
    bar = tqdm(total=n, desc=f"sudoku {side}x{side} {profile.name}", disable=not progress or n < 2, unit="puzzle")
    if workers > 1 and len(jobs) > 1:
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        pool = ctx.Pool(workers)
        results = pool.imap_unordered(_make_items, jobs)
    else:
        pool = None
        results = map(_make_items, jobs)
    try:
        for items in results:
            for i, p, s, r, lo, hi, ev, ok in items:
                puzzles[i], solutions[i], ratings[i] = p, s, r
                bins[i] = (lo, hi)
                evals[i] = ev
                missed += not ok
            bar.update(len(items))
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    if missed:
        log.warning("%d of %d puzzles did not reach their rating bin within max_evals=%d", missed, n, max_evals)
    return SudokuBatch(puzzles.reshape(n, side, side), solutions.reshape(n, side, side), ratings, bins, evals)


def rating_stats(ratings: np.ndarray) -> dict:
    """Mean, median, share of zero-guess puzzles, deciles, q99 and max of a rating array."""
    r = np.asarray(ratings, dtype=np.float64)
    qs = (0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 0.99)
    return {
        "n": int(r.size),
        "mean": round(float(r.mean()), 3),
        "median": float(np.median(r)),
        "frac_zero": round(float((r == 0).mean()), 4),
        "quantiles": {str(q): float(np.quantile(r, q)) for q in qs},
        "max": int(r.max()),
    }


def givens_stats(puzzles: np.ndarray) -> dict:
    """Givens per puzzle (mean, deciles) and the share of minimal puzzles (no given can go)."""
    p = np.asarray(puzzles).reshape(len(puzzles), -1)
    g = (p != 0).sum(axis=1)
    minimal = 0
    for row in p:
        idx = np.flatnonzero(row)
        drop = np.repeat(row[None], idx.size, axis=0)
        drop[np.arange(idx.size), idx] = 0
        minimal += not (solve_batch(drop.reshape(idx.size, 9, 9), limit=2)[1] == 1).any()
    return {
        "mean": round(float(g.mean()), 3),
        "quantiles": {str(q): float(np.quantile(g, q)) for q in (0.01, 0.1, 0.5, 0.9, 0.99)},
        "frac_minimal": round(minimal / max(1, len(p)), 4),
    }


def two_sample(a: np.ndarray, b: np.ndarray) -> dict:
    """Kolmogorov-Smirnov and Anderson-Darling k-sample tests of two rating samples (needs scipy).

    Ratings are integers with many ties: the KS p-value is then conservative; the Anderson-Darling
    test handles ties, and scipy caps its p-value to [0.001, 0.25].
    """
    try:
        from scipy import stats
    except ImportError:
        return {"skipped": "scipy is not installed (pip install -e .[bench])"}
    ks = stats.ks_2samp(a, b)
    with warnings.catch_warnings():  # scipy's notes that the p-value is capped and `midrank` is renamed
        warnings.simplefilter("ignore", UserWarning)
        ad = stats.anderson_ksamp([np.asarray(a, float), np.asarray(b, float)])
    return {
        "ks_statistic": round(float(ks.statistic), 4),
        "ks_pvalue": round(float(ks.pvalue), 4),
        "ad_statistic": round(float(ad.statistic), 4),
        "ad_pvalue": round(float(ad.pvalue), 4),
    }


def default_real_sample() -> Path:
    """Where the real Sudoku-Extreme 1k sample lives in a checkout (``../shared/data``)."""
    root = Path(__file__).resolve().parents[1]
    return root.parent / "shared" / "data" / "sudoku_extreme_sample" / "sudoku-extreme_train_random1k_reconstructed.csv"


def compare_with_real(
    n: int = 200,
    profile: str = "extreme",
    seed: int = 0,
    workers: int | None = None,
    real: Path | None = None,
    own_grids: bool = True,
) -> dict:
    """Generate ``n`` puzzles and report their rating and givens distributions beside the real sample's.

    The real sample is rated twice: its CSV ``rating`` column and our own rater on its questions; the
    two-sample tests compare the generated ratings with each.
    """
    from puzzles.sudoku_solver import rate_batch

    t = time.perf_counter()
    batch = generate_sudoku(n, profile=profile, seed=seed, workers=workers, progress=False, own_grids=own_grids)
    dt = time.perf_counter() - t
    out = {
        "generated": {
            "profile": profile,
            "seed": seed,
            "own_grids": own_grids,
            **rating_stats(batch.ratings),
            "in_target_bin": float(
                ((batch.ratings >= batch.target_bins[:, 0]) & (batch.ratings <= batch.target_bins[:, 1])).mean()
            ),
            "seconds": round(dt, 2),
            "puzzles_per_s": round(n / dt, 2),
            "workers": workers or os.cpu_count(),
            "givens": givens_stats(batch.puzzles) if batch.puzzles.shape[1] == 9 else None,
        }
    }
    real = Path(real) if real is not None else default_real_sample()
    if real.exists():
        import pandas as pd

        df = pd.read_csv(real, dtype={"question": str, "answer": str})
        q = np.array([[0 if ch == "." else int(ch) for ch in s] for s in df.question], dtype=np.int8)
        ours = rate_batch(q.reshape(-1, 9, 9))
        out["real_csv_rating"] = rating_stats(df.rating.to_numpy())
        out["real_our_rater"] = rating_stats(ours)
        out["real_givens"] = givens_stats(q.reshape(-1, 9, 9))
        out["two_sample_vs_real_csv"] = two_sample(batch.ratings, df.rating.to_numpy())
        out["two_sample_vs_real_our_rater"] = two_sample(batch.ratings, ours)
    else:
        out["real"] = f"not found: {real}"
    return out


def main(argv: list[str] | None = None) -> None:
    """CLI: print the generated rating distribution beside the real sample's, as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--profile", default="extreme", choices=sorted(PROFILES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--real", type=Path, default=None, help="real Sudoku-Extreme CSV (default ../shared/data)")
    ap.add_argument(
        "--shared-grids",
        action="store_true",
        help="extreme: let a chunk's puzzles share the search's solution grids (own_grids=False; faster)",
    )
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    a = ap.parse_args(argv)
    if a.n < 1:
        ap.error(f"--n must be at least 1, got {a.n}")
    if a.real is not None and not a.real.is_file():  # the default may be absent; a named file may not
        ap.error(f"--real: no such file {a.real}")
    if a.out is not None and not a.out.resolve().parent.is_dir():  # say so before generating, not after
        ap.error(f"--out: no such folder {a.out.resolve().parent}")
    try:
        res = compare_with_real(a.n, a.profile, a.seed, a.workers, a.real, own_grids=not a.shared_grids)
        res["command"] = "python -m puzzles.sudoku_generator " + " ".join(sys.argv[1:] if argv is None else argv)
        text = json.dumps(res, indent=2)
        print(text)
        if a.out is not None:
            from puzzles.formats import write_text_atomic  # pandas: only when a file is written

            write_text_atomic(a.out, text + "\n")
    except (ValueError, OSError) as e:  # e.g. an unreadable or malformed --real CSV (PuzzleError is a ValueError)
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
