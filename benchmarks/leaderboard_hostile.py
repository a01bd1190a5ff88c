r"""Submit every case of the hostile-submission corpus to a fresh board and print one summary line (JSON).

    python benchmarks/leaderboard_hostile.py                                   # summary line on stdout
    python benchmarks/leaderboard_hostile.py --out benchmarks/results/leaderboard_hostile_cpu.json

The corpus is ``tests/hostile_submissions.py`` (generated in a temporary folder). For each case: whether it was
rejected (with its one-line reason) or accepted, the seconds it took, how much it raised this process's peak
resident set, whether it read any file outside the submission or ran code. The summary: cases tried, rejected,
accepted, unexpected outcomes, this process's largest per-case peak, the scoring workers' peak (the largest
resident set of any child), and the slowest rejection. Do not run it beside another CPU-heavy job: the seconds
are wall-clock.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the checkout this script belongs to, before any installed copy
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="also write the summary and every case's outcome to this JSON file")
    p.add_argument("--cases", nargs="+", help="only these cases (default: all)")
    args = p.parse_args()

    import os

    from hostile_submissions import CASES, run_case
    from quickstart import machine

    from leaderboard.db import Board
    from leaderboard.tasks import get_task, prepare_test_data

    names = args.cases or sorted(CASES)
    unknown = set(names) - set(CASES)
    if unknown:
        raise SystemExit(f"error: unknown cases {sorted(unknown)}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        os.environ["LEADERBOARD_DATA"] = str(Path(tmp) / "data")
        prepare_test_data(get_task("sudoku6"), progress=False)
        t0 = time.perf_counter()
        for i, name in enumerate(names):
            case_dir = Path(tmp) / f"case{i}"
            board = Board(case_dir.parent / f"board{i}.db")
            r = run_case(name, case_dir, board)
            board.close()
            ok = (
                (r["error"] is None) if r["expect"] is None else bool(r["error"] and re.search(r["expect"], r["error"]))
            )
            ok = ok and not r["read_outside"] and not r["ran_code"]
            rows.append({"case": name, "rejected": r["error"] is not None, "as_expected": ok, "reason": r["error"],
                         "seconds": round(r["seconds"], 4), "peak_mib": None if r["peak_bytes"] is None
                         else round(r["peak_bytes"] / 2**20, 1), "read_outside": r["read_outside"]})  # fmt: skip
            print(f"{'ok ' if ok else 'BAD'} {r['seconds']:7.3f} s  {name}", file=sys.stderr, flush=True)
        total = time.perf_counter() - t0
    rejected = [r for r in rows if r["rejected"]]
    slowest = max(rejected, key=lambda r: r["seconds"]) if rejected else None
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    summary = {
        "cases": len(rows),
        "rejected": len(rejected),
        "accepted": len(rows) - len(rejected),
        "unexpected": [r["case"] for r in rows if not r["as_expected"]],
        "peak_rss_increase_mib": max((r["peak_mib"] or 0) for r in rows),
        "worker_peak_rss_mib": round(children, 1),
        "slowest_rejection_s": slowest and slowest["seconds"],
        "slowest_rejection": slowest and slowest["case"],
        "total_s": round(total, 1),
    }
    print(json.dumps(summary))
    if args.out:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()  # fmt: skip
        doc = {"summary": summary, "command": "python " + " ".join(sys.argv), "commit": commit,
               "machine": machine(), "python": platform.python_version(), "cases": rows}  # fmt: skip
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
