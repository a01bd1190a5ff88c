"""Benchmark of the numba Sudoku solver against tdoku (optional), py-sudoku and dokusan.

Measures single-process throughput (puzzles/s, best of ``--repeats`` timed passes after a warm-up
call, so JIT compilation is not counted) for the first solution (``limit=1``) and the uniqueness
check (``limit=2``), and how our rating (guesses to the first solution) agrees with the CSV
``rating`` column (Spearman, exact-agreement fraction) and with tdoku's own guess counts.

Collections: by default the shipped ones in ``../shared/data`` (tdoku's magictour top1465 and
17-clue lists, the real Sudoku-Extreme sample) plus ``hardest_10pct``, the top 10% by CSV rating
of top1465 and of the Sudoku-Extreme sample (``--write-hardest FILE`` writes it out as a text
list). ``--collection FILE`` (repeatable) benchmarks any list of 9x9 puzzles in the tdoku text
format instead: one 81-character puzzle per line (``1``-``9``, ``.`` or ``0`` for a blank;
anything after the first whitespace is ignored), ``#`` lines are comments; add
``--with-shipped`` to run the shipped collections too.

Run (from the project root; needs ``pip install -e .[bench]``)::

    python benchmarks/sudoku_solver.py > benchmarks/results/sudoku_solver.json
    python benchmarks/sudoku_solver.py --tdoku /path/to/libtdoku_shared.so   # adds tdoku, side by side
    python benchmarks/sudoku_solver.py --collection my_hard_list.txt --tdoku /path/to/libtdoku_shared.so

``--tdoku`` takes tdoku's shared library (``./BUILD.sh tdoku_shared -DCMAKE_BUILD_TYPE=Release``
in its checkout), called through ctypes (``TdokuSolverDpllTriadSimd``) on the same puzzles, one call
per puzzle; our pass and tdoku's alternate within each repeat, so the ratio is taken under the same
machine load. The ctypes call costs tdoku about 0.5 us per puzzle that its native loop does not pay.
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
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from puzzles.sudoku import is_solution
from puzzles.sudoku_solver import _solve9_batch, solve_batch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
COLLECTIONS = {
    "magictour_top1465": DATA / "sudoku" / "tdoku_puzzles3_magictour_top1465_rated.csv",
    "17_clue": DATA / "sudoku" / "tdoku_puzzles2_17_clue_rated.csv",
    "sudoku_extreme_sample_1k": DATA / "sudoku_extreme_sample" / "sudoku-extreme_train_random1k_reconstructed.csv",
}
HARDEST_FROM = ("magictour_top1465", "sudoku_extreme_sample_1k")
HARDEST_FRACTION = 0.10
_CHARS = frozenset("123456789.0")


@dataclass
class Collection:
    """Puzzles to benchmark: ``q`` is ``(B, 81)`` int8 (0 = blank); answers/ratings when known."""

    name: str
    q: np.ndarray
    answers: np.ndarray | None = None
    rating: np.ndarray | None = None
    source: str = ""

    @property
    def tdoku_strings(self) -> list[bytes]:
        """The puzzles as tdoku's input strings ('.' for a blank: tdoku never reads '0')."""
        return ["".join(".123456789"[v] for v in p).encode() for p in self.q]


def parse_collection(text: str, origin: str = "<text>") -> np.ndarray:
    """Parse a tdoku-format puzzle list into a ``(B, 81)`` int8 array (0 = blank).

    Raises:
        ValueError: a line that is not a comment, blank, or an 81-character puzzle; the message
            names ``origin`` and the line number.
    """
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        p = s.split()[0]
        if len(p) != 81 or not set(p) <= _CHARS:
            bad = sorted(set(p) - _CHARS)
            why = f"{len(p)} characters" if len(p) != 81 else f"unexpected character(s) {''.join(bad)!r}"
            raise ValueError(
                f"{origin}:{lineno}: expected a 9x9 puzzle as 81 characters of 1-9, '.' or '0' ({why}): {p[:90]!r}"
            )
        rows.append(p.replace(".", "0"))
    if not rows:
        raise ValueError(f"{origin}: no puzzles found")
    return (np.frombuffer("".join(rows).encode(), np.uint8) - ord("0")).astype(np.int8).reshape(-1, 81)


def read_collection(path: Path) -> Collection:
    return Collection(path.stem, parse_collection(path.read_text(), str(path)), source=str(path))


