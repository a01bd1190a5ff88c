"""Seeded, batched generator of Maze-Hard-style mazes (the Searchformer procedure, numba + processes).

Each candidate *layout* is an N×N grid with a uniform random number of walls between
``wall_range[0] * N*N`` and ``wall_range[1] * N*N`` (270..450 for 30×30), placed uniformly, exactly
as in Searchformer's code (Lehnert et al. 2024, ``MazeTraceDataset.generate``); ``wall_sampling=
"bernoulli"`` instead makes each cell a wall with a probability drawn uniformly in ``wall_range``.
A layout gets ``attempts_per_layout = 100`` tries of a start and a goal drawn uniformly among its
open cells (distinct); a try *hits* when the shortest path has at least ``min_path_cells`` cells
(S and G included). Searchformer keeps every distinct hit, so a layout with ``h`` hits enters its
pool ``h`` times. Here a layout is kept with probability ``min(h, layout_cap) / layout_cap`` and
gives one hit drawn uniformly: the mazes follow the pool's distribution (exactly for
``h <= layout_cap``; 99.7% of maze-hard hit layouts have ``h <= 8``) while no two mazes share a
layout, as in the real split (1000 distinct layouts among 1000 mazes). The label is the reference
BFS path of :mod:`puzzles.maze`.

Measured on 1000 mazes against the 1000 real ones (benchmarks/results/maze_stats.md; two-sample
KS p-values of wall fraction / path cells): exact count with the pool weighting 0.54 / 1.00
(path cells mean 115.2, real 115.06); per-cell walls with the pool weighting 0.07 / 1.00; per-cell
walls keeping the first hit of each layout 0.61 / 0.005 (mean 114.1: too few long paths). No
variant reproduces the 6 real mazes with fewer than 30% walls (least 27.7%); the upstream wall
range was probably a little wider, which ``wall_range`` allows.

Only about 0.1% of layouts qualify for Maze-Hard (30×30, >= 110 cells), i.e. ~1e-5 of (layout,
S, G) tries, so the search runs in numba in chunks of layouts and prunes tries cheaply: S and G must
share a connected component of at least ``min_path_cells`` cells, and in the largest component
landmark distances give an upper bound ``d(S, L) + d(L, G)`` that rejects most pairs without a BFS.
The pruning is exact: it never rejects a pair that the plain BFS would accept.

Reproducibility: chunk ``i`` (a fixed number of layouts) draws from ``SeedSequence([seed, i])``;
chunks are consumed in order, so the result depends on ``seed`` and the parameters, never on
``workers``.

Usage::

    from puzzles.maze_generator import generate_mazes, MAZE_PRESETS
    batch = generate_mazes(1000, **MAZE_PRESETS["maze-hard"], seed=0)   # ~70 s on 2 free cores
    batch.inputs.shape, batch.labels.shape, batch.path_lengths.min()    # (1000,30,30) ... 110

    python -m puzzles.maze_generator --preset maze-hard --n 1000 --seed 0 --out mazes.npz
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import njit
from tqdm.auto import tqdm

from puzzles.errors import PuzzleError
from puzzles.maze import GOAL, OPEN, PATH, START, WALL, _bfs_padded

# Layouts per chunk: the unit of work sent to a process and of seeding. Part of the definition of
# a seed's output (changing it changes which mazes a seed yields), hence a constant, not an option.
CHUNK_LAYOUTS = 4096
# Tries of (S, G) per layout, as in Searchformer's generator (``num_attempts=100``).
DEFAULT_ATTEMPTS = 100
# See ``layout_cap`` in generate_mazes: 8 matches the keep-every-hit pool within sampling noise.
DEFAULT_LAYOUT_CAP = 8

MAZE_PRESETS: dict[str, dict[str, int]] = {
    # The benchmark of HRM/TRM: sapientinc/maze-30x30-hard-1k, shortest paths of >= 110 cells.
    "maze-hard": dict(size=30, min_path_cells=110),
    # Same generator on 12×12 with the threshold at which about the same fraction of layouts has a
    # qualifying (S, G) pair among its 100 tries, i.e. the same relative difficulty. Measured with
    # exact wall counts and layout_cap=1 (0.16-0.6 M layouts each): maze-hard 0.097%; 12×12 at
    # >= 40 cells 0.18%, >= 41 0.115%, >= 42 0.069% (per-cell walls: 0.12%; 0.165%, 0.099%, 0.064%).
    "maze-small": dict(size=12, min_path_cells=41),
}


def maze_preset(name: str) -> dict[str, int]:
    """Return a copy of the keyword arguments of preset ``name`` (a key of :data:`MAZE_PRESETS`)."""
    if name not in MAZE_PRESETS:
        raise KeyError(f"unknown maze preset {name!r}; known presets: {sorted(MAZE_PRESETS)}")
    return dict(MAZE_PRESETS[name])


@dataclass(frozen=True)
class MazeBatch:
    """Generated mazes with their labels.

    Attributes:
        inputs: ``(B, N, N)`` uint8 mazes (tokens 1 wall, 2 open, 3 S, 4 G).
        labels: ``(B, N, N)`` uint8, ``inputs`` with the reference shortest path marked 5.
        path_lengths: ``(B,)`` int32 cells on the shortest path, S and G included.
    """

    inputs: np.ndarray
    labels: np.ndarray
    path_lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def wall_fractions(self) -> np.ndarray:
        """``(B,)`` float64 fraction of cells that are walls in each maze."""
        return (self.inputs == WALL).mean(axis=(1, 2))


# --------------------------------------------------------------------------------------------
# Random numbers: splitmix64 written out here, so a seed means the same mazes on every numba /
# numpy version (numba's np.random stream is an implementation detail).
# --------------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _next_u64(state):
    state[0] += np.uint64(0x9E3779B97F4A7C15)
    z = state[0]
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def _uniform(state):
    """Float in [0, 1) from the top 53 bits."""
    return np.float64(_next_u64(state) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True, inline="always")
def _below(state, m):
    """Integer in [0, m) (m < 2**31; the float mapping's bias is below 1e-6 for such m)."""
    return np.int64(_uniform(state) * m)


# --------------------------------------------------------------------------------------------
# The numba search over one chunk of layouts
# --------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _bfs_all(free, width, src, dist, queue):
    """Fill ``dist`` with BFS distances from ``src`` over free cells (-1 elsewhere).

    Returns:
        ``(eccentricity of src, size of its component)``.
    """
    dist[:] = -1
    dist[src] = 0
    queue[0] = src
    head, tail = 0, 1
    while head < tail:
        u = queue[head]
        head += 1
        for k in range(4):
            v = u + (width if k == 0 else -1 if k == 1 else 1 if k == 2 else -width)
            if free[v] != 0 and dist[v] < 0:
                dist[v] = dist[u] + 1
                queue[tail] = v
                tail += 1
    return dist[queue[tail - 1]], tail


@njit(cache=True, nogil=True)
def _nearest(open_cells, n_open, row_of, col_of, r, c, main_dist, main_only):
    """Return the open cell nearest (Manhattan) to (r, c), restricted to ``main_dist >= 0`` if asked."""
    best, best_d = -1, 1 << 30
    for i in range(n_open):
        v = open_cells[i]
        if main_only and main_dist[v] < 0:
            continue
        d = abs(row_of[v] - r) + abs(col_of[v] - c)
        if d < best_d:
            best, best_d = v, d
    return best


@njit(cache=True, nogil=True)
def _components(free, width, cells, comp, sizes, queue):
    """Label the 4-connected components of the free cells; return the number of components."""
    comp[:] = -1
    count = 0
    for i in range(cells.shape[0]):
        s = cells[i]
        if free[s] == 0 or comp[s] >= 0:
            continue
        comp[s] = count
        queue[0] = s
        head, tail = 0, 1
        while head < tail:
            u = queue[head]
            head += 1
            for k in range(4):
                v = u + (width if k == 0 else -1 if k == 1 else 1 if k == 2 else -width)
                if free[v] != 0 and comp[v] < 0:
                    comp[v] = count
                    queue[tail] = v
                    tail += 1
        sizes[count] = tail
        count += 1
    return count


@njit(cache=True, nogil=True)
def _search_chunk(seed, n, n_layouts, p_lo, p_hi, exact_count, min_cells, attempts, layout_cap):
    """Search ``n_layouts`` random layouts; return (inputs, labels, lengths) of the accepted mazes."""
    state = np.empty(1, dtype=np.uint64)
    state[0] = seed
    w = n + 2
    nn = n * n
    min_moves = min_cells - 1
    free = np.zeros(w * w, dtype=np.uint8)  # the border stays 0 = wall
    parent = np.empty(w * w, dtype=np.int32)
    dist = np.empty(w * w, dtype=np.int32)
    stamp = np.zeros(w * w, dtype=np.int32)
    queue = np.empty(w * w, dtype=np.int32)
    comp = np.empty(w * w, dtype=np.int32)
    sizes = np.empty(nn, dtype=np.int32)
    cells = np.empty(nn, dtype=np.int32)  # padded index of cell (r, c), row-major
    perm = np.empty(nn, dtype=np.int32)  # shuffled cells for the exact-count mode
    open_cells = np.empty(nn, dtype=np.int32)
    hit_s = np.empty(attempts, dtype=np.int32)  # distinct qualifying (S, G) pairs of a layout
    hit_g = np.empty(attempts, dtype=np.int32)
    # Row and column of each padded index, looked up because integer division is slow in hot loops.
    row_of = np.zeros(w * w, dtype=np.int32)
    col_of = np.zeros(w * w, dtype=np.int32)
    for i in range(nn):
        cells[i] = (i // n + 1) * w + i % n + 1
        perm[i] = cells[i]
        row_of[cells[i]] = i // n
        col_of[cells[i]] = i % n
    # Landmarks near the centre and the quadrant centres of the largest component.
    anchors = np.array([[n // 2, n // 2], [n // 4, n // 4], [n // 4, 3 * n // 4], [3 * n // 4, n // 4],
                        [3 * n // 4, 3 * n // 4]])  # fmt: skip
    n_land = anchors.shape[0]
    land_dist = np.empty((n_land, w * w), dtype=np.int32)
    cap = 16
    out_in = np.empty((cap, n, n), dtype=np.uint8)
    out_lab = np.empty((cap, n, n), dtype=np.uint8)
    out_len = np.empty(cap, dtype=np.int32)
    count = 0
    mark = 0
    for j in range(n_layouts):
        # Each layout has its own random stream, so the pruning below (which skips the draws of
        # hopeless layouts) never changes which mazes a seed yields.
        state[0] = seed + np.uint64(j) * np.uint64(0xD1B54A32D192ED03)
        state[0] = _next_u64(state)
        p = p_lo + (p_hi - p_lo) * _uniform(state)
        n_open = 0
        if exact_count:
            # Searchformer's variant: an exact number of walls, placed by a partial shuffle.
            lo_k, hi_k = int(p_lo * nn + 0.5), int(p_hi * nn + 0.5)
            k_walls = lo_k + _below(state, hi_k - lo_k + 1)
            for i in range(k_walls):
                k = i + _below(state, nn - i)
                perm[i], perm[k] = perm[k], perm[i]
            for i in range(nn):
                free[perm[i]] = 0 if i < k_walls else 1
            for i in range(nn):
                if free[cells[i]] != 0:
                    open_cells[n_open] = cells[i]
                    n_open += 1
        else:
            # One 64-bit draw gives two 32-bit uniforms compared against p * 2**32.
            thr = np.uint64(p * 4294967296.0)
            r = np.uint64(0)
            for i in range(nn):
                if i % 2 == 0:
                    r = _next_u64(state)
                    u = r & np.uint64(0xFFFFFFFF)
                else:
                    u = r >> np.uint64(32)
                if u < thr:
                    free[cells[i]] = 0
                else:
                    free[cells[i]] = 1
                    open_cells[n_open] = cells[i]
                    n_open += 1
        if n_open < max(2, min_cells):
            continue
        # Pruning, exact (it only skips tries that BFS would reject). Two facts: a path lies inside
        # one 4-connected component, and two cells of a component are at most d(S, L) + d(L, G)
        # apart for any landmark L in it, hence at most 2 * ecc(L). Landmark 0 (the open cell
        # nearest the centre) usually sits in the giant component, and its BFS alone rules out
        # about 85% of maze-hard layouts.
        l0 = _nearest(open_cells, n_open, row_of, col_of, anchors[0, 0], anchors[0, 1], land_dist[0], False)
        ecc, size0 = _bfs_all(free, w, l0, land_dist[0], queue)
        n_roomy = 1
        if n_open - size0 >= min_cells:
            # Another component may be large enough: label them all, move landmark 0 to the largest.
            n_comp = _components(free, w, cells, comp, sizes, queue)
            big, n_roomy = 0, 0
            for c in range(n_comp):
                if sizes[c] > sizes[big]:
                    big = c
                if sizes[c] >= min_cells:
                    n_roomy += 1
            if n_roomy == 0:
                continue
            if comp[l0] != big:
                for i in range(n_open):
                    if comp[open_cells[i]] == big:
                        l0 = open_cells[i]
                        break
                ecc, size0 = _bfs_all(free, w, l0, land_dist[0], queue)
        elif size0 < min_cells:
            continue
        if 2 * ecc < min_moves and n_roomy == 1:
            continue
        # More landmarks in the same component (cells with land_dist[0] >= 0) tighten the bound.
        hopeless = False
        for a in range(1, n_land):
            la = _nearest(open_cells, n_open, row_of, col_of, anchors[a, 0], anchors[a, 1], land_dist[0], True)
            ecc, _ = _bfs_all(free, w, la, land_dist[a], queue)
            if 2 * ecc < min_moves and n_roomy == 1:
                hopeless = True
                break
        if hopeless:
            continue
        n_hits = 0
        for _try in range(attempts):
            ia = _below(state, n_open)
            ib = _below(state, n_open - 1)
            if ib >= ia:
                ib += 1
            s, g = open_cells[ia], open_cells[ib]
            s_main, g_main = land_dist[0, s] >= 0, land_dist[0, g] >= 0
            if s_main != g_main:
                continue  # different components
            if s_main:
                ub = land_dist[0, s] + land_dist[0, g]
                for a in range(1, n_land):
                    ub = min(ub, land_dist[a, s] + land_dist[a, g])
                if ub < min_moves:
                    continue
            elif n_roomy == 1 or comp[s] != comp[g] or sizes[comp[s]] < min_cells:
                continue
            mark += 1
            if _bfs_padded(free, w, s, g, parent, dist, stamp, mark, queue) < min_moves:
                continue
            new_pair = True
            for h in range(n_hits):
                if hit_s[h] == s and hit_g[h] == g:
                    new_pair = False
            if new_pair:
                hit_s[n_hits], hit_g[n_hits] = s, g
                n_hits += 1
            if layout_cap == 1:
                break  # the first hit is a uniform draw among the hits: no need for the rest
        # Keep the layout with probability min(hits, cap) / cap and one hit drawn uniformly (see
        # the module docstring): a layout with h hits contributes h / cap mazes in expectation,
        # as in Searchformer's pool that keeps all h, while no two mazes share a layout.
        if n_hits == 0 or _uniform(state) * layout_cap >= min(n_hits, layout_cap):
            continue
        h = _below(state, n_hits) if n_hits > 1 else 0
        s, g = hit_s[h], hit_g[h]
        mark += 1
        d = _bfs_padded(free, w, s, g, parent, dist, stamp, mark, queue)
        if count == cap:
            cap *= 2
            new_in = np.empty((cap, n, n), dtype=np.uint8)
            new_lab = np.empty((cap, n, n), dtype=np.uint8)
            new_len = np.empty(cap, dtype=np.int32)
            new_in[:count] = out_in[:count]
            new_lab[:count] = out_lab[:count]
            new_len[:count] = out_len[:count]
            out_in, out_lab, out_len = new_in, new_lab, new_len
        for i in range(nn):
            out_in[count, row_of[cells[i]], col_of[cells[i]]] = OPEN if free[cells[i]] != 0 else WALL
        out_in[count, row_of[s], col_of[s]] = START
        out_in[count, row_of[g], col_of[g]] = GOAL
        out_lab[count] = out_in[count]
        v = parent[g]
        while v != s:
            out_lab[count, row_of[v], col_of[v]] = PATH
            v = parent[v]
        out_len[count] = d + 1
        count += 1
    return out_in[:count].copy(), out_lab[:count].copy(), out_len[:count].copy()


def _chunk_seed(seed: int, chunk: int) -> np.uint64:
    words = np.random.SeedSequence([seed, chunk]).generate_state(2, dtype=np.uint32)
    return np.uint64((int(words[0]) << 32) | int(words[1]))


def _run_chunk(args: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Worker entry point: search chunk ``chunk`` (top-level so that it pickles)."""
    seed, chunk, size, lo, hi, exact, min_cells, attempts, layout_cap = args
    return _search_chunk(_chunk_seed(seed, chunk), size, CHUNK_LAYOUTS, lo, hi, exact, min_cells, attempts, layout_cap)


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not available on macOS / Windows
        return os.cpu_count() or 1


def generate_mazes(
    n: int,
    *,
    size: int = 30,
    min_path_cells: int = 110,
    wall_range: tuple[float, float] = (0.3, 0.5),
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    wall_sampling: str = "exact",
    attempts_per_layout: int = DEFAULT_ATTEMPTS,
    layout_cap: int = DEFAULT_LAYOUT_CAP,
    max_layouts: int | None = None,
) -> MazeBatch:
    """Generate ``n`` distinct mazes whose shortest path has at least ``min_path_cells`` cells.

    Args:
        n: number of mazes.
        size: side N of the square maze.
        min_path_cells: minimum cells on the shortest S→G path, S and G included (the CSV rating).
        wall_range: ``(low, high)``; each layout draws its wall probability uniformly in it.
        seed: the output is a function of ``seed`` and the other arguments except ``workers``
            and ``progress``.
        workers: processes to search with; ``None`` uses every core this process may run on,
            ``1`` searches in this process.
        progress: show a tqdm bar counting mazes.
        wall_sampling: ``"exact"`` (a uniform integer number of walls between ``low * N*N`` and
            ``high * N*N``, as in Searchformer's code; the closer match to the real split) or
            ``"bernoulli"`` (each cell a wall with a probability drawn uniformly in ``wall_range``).
        attempts_per_layout: (S, G) pairs tried per layout before drawing a new one.
        layout_cap: a layout whose tries hit ``h`` distinct qualifying pairs is kept with
            probability ``min(h, layout_cap) / layout_cap`` and gives one of them. The default 8
            reproduces the path-length distribution of Searchformer's keep-every-hit pool (and of
            the real split) with one maze per layout; 1 keeps every hit layout's first pair, about
            5 times faster but with paths about 1 cell shorter on average.
        max_layouts: give up after this many layouts; ``None`` allows ``20_000 * n + 1_000_000``,
            about 25 times what maze-hard needs.

    Returns:
        A :class:`MazeBatch` of ``n`` mazes in generation order.

    Raises:
        ValueError: an argument is out of range.
        PuzzleError: fewer than ``n`` mazes were found within ``max_layouts`` layouts.
    """
    lo, hi = (float(x) for x in wall_range)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if size < 2:
        raise ValueError(f"size must be >= 2, got {size}")
    if not 2 <= min_path_cells <= size * size:
        raise ValueError(f"min_path_cells must be in 2..{size * size} for a {size}×{size} maze, got {min_path_cells}")
    if not 0.0 <= lo <= hi < 1.0:
        raise ValueError(f"wall_range must satisfy 0 <= low <= high < 1, got {wall_range}")
    if wall_sampling not in ("bernoulli", "exact"):
        raise ValueError(f"wall_sampling must be 'bernoulli' or 'exact', got {wall_sampling!r}")
    if attempts_per_layout < 1:
        raise ValueError(f"attempts_per_layout must be >= 1, got {attempts_per_layout}")
    if layout_cap < 1:
        raise ValueError(f"layout_cap must be >= 1, got {layout_cap}")
    workers = _default_workers() if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    max_layouts = 20_000 * n + 1_000_000 if max_layouts is None else int(max_layouts)
    max_chunks = max(1, -(-max_layouts // CHUNK_LAYOUTS))

    def task(chunk: int) -> tuple:
        exact = wall_sampling == "exact"
        return (seed, chunk, size, lo, hi, exact, min_path_cells, attempts_per_layout, layout_cap)

    inputs, labels, lengths = [], [], []
    seen: set[bytes] = set()
    bar = tqdm(total=n, disable=not progress or n < 2, desc=f"mazes {size}x{size} >= {min_path_cells}", unit="maze")

    def take(result: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        for x, y, length in zip(*result, strict=True):
            if len(inputs) == n:
                return
            key = x.tobytes()
            if key not in seen:
                seen.add(key)
                inputs.append(x)
                labels.append(y)
                lengths.append(length)
                bar.update(1)

    chunk = 0
    try:
        if workers == 1:
            while len(inputs) < n and chunk < max_chunks:
                take(_run_chunk(task(chunk)))
                chunk += 1
        elif n > 0:
            # Compile (or load from numba's cache) once here, so forked workers inherit it.
            _run_chunk((0, 0, 4, 0.3, 0.3, False, 2, 1, 1))
            methods = mp.get_all_start_methods()
            ctx = mp.get_context("fork" if "fork" in methods else None)
            with ctx.Pool(workers) as pool:
                # A bounded window of chunks in flight, consumed strictly in chunk order.
                pending: collections.deque = collections.deque()
                while len(inputs) < n and (pending or chunk < max_chunks):
                    while len(pending) < 2 * workers and chunk < max_chunks:
                        pending.append(pool.apply_async(_run_chunk, (task(chunk),)))
                        chunk += 1
                    take(pending.popleft().get())
                pool.terminate()
    finally:
        bar.close()
    if len(inputs) < n:
        raise PuzzleError(
            f"found only {len(inputs)} of {n} mazes ({size}×{size}, >= {min_path_cells} path cells, walls "
            f"{wall_range}) in {max_layouts} layouts; lower min_path_cells or raise max_layouts"
        )
    shape = (0, size, size)
    return MazeBatch(
        inputs=np.stack(inputs) if inputs else np.empty(shape, dtype=np.uint8),
        labels=np.stack(labels) if labels else np.empty(shape, dtype=np.uint8),
        path_lengths=np.asarray(lengths, dtype=np.int32),
    )


def main(argv: list[str] | None = None) -> int:
    """Command line: generate mazes and save them as ``.npz`` (``inputs``, ``labels``, ``path_lengths``)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="maze-hard", choices=sorted(MAZE_PRESETS))
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--out", default=None, help="write the mazes to this .npz file")
    args = ap.parse_args(argv)
    if args.n < 1:
        ap.error(f"--n must be at least 1, got {args.n}")
    out = None
    if args.out:
        out = Path(args.out if args.out.endswith(".npz") else args.out + ".npz")  # numpy's own naming
        if not out.parent.is_dir():  # fail before minutes of generation, not after
            ap.error(f"--out: folder {out.parent} does not exist")
    t0 = time.perf_counter()
    batch = generate_mazes(args.n, **maze_preset(args.preset), seed=args.seed, workers=args.workers)
    dt = time.perf_counter() - t0
    print(
        f"{len(batch)} {args.preset} mazes in {dt:.1f} s ({len(batch) / dt:.1f}/s); path cells "
        f"min {batch.path_lengths.min()} mean {batch.path_lengths.mean():.1f} max {batch.path_lengths.max()}"
    )
    if out is not None:
        # Temporary file beside the target, then rename: an interrupted write leaves no partial .npz.
        tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, inputs=batch.inputs, labels=batch.labels, path_lengths=batch.path_lengths)
            os.replace(tmp, out)
        except OSError as e:
            print(f"error: cannot write {out}: {e}", file=sys.stderr)
            return 2
        finally:
            tmp.unlink(missing_ok=True)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
