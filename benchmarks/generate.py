"""Benchmark the dataset generators: puzzles/s and mazes/s for every registered dataset.

Run::

    python benchmarks/generate.py                    # default counts, all cores, JSON to stdout
    python benchmarks/generate.py --datasets sudoku6 maze-hard --n 200 --workers 1

Each dataset is generated once to warm up the numba kernels (compile time is not generation
throughput), then timed on ``--n`` items (per-dataset default below). The JSON has the count,
wall time, items/s, worker count, and the rating / path-length summary of what was generated,
so a regression in either speed or difficulty shows up side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

from puzzles.datasets import DATASETS, get_dataset

DEFAULT_N = {"sudoku-extreme": 1000, "sudoku6": 2000, "sudoku4": 2000, "maze-hard": 1000, "maze-small": 2000}


def cpu_name() -> str:
    """CPU model name from /proc/cpuinfo (or the platform string)."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bench(name: str, n: int, workers: int | None, seed: int) -> dict:
    """Time the generation of ``n`` items of dataset ``name``."""
    spec = get_dataset(name)
    spec.generate(min(n, 4), seed=seed + 1, workers=1, progress=False)  # compile / warm caches
    t0 = time.perf_counter()
    table = spec.generate(n, seed=seed, workers=workers, progress=False)
    dt = time.perf_counter() - t0
    r = table.ratings.astype(np.float64)
    return {
        "dataset": name,
        "n": n,
        "seconds": round(dt, 3),
        "items_per_s": round(n / dt, 2),
        "workers": workers or os.cpu_count(),
        "rating" if spec.kind == "sudoku" else "path_cells": {
            "mean": round(float(r.mean()), 3),
            "median": float(np.median(r)),
            "zero_fraction": round(float((r == 0).mean()), 4),
            "min": int(r.min()),
            "max": int(r.max()),
        },
    }


def main() -> None:
    """Parse arguments, run the benchmarks, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=sorted(DATASETS))
    parser.add_argument("--n", type=int, default=None, help="items per dataset (default: per-dataset)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    results = [bench(d, args.n or DEFAULT_N.get(d, 500), args.workers, args.seed) for d in args.datasets]
    command = " ".join(["python benchmarks/generate.py", *sys.argv[1:]])
    machine = {"cpu": cpu_name(), "cores": os.cpu_count(), "load_average_at_end": os.getloadavg()}
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    out = {"command": command, "commit": rev.stdout.strip(), "machine": machine, "results": results}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