def load_shipped(name: str, path: Path, limit: int | None) -> Collection:
    df = pd.read_csv(path, dtype={"question": str, "answer": str}, nrows=limit)
    q = np.frombuffer("".join(df.question).replace(".", "0").encode(), np.uint8) - ord("0")
    a = np.frombuffer("".join(df.answer).encode(), np.uint8) - ord("0")
    q, a = q.astype(np.int8).reshape(-1, 81), a.astype(np.int8).reshape(-1, 81)
    return Collection(name, q, a, df.rating.to_numpy(), source=str(path.relative_to(DATA.parent)))


def hardest(cols: dict[str, Collection], fraction: float = HARDEST_FRACTION) -> Collection:
    """The top ``fraction`` by CSV rating of each of ``HARDEST_FROM`` (ties: file order), concatenated."""
    parts = []
    for name in HARDEST_FROM:
        c = cols[name]
        k = round(fraction * len(c.q))
        parts.append(np.argsort(-c.rating, kind="stable")[:k])
    cs = [cols[n] for n in HARDEST_FROM]
    return Collection(
        "hardest_10pct",
        np.concatenate([c.q[i] for c, i in zip(cs, parts, strict=True)]),
        np.concatenate([c.answers[i] for c, i in zip(cs, parts, strict=True)]),
        np.concatenate([c.rating[i] for c, i in zip(cs, parts, strict=True)]),
        source=f"top {fraction:.0%} by CSV rating of " + " and ".join(HARDEST_FROM),
    )


def write_collection(c: Collection, path: Path) -> None:
    lines = [f"# {c.name}: {c.source}", f"# {len(c.q)} puzzles, tdoku text format ('.' = blank)"]
    lines += [s.decode() for s in c.tdoku_strings]
    path.write_text("\n".join(lines) + "\n")


def ours_pass(q: np.ndarray, limit: int) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    out = np.zeros_like(q)
    ns = np.zeros(len(q), np.int32)
    gs = np.zeros(len(q), np.int64)
    t = time.perf_counter()
    _solve9_batch(q, limit, out, ns, gs)
    return time.perf_counter() - t, out, ns, gs


class Tdoku:
    """tdoku's ``TdokuSolverDpllTriadSimd(puzzle, limit, config, solution, &num_guesses) -> count``."""

    def __init__(self, lib_path: str):
        self.f = ctypes.CDLL(lib_path).TdokuSolverDpllTriadSimd
        self.f.restype = ctypes.c_size_t
        self.f.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint32,
            ctypes.c_char_p,
            ctypes.POINTER(ctypes.c_size_t),
        ]

    def run(self, bufs: list[bytes], limit: int) -> tuple[float, np.ndarray, np.ndarray]:
        """Seconds for one timed pass over ``bufs``, then solution counts and guesses per puzzle."""
        sol = ctypes.create_string_buffer(82)
        g = ctypes.c_size_t()
        f, ref = self.f, ctypes.byref(g)
        t = time.perf_counter()
        for b in bufs:
            f(b, limit, 0, sol, ref)
        dt = time.perf_counter() - t
        # a second, untimed pass collects the counts (keeps Python work out of the timed loop)
        ns, gs = np.zeros(len(bufs), np.int64), np.zeros(len(bufs), np.int64)
        for i, b in enumerate(bufs):
            ns[i] = f(b, limit, 0, sol, ref)
            gs[i] = g.value
        return dt, ns, gs


def bench(c: Collection, repeats: int, td: Tdoku | None) -> dict:
    """Ours (and tdoku, alternating within each repeat) for limit 1 and 2 on one collection."""
    n = len(c.q)
    ours_pass(c.q[:1], 1)  # warm-up (JIT / cache load)
    bufs = c.tdoku_strings if td else []
    entry: dict = {"n_puzzles": n, "source": c.source}
    for limit, key in ((1, "first_solution"), (2, "uniqueness")):
        t_ours, t_td = [], []
        for _ in range(repeats):
            dt, out, ns, gs = ours_pass(c.q, limit)
            t_ours.append(dt)
            if td:
                dt_td, ns_td, gs_td = td.run(bufs, limit)
                t_td.append(dt_td)
        entry[f"ours_{key}_pps"] = round(n / min(t_ours), 1)
        if limit == 1:
            sol, guesses = out, gs
            entry["all_solved"] = bool((ns == 1).all())
            if c.answers is not None:
                entry["all_solutions_match_answer"] = bool(np.array_equal(out, c.answers))
            else:
                ok = [
                    is_solution(s.reshape(9, 9)) and np.all((p == 0) | (p == s)) for p, s in zip(c.q, out, strict=True)
                ]
                entry["all_solutions_valid"] = bool(all(ok))
        else:
            entry["all_unique"] = bool((ns == 1).all())
        if td:
            entry[f"tdoku_{key}_pps"] = round(n / min(t_td), 1)
            entry[f"tdoku_over_ours_{key}"] = round(min(t_ours) / min(t_td), 2)
            entry[f"guesses_equal_tdoku_{key}"] = round(float((gs == gs_td).mean()), 6)
            entry[f"solution_counts_equal_tdoku_{key}"] = bool(np.array_equal(ns, ns_td))
    entry["guesses_mean_ours"] = round(float(guesses.mean()), 3)
    if c.rating is not None:
        entry["rating_spearman"] = round(float(spearmanr(guesses, c.rating)[0]), 6)
        entry["rating_exact_fraction"] = round(float((guesses == c.rating).mean()), 6)
        entry["rating_mean_csv"] = round(float(c.rating.mean()), 3)
    entry["_sol"] = sol
    return entry


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


