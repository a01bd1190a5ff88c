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

Usage::

    from puzzles.sudoku_generator import generate_sudoku
    batch = generate_sudoku(100, profile="extreme", seed=0)     # multiprocessing over all cores
    batch.puzzles.shape, batch.ratings.mean()
    generate_sudoku(500, box=(2, 3), profile="any", seed=1)    # 6x6 for CPU training

    python -m puzzles.sudoku_generator --n 200 --profile extreme --seed 0   # JSON vs. real sample
"""

# numba kernels draw from numba's own per-process generator (np.random.seed / randint inside @njit,
# seeded per item), which only the legacy np.random API reaches, hence:
# ruff: noqa: NPY002
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import njit
from tqdm import tqdm

from puzzles.errors import PuzzleFormatError
from puzzles.sudoku import _check_box
from puzzles.sudoku_solver import _g_solve, _scratch9, _solve9, unit_tables

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
        states, sk, sa, sb, sc, w = s9
        return _solve9(p, limit, tmp, states, sk, sa, sb, sc, w)
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
        # random full grid
        for i in range(nn):
            order[i] = np.random.permutation(n) + 1
        cands, dones, rem, cells = g_scr
        p[:] = 0
        _g_solve(p, 1, order, units, peers, n, sol, cands, dones, rem, cells, 0)
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
    bar = tqdm(total=n, desc=f"sudoku {side}x{side} {profile.name}", disable=not progress, unit="puzzle")
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
    """Mean, median, share of zero-guess puzzles and quantiles of a rating array."""
    r = np.asarray(ratings, dtype=np.float64)
    qs = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
    return {
        "n": int(r.size),
        "mean": round(float(r.mean()), 3),
        "median": float(np.median(r)),
        "frac_zero": round(float((r == 0).mean()), 4),
        "quantiles": {str(q): float(np.quantile(r, q)) for q in qs},
        "max": int(r.max()),
    }


def default_real_sample() -> Path:
    """Where the real Sudoku-Extreme 1k sample lives in a checkout (``../shared/data``)."""
    root = Path(__file__).resolve().parents[1]
    return root.parent / "shared" / "data" / "sudoku_extreme_sample" / "sudoku-extreme_train_random1k_reconstructed.csv"


def compare_with_real(
    n: int = 200, profile: str = "extreme", seed: int = 0, workers: int | None = None, real: Path | None = None
) -> dict:
    """Generate ``n`` puzzles and report their rating distribution beside the real sample's.

    The real sample is rated twice: its CSV ``rating`` column and our own rater on its questions.
    """
    from puzzles.sudoku_solver import rate_batch

    t = time.perf_counter()
    batch = generate_sudoku(n, profile=profile, seed=seed, workers=workers, progress=False)
    dt = time.perf_counter() - t
    out = {
        "generated": {
            "profile": profile,
            "seed": seed,
            **rating_stats(batch.ratings),
            "in_target_bin": float(
                ((batch.ratings >= batch.target_bins[:, 0]) & (batch.ratings <= batch.target_bins[:, 1])).mean()
            ),
            "seconds": round(dt, 2),
            "puzzles_per_s": round(n / dt, 2),
            "workers": workers or os.cpu_count(),
            "mean_givens": float((batch.puzzles != 0).sum(axis=(1, 2)).mean()),
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
        out["real_mean_givens"] = float((q != 0).sum(axis=1).mean())
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
    a = ap.parse_args(argv)
    print(json.dumps(compare_with_real(a.n, a.profile, a.seed, a.workers, a.real), indent=2))


if __name__ == "__main__":
    main()
