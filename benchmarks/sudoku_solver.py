"""Benchmark of the numba Sudoku solver against py-sudoku, dokusan (and optionally tdoku).

Measures single-process throughput (puzzles/s, best of ``--repeats`` timed passes after a warm-up
call, so JIT compilation is not counted) on the tdoku reference collections and the real
Sudoku-Extreme sample, for the first solution (``limit=1``) and the uniqueness check
(``limit=2``); the pure-Python solvers run on a small subset. It also reports how well our rating
(guesses) agrees with the CSV ``rating`` column (Spearman, exact-agreement fraction).

Run (from the project root; needs ``pip install -e .[bench]`` and ../shared/data)::

    python benchmarks/sudoku_solver.py > benchmarks/results/sudoku_solver.json
    python benchmarks/sudoku_solver.py --tdoku /path/to/libtdoku.so   # adds tdoku's own speed

``--tdoku`` takes tdoku's shared library (built by its ``BUILD.sh``), called through ctypes
(``TdokuSolverDpllTriadSimd``) on the same puzzles, one call per puzzle.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from puzzles.sudoku_solver import _solve9_batch, solve_batch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
COLLECTIONS = {
    "magictour_top1465": DATA / "sudoku" / "tdoku_puzzles3_magictour_top1465_rated.csv",
    "17_clue": DATA / "sudoku" / "tdoku_puzzles2_17_clue_rated.csv",
    "sudoku_extreme_sample_1k": DATA / "sudoku_extreme_sample" / "sudoku-extreme_train_random1k_reconstructed.csv",
}


def load(path: Path, limit: int | None):
    df = pd.read_csv(path, dtype={"question": str, "answer": str}, nrows=limit)
    q = np.frombuffer("".join(df.question).replace(".", "0").encode(), np.uint8) - ord("0")
    a = np.frombuffer("".join(df.answer).encode(), np.uint8) - ord("0")
    return list(df.question), q.astype(np.int8).reshape(-1, 81), a.astype(np.int8).reshape(-1, 81), df.rating.to_numpy()


def best_rate(fn, n_items: int, repeats: int) -> float:
    """Puzzles per second of the fastest of ``repeats`` passes of ``fn``."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return n_items / min(times)


def ours(q: np.ndarray, limit: int, repeats: int) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    out = np.zeros_like(q)
    ns = np.zeros(len(q), np.int32)
    gs = np.zeros(len(q), np.int64)
    _solve9_batch(q[:1], limit, out[:1], ns[:1], gs[:1])  # warm-up (JIT / cache load)
    pps = best_rate(lambda: _solve9_batch(q, limit, out, ns, gs), len(q), repeats)
    return pps, out, ns, gs


def py_sudoku(q: np.ndarray) -> float:
    from sudoku import Sudoku

    boards = [[[int(v) or None for v in row] for row in p.reshape(9, 9)] for p in q]
    t = time.perf_counter()
    for b in boards:
        Sudoku(3, 3, board=b).solve()
    return len(q) / (time.perf_counter() - t)


def dokusan(q: np.ndarray) -> float:
    from dokusan import solvers
    from dokusan.boards import BoxSize, Sudoku

    strs = ["".join(map(str, p)) for p in q]
    t = time.perf_counter()
    for s in strs:
        solvers.backtrack(Sudoku.from_string(s, box_size=BoxSize(3, 3)))
    return len(q) / (time.perf_counter() - t)


def tdoku(lib_path: str, questions: list[str], limit: int, repeats: int) -> float:
    lib = ctypes.CDLL(lib_path)
    f = lib.TdokuSolverDpllTriadSimd
    f.restype = ctypes.c_size_t
    f.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint32, ctypes.c_char_p, ctypes.POINTER(ctypes.c_size_t)]
    bufs = [q.encode() for q in questions]
    sol = ctypes.create_string_buffer(81)
    g = ctypes.c_size_t()

    def run():
        for b in bufs:
            f(b, limit, 0, sol, ctypes.byref(g))

    return best_rate(run, len(bufs), repeats)


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--python-subset", type=int, default=50, help="puzzles per collection for py-sudoku/dokusan")
    ap.add_argument("--limit-17", type=int, default=None, help="use only the first N 17-clue puzzles")
    ap.add_argument("--tdoku", default=None, help="path to tdoku's shared library (libtdoku.so)")
    a = ap.parse_args()
    if not DATA.exists():
        sys.exit(f"reference data not found at {DATA}")
    report = {
        "command": "python " + " ".join(sys.argv),
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            # other jobs on a shared machine slow every number down; record how busy it was
            "load_average_1min_at_start": round(os.getloadavg()[0], 2),
        },
        "single_process": True,
        "collections": {},
    }
    for name, path in COLLECTIONS.items():
        questions, q, ans, rating = load(path, a.limit_17 if name == "17_clue" else None)
        pps1, sol, _, guesses = ours(q, 1, a.repeats)
        pps2, _, ns, _ = ours(q, 2, a.repeats)
        sub = q[: a.python_subset]
        entry = {
            "n_puzzles": len(q),
            "ours_first_solution_pps": round(pps1, 1),
            "ours_uniqueness_pps": round(pps2, 1),
            "all_solutions_match_answer": bool(np.array_equal(sol, ans)),
            "all_unique": bool((ns == 1).all()),
            "rating_spearman": round(float(spearmanr(guesses, rating)[0]), 6),
            "rating_exact_fraction": round(float((guesses == rating).mean()), 6),
            "rating_mean_ours": round(float(guesses.mean()), 3),
            "rating_mean_csv": round(float(rating.mean()), 3),
            "python_subset": len(sub),
        }
        entry["py_sudoku_pps"] = round(py_sudoku(sub), 2)
        entry["dokusan_pps"] = round(dokusan(sub), 2)
        # the Python solvers are timed on a subset; compare against ours on that same subset
        ours_sub, _, _, _ = ours(sub, 1, a.repeats)
        entry["ours_first_solution_pps_on_subset"] = round(ours_sub, 1)
        entry["speedup_vs_py_sudoku"] = round(ours_sub / entry["py_sudoku_pps"], 1)
        entry["speedup_vs_dokusan"] = round(ours_sub / entry["dokusan_pps"], 1)
        if a.tdoku:
            entry["tdoku_first_solution_pps"] = round(tdoku(a.tdoku, questions, 1, a.repeats), 1)
            entry["tdoku_uniqueness_pps"] = round(tdoku(a.tdoku, questions, 2, a.repeats), 1)
            entry["tdoku_over_ours_first_solution"] = round(entry["tdoku_first_solution_pps"] / pps1, 2)
        report["collections"][name] = entry
        print(f"{name}: done", file=sys.stderr)
    # sanity: the public API gives the same answers as the raw kernel
    assert np.array_equal(solve_batch(q[:10].reshape(-1, 9, 9))[0].reshape(-1, 81), sol[:10])
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
