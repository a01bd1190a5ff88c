r"""Load-test the leaderboard service on localhost and print its figures (JSON).

    python benchmarks/leaderboard_service.py                                   # one line per run on stdout
    python benchmarks/leaderboard_service.py --out benchmarks/results/leaderboard_service_cpu.json

Starts a real ``python -m leaderboard serve`` and ``python -m leaderboard worker`` processes on a fresh SQLite
board (`tests/service_harness.py`, the same harness as the slow-tier load test), then sends 50 uploads of
~1 MB checkpoints (10 distinct valid ones, 20 duplicates, 20 hostile: `service_harness.HOSTILE`) from 12
concurrent clients, and waits until every submission is scored or rejected. Runs:

* ``uploads only``: no worker, so the upload figure has no scoring beside it (accepted uploads per second,
  and the server's CPU time per upload, which does not depend on what else the machine runs);
* one run per ``--workers`` count, the workers running before the first upload: accepted per second while
  scoring, time from upload to score (p50/p95, valid submissions), distinct scores per second from the first
  upload to the last score (scoring throughput: it should grow with workers), lost (never final) and doubled
  (a file with two scores, or a score shared by two files).

Each scoring uses ``--limit`` examples (default 8, marked not reportable) so a run takes about a minute on
2 cores. Timings are wall-clock: do not run it beside another CPU-heavy job (or say so in ``--note``).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the checkout this script belongs to, before any installed copy
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def one_run(tmp: Path, label: str, workers: int, args) -> dict:
    from service_harness import Service, corpus, run_load, summary

    items = corpus(tmp / f"corpus-{label}", n_valid=args.valid, n_duplicates=args.duplicates, n_hostile=args.hostile)
    with Service(tmp / f"svc-{label}", workers=0, limit=args.limit) as svc:
        for _ in range(workers):
            svc.start_worker()
        token = svc.token("bench")
        report = run_load(svc.url, token, items, clients=args.clients, timeout=args.timeout if workers else 2.0,
                          server_pid=svc.server.pid)  # fmt: skip
    out = {"run": label, "workers": workers, **summary(report)}
    if not workers:  # nothing is scored: only the upload figures mean something
        out = {k: v for k, v in out.items() if not k.startswith(("to_", "distinct", "scored", "lost", "doubled"))}
    else:
        wrong = [i.label for i, f in report["final"].values()
                 if f is None or f["status"] != ("rejected" if i.kind == "hostile" else "scored")]  # fmt: skip
        out["unexpected"] = wrong
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to run (default 1 2)")
    p.add_argument("--valid", type=int, default=10)
    p.add_argument("--duplicates", type=int, default=20)
    p.add_argument("--hostile", type=int, default=20)
    p.add_argument("--clients", type=int, default=12)
    p.add_argument("--limit", type=int, default=8, help="test examples scored per submission (default 8)")
    p.add_argument("--timeout", type=float, default=900, help="seconds to wait for every score (per run)")
    p.add_argument("--note", default="", help="recorded with the results (e.g. what else the machine ran)")
    p.add_argument("--out", help="also write the runs to this JSON file")
    args = p.parse_args()
    if min(args.workers) < 1 or args.valid < 1 or args.clients < 1 or args.limit < 1:
        raise SystemExit("error: --workers, --valid, --clients and --limit must be at least 1")

    import os

    from quickstart import machine

    from leaderboard.tasks import get_task, prepare_test_data

    runs = []
    with tempfile.TemporaryDirectory(prefix="lb-service-bench-") as tmp:
        os.environ["LEADERBOARD_DATA"] = str(Path(tmp) / "data")  # the sudoku6 split, built once for all runs
        prepare_test_data(get_task("sudoku6"), progress=False)
        runs.append(one_run(Path(tmp), "uploads only", 0, args))
        for n in args.workers:
            runs.append(one_run(Path(tmp), f"{n} worker{'s' if n > 1 else ''}", n, args))
    if args.out:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()  # fmt: skip
        load = os.getloadavg()
        doc = {"runs": runs, "command": "python " + " ".join(sys.argv), "commit": commit, "machine": machine(),
               "python": platform.python_version(), "load_average_at_end": [round(x, 2) for x in load],
               "note": args.note}  # fmt: skip
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
