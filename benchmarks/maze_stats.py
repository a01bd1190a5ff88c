"""Generate Maze-Hard mazes and compare their statistics with the real split; time the generator.

Prints (and saves to ``benchmarks/results/maze_stats.json``) wall fractions, shortest-path lengths
and numbers of distinct shortest paths of ``--n`` generated mazes next to those of the real
``maze-30x30-hard-1k`` train split in ``../shared/data/maze`` (the real columns are left out when
that folder is absent), plus generation time and mazes per second. ``--variants`` also generates
the alternatives the generator's docstring compares (per-cell walls; per-cell walls keeping only
the first hit of each layout).

Run from the project root::

    python benchmarks/maze_stats.py                      # 1000 mazes, seed 0, all cores
    python benchmarks/maze_stats.py --n 1000 --variants  # + the alternatives (about 3 more minutes)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numba
import numpy as np

from puzzles.maze import GOAL, START, WALL, distances
from puzzles.maze_generator import DEFAULT_LAYOUT_CAP, MAZE_PRESETS, generate_mazes

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "maze"
RESULTS = ROOT / "benchmarks" / "results"


def count_shortest_paths(maze: np.ndarray) -> int:
    """Number of distinct shortest S→G paths (exact integer; paths through BFS layers)."""
    d = distances(maze)
    n = maze.shape[0]
    ways = {tuple(np.argwhere(maze == START)[0]): 1}
    goal = tuple(np.argwhere(maze == GOAL)[0])
    # Every shortest path climbs the BFS layers one at a time, so counts add up layer by layer.
    for layer in range(1, int(d[goal]) + 1):
        for r, c in np.argwhere(d == layer):
            ways[(r, c)] = sum(
                ways.get((r + dr, c + dc), 0)
                for dr, dc in ((1, 0), (0, -1), (0, 1), (-1, 0))
                if 0 <= r + dr < n and 0 <= c + dc < n and d[r + dr, c + dc] == layer - 1
            )
    return ways[goal]


def describe(inputs: np.ndarray, lengths: np.ndarray) -> dict:
    """Summary statistics of mazes ``(B, N, N)`` and their path lengths ``(B,)``."""
    walls = (inputs == WALL).mean(axis=(1, 2))
    paths = np.array([math.log10(count_shortest_paths(m)) for m in inputs])
    q = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
    return {
        "n": len(inputs),
        "wall_fraction": {
            "min": float(walls.min()),
            "mean": float(walls.mean()),
            "max": float(walls.max()),
            "below_0.30": int((walls < 0.3).sum()),
            "quantiles": {str(k): float(v) for k, v in zip(q, np.quantile(walls, q), strict=True)},
        },
        "path_cells": {
            "min": int(lengths.min()),
            "mean": float(lengths.mean()),
            "median": float(np.median(lengths)),
            "max": int(lengths.max()),
            "quantiles": {str(k): float(v) for k, v in zip(q, np.quantile(lengths, q), strict=True)},
        },
        "shortest_paths_per_maze": {
            "min": float(10 ** paths.min()),
            "median": float(10 ** np.median(paths)),
            "geometric_mean": float(10 ** paths.mean()),
            "with_one_path": int((paths == 0).sum()),
        },
        "distinct_layouts": len({(m == WALL).tobytes() for m in inputs}),
    }


def ks_pvalues(gen: tuple[np.ndarray, np.ndarray], real: tuple[np.ndarray, np.ndarray]) -> dict | None:
    """Two-sample KS p-values of wall fractions and path lengths (None without scipy)."""
    try:
        from scipy.stats import ks_2samp
    except ImportError:
        return None
    walls = [(x == WALL).mean(axis=(1, 2)) for x, _ in (gen, real)]
    return {
        "wall_fraction": float(ks_2samp(*walls).pvalue),
        "path_cells": float(ks_2samp(gen[1], real[1]).pvalue),
    }


def timed_generate(n: int, seed: int, workers: int | None, **kw) -> tuple[dict, np.ndarray, np.ndarray]:
    """Generate ``n`` maze-hard mazes; return timing info, inputs and path lengths."""
    # CPU seconds of this process and of the (joined) worker processes: unlike wall time, they do
    # not grow when other programs compete for the cores.
    cpu0 = time.process_time() + resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
    t0 = time.perf_counter()
    batch = generate_mazes(n, **MAZE_PRESETS["maze-hard"], seed=seed, workers=workers, **kw)
    wall = time.perf_counter() - t0
    cpu = time.process_time() + resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - cpu0
    info = {
        "settings": {
            "seed": seed,
            "workers": workers or len(os.sched_getaffinity(0)),
            "wall_sampling": kw.get("wall_sampling", "exact"),
            "layout_cap": kw.get("layout_cap", DEFAULT_LAYOUT_CAP),
        },
        "seconds": round(wall, 2),
        "mazes_per_second": round(n / wall, 2),
        "cpu_seconds": round(cpu, 2),
        "mazes_per_cpu_second": round(n / cpu, 2),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    return info, batch.inputs, batch.path_lengths


def main() -> int:
    """Run the benchmark and write the JSON results."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None, help="default: all cores")
    ap.add_argument("--variants", action="store_true", help="also time and describe the alternatives")
    ap.add_argument("--out", type=Path, default=RESULTS / "maze_stats.json")
    args = ap.parse_args()

    # Compile (or load numba's cache) before timing, so the timing is of the generator alone.
    generate_mazes(1, size=8, min_path_cells=4, workers=1, progress=False)
    info, inputs, lengths = timed_generate(args.n, args.seed, args.workers)
    result = {
        "command": "python " + " ".join(sys.argv),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "numba": numba.__version__,
        },
        "preset": {"maze-hard": MAZE_PRESETS["maze-hard"]},
        "generation": info,
        "generated": describe(inputs, lengths),
    }
    real = None
    if (REAL / "maze-30x30-hard-1k_train_all__inputs.npy").exists():
        real_in = np.load(REAL / "maze-30x30-hard-1k_train_all__inputs.npy").reshape(-1, 30, 30)
        real_labels = np.load(REAL / "maze-30x30-hard-1k_train_all__labels.npy").reshape(-1, 30, 30)
        real = (real_in, ((real_labels == 5).sum(axis=(1, 2)) + 2).astype(np.int32))
        result["real"] = describe(*real)
        result["ks_pvalue_vs_real"] = ks_pvalues((inputs, lengths), real)
    if args.variants:
        result["variants"] = {}
        variants = {
            "bernoulli_walls": {"wall_sampling": "bernoulli"},
            "bernoulli_walls_first_hit_per_layout": {"wall_sampling": "bernoulli", "layout_cap": 1},
        }
        for name, kw in variants.items():
            v_info, v_in, v_len = timed_generate(args.n, args.seed, args.workers, **kw)
            entry = {"generation": v_info, "generated": describe(v_in, v_len)}
            if real is not None:
                entry["ks_pvalue_vs_real"] = ks_pvalues((v_in, v_len), real)
            result["variants"][name] = entry
    text = json.dumps(result, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