def python_solvers(q: np.ndarray, repeats: int) -> dict:
    """py-sudoku and dokusan on a subset, with ours on the same subset for the speed-ups."""
    entry = {"python_subset": len(q), "py_sudoku_pps": round(py_sudoku(q), 2), "dokusan_pps": round(dokusan(q), 2)}
    ours = len(q) / min(ours_pass(q, 1)[0] for _ in range(repeats))
    entry["ours_first_solution_pps_on_subset"] = round(ours, 1)
    entry["speedup_vs_py_sudoku"] = round(ours / entry["py_sudoku_pps"], 1)
    entry["speedup_vs_dokusan"] = round(ours / entry["dokusan_pps"], 1)
    return entry


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown"


def git_commit() -> str:
    def run(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout

    try:
        dirty = "-dirty" if run("status", "--porcelain", "--untracked-files=no").strip() else ""
        return run("rev-parse", "--short", "HEAD").strip() + dirty
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--python-subset", type=int, default=50, help="puzzles per shipped collection for py-sudoku/dokusan"
    )
    ap.add_argument("--limit-17", type=int, default=None, help="use only the first N 17-clue puzzles")
    ap.add_argument("--tdoku", default=None, help="path to tdoku's shared library (libtdoku_shared.so)")
    ap.add_argument("--collection", type=Path, action="append", default=[], help="a tdoku-format puzzle list")
    ap.add_argument("--with-shipped", action="store_true", help="with --collection: run the shipped ones too")
    ap.add_argument("--write-hardest", type=Path, default=None, help="write the hardest_10pct list to this file")
    a = ap.parse_args(argv)
    try:
        cols = {c.name: c for c in map(read_collection, a.collection)}
    except (OSError, ValueError) as e:
        sys.exit(f"error: {e}")
    shipped = not a.collection or a.with_shipped or a.write_hardest
    if shipped:
        if not DATA.exists():
            sys.exit(f"reference data not found at {DATA}")
        ship = {n: load_shipped(n, p, a.limit_17 if n == "17_clue" else None) for n, p in COLLECTIONS.items()}
        ship["hardest_10pct"] = hardest(ship)
        if a.write_hardest:
            write_collection(ship["hardest_10pct"], a.write_hardest)
        if not a.collection or a.with_shipped:
            cols = {**ship, **cols}
    td = Tdoku(a.tdoku) if a.tdoku else None
    report = {
        "command": "python " + " ".join(sys.argv if argv is None else ["benchmarks/sudoku_solver.py", *argv]),
        "commit": git_commit(),
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "numba": numba.__version__,
            # other jobs on a shared machine slow every number down; record how busy it was
            "load_average_1min_at_start": round(os.getloadavg()[0], 2),
        },
        "single_process": True,
        "tdoku_library": a.tdoku,
        "collections": {},
    }
    for name, c in cols.items():
        entry = bench(c, a.repeats, td)
        sol = entry.pop("_sol")
        if name in COLLECTIONS and a.python_subset > 0:
            entry.update(python_solvers(c.q[: a.python_subset], a.repeats))
        report["collections"][name] = entry
        print(f"{name}: done", file=sys.stderr)
    # sanity: the public API gives the same answers as the raw kernel
    assert np.array_equal(solve_batch(c.q[:10].reshape(-1, 9, 9))[0].reshape(-1, 81), sol[:10])
    report["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
