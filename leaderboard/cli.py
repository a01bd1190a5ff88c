"""``python -m leaderboard``: submit checkpoints, show the board, verify entries, export it.

    python -m leaderboard submit runs/my-run --task sudoku6 --name alice      # validate, score, record
    python -m leaderboard submit ckpt/ --task sudoku-extreme --name bob --data data/sudoku-extreme-real
    python -m leaderboard baselines --task sudoku6                            # copy-input and random-guess
    python -m leaderboard show [--task sudoku6]                               # ranked tables in the terminal
    python -m leaderboard verify 3                                            # re-score entry 3, compare
    python -m leaderboard export --html board.html --csv board.csv --json board.json
    python -m leaderboard tasks                                               # the task specs

The service (`leaderboard.service`, `leaderboard.jobs`; needs ``pip install -e ".[serve]"``)::

    python -m leaderboard token add alice                 # a submitter's API token (printed once, stored hashed)
    python -m leaderboard serve                           # HTTP on 127.0.0.1:8000 with one scoring worker
    python -m leaderboard worker                          # another worker (same --db; --spool on a server DB)
    python -m leaderboard remote-submit runs/my-run --url http://127.0.0.1:8000 --task sudoku6 --token lb_...

``--db`` (or ``$LEADERBOARD_DB``) picks the database: a path (SQLite, default ``./leaderboard.db``) or a
SQLAlchemy URL; it and ``--store`` go before or after the subcommand (``submit ... --db X``). Exit codes: 0 done,
1 a verify mismatch, 2 a rejected submission or bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

# The rest of the board (torch, pandas, SQLAlchemy) is imported inside the commands that need it, so that
# ``--help`` and bad arguments answer at once.


def collect_rows(board, task: str | None = None, reported: bool = True) -> list[dict]:
    """Board rows (measured and baseline) plus the papers' reported numbers, in `leaderboard.export`'s format.

    Reported rows are attached to every test-data group of their task version, and shown on their own when the
    task has no scores yet but was asked for by name. ``board`` is a `leaderboard.db.Board`.
    """
    from leaderboard.export import ROW_KEYS
    from leaderboard.scoring import split_of
    from leaderboard.tasks import TASKS, get_task

    rows = []
    for r in board.rows(task):
        rows.append(
            {
                **{k: r.get(k) for k in ROW_KEYS},
                "kind": r["kind"],
                "source": None,
                "reportable": bool(r["reportable"]),
                "split": r.get("split") or split_of(r["data"]),
            }
        )
    if reported:
        groups = {(r["task"], r["task_version"], r["data"]) for r in rows}
        if task is not None:
            spec = get_task(task)
            if not any(g[:2] == (spec.name, spec.version) for g in groups):
                groups.add((spec.name, spec.version, f"generated:seed={spec.build_seed}:n={spec.test_size}"))
        for name, version, data in sorted(groups):
            spec = TASKS.get(name, {}).get(version)
            for label, model, params, acc, source in spec.reported if spec else ():
                rows.append(
                    {k: None for k in ROW_KEYS}
                    | {
                        "task": name,
                        "task_version": version,
                        "data": data,
                        "name": label,
                        "model": model,
                        "parameters": params,
                        "exact_accuracy": acc,
                        "kind": "reported",
                        "reportable": True,
                        "source": source,
                        "split": "real",  # the papers report on the real test sets
                    }
                )
    rows.sort(key=lambda r: (r["task"], -r["task_version"], r["data"], -r["exact_accuracy"]))
    return rows


def _pct(v) -> str:
    return "" if v is None else f"{100 * v:.1f}"


def _params(n) -> str:
    from leaderboard.export import human_params

    return "" if n is None else human_params(n)


def format_table(rows: list[dict]) -> str:
    """Ranked plain-text tables, one per (task, version, test data)."""
    if not rows:
        return "the board is empty: submit with `python -m leaderboard submit PATH --task TASK --name NAME`"
    out, group = [], None
    rank = 0
    for r in rows:
        g = (r["task"], r["task_version"], r["data"])
        if g != group:
            group, rank = g, 0
            maze = any(x["valid_path_rate"] is not None for x in rows if (x["task"], x["task_version"]) == g[:2])
            out.append(f"\n{r['task']}@{r['task_version']}  ({r['data']})")
            head = f"{'#':>3} {'id':>4}  {'name':<22} {'model':<12} {'size':<5} {'params':>7}"
            head += f"  {'exact %':>12}  {'cell %':>6}"
            head += f"  {'path %':>6}" if maze else ""
            head += f"  {'steps':>5} {'iters':>5} {'ex/s':>8}  note"
            out += [head, "-" * len(head)]
        rank += 1
        exact = _pct(r["exact_accuracy"]) + (f" ± {_pct(r['exact_accuracy_se'])}" if r["exact_accuracy_se"] else "")
        note = {"reported": f"reported ({r['source']})", "baseline": "baseline"}.get(r["kind"], "")
        if not r["reportable"]:
            note = (note + " " if note else "") + f"--limit {r['count']}: not reportable"
        line = (
            f"{rank:>3} {r['id'] if r['id'] is not None else '':>4}  {str(r['name'])[:22]:<22} "
            f"{str(r['model'])[:12]:<12} {str(r['size'] or '')[:5]:<5} {_params(r['parameters']):>7}  {exact:>12}"
            f"  {_pct(r['cell_accuracy']):>6}"
        )
        line += f"  {_pct(r['valid_path_rate']):>6}" if maze else ""
        steps = "" if r["halt_steps_mean"] is None else f"{r['halt_steps_mean']:.1f}"
        iters = "" if r["solver_iters_mean"] is None else f"{r['solver_iters_mean']:.1f}"
        speed = "" if r["examples_per_s"] is None else f"{r['examples_per_s']:.0f}"
        out.append(line + f"  {steps:>5} {iters:>5} {speed:>8}  {note}")
    return "\n".join(out).lstrip("\n")


def _limits(args):
    from dataclasses import replace

    from leaderboard.validate import Limits

    d = Limits()
    return replace(
        d, max_parameters=args.max_params or d.max_parameters, max_file_bytes=args.max_bytes or d.max_file_bytes
    )


def _worker(args):
    from leaderboard.worker import WorkerLimits

    d = WorkerLimits()
    return WorkerLimits(
        memory_bytes=int(args.worker_memory_gib * (1 << 30)) if args.worker_memory_gib else d.memory_bytes,
        time_scale=args.worker_time_scale or d.time_scale,
        wall_seconds=args.worker_seconds,
        threads=args.worker_threads or d.threads,
    )


def _worker_flags(p) -> None:
    p.add_argument("--worker-memory-gib", type=float, help="scoring worker's memory cap (default 8 GiB)")
    p.add_argument("--worker-seconds", type=float, help="scoring worker's wall-clock limit (default: the task spec's)")
    p.add_argument("--worker-time-scale", type=float, help="multiply the task spec's time limit (slow machines)")
    p.add_argument("--worker-threads", type=int, help="torch threads of the scoring worker (default: as here)")


def _declared_flags(p) -> None:
    p.add_argument("--train-examples", type=int, help="training-set size you declare (shown on the board)")
    p.add_argument("--train-augmentations", type=int, help="augmentations per training example you declare")


def _queue_flags(p) -> None:
    """Flags shared by ``serve`` and ``worker``."""
    p.add_argument("--spool", help="folder of queued uploads, shared by service and workers (default <db>.spool)")
    p.add_argument("--data", action="append", default=[], metavar="TASK=DIR",
                   help="score TASK on the real test split in DIR (default: the task's generated split)")  # fmt: skip
    p.add_argument("--limit", type=int, help="score only the first N test examples (marked not reportable)")
    p.add_argument("--device", default="cpu", help="scoring device: cpu, cuda or cuda:N")
    p.add_argument("--lease-seconds", type=float, default=60.0, help="a claim's lease, renewed while scoring")
    p.add_argument("--max-params", type=int, help="refuse larger models (default 100M)")
    p.add_argument("--max-bytes", type=int, help="refuse larger files (default 1 GiB)")
    _worker_flags(p)


def _print_result(res, as_json: bool) -> None:
    from leaderboard.export import ROW_KEYS

    r = res.row
    if as_json:
        print(
            json.dumps(
                {"id": res.score_id, "created": res.created, **{k: r.get(k) for k in ROW_KEYS if k in r}}, default=str
            )
        )
        return
    what = "scored" if res.created else "already on the board (same file, task and data): not scored again"
    se = f" ± {_pct(r['exact_accuracy_se'])}" if r.get("exact_accuracy_se") else ""
    print(f"#{res.score_id} {r['name']}: {what}")
    print(
        f"  {r['task']}@{r['task_version']} ({r['data']}): exact {_pct(r['exact_accuracy'])}%{se}, "
        f"cell {_pct(r['cell_accuracy'])}%"
        + (f", valid path {_pct(r['valid_path_rate'])}%" if r.get("valid_path_rate") is not None else "")
    )
    if not r["reportable"]:
        print(f"  scored on the first {r['count']} examples only (--limit): not reportable")


_GLOBAL_FLAGS = (
    ("--db", "SQLite path or SQLAlchemy URL (default: $LEADERBOARD_DB or ./leaderboard.db)"),
    ("--store", "folder for copies of accepted submissions (default: <sqlite file>.files)"),
)


def _global_flags(top: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the global options to ``top``; returns a parent parser with them that every subcommand inherits.

    In the subcommands their default is SUPPRESS, so ``--db X submit ...`` and ``submit ... --db X`` both work
    (git-style): a subcommand not given one leaves the top parser's value alone.
    """
    parent = argparse.ArgumentParser(add_help=False)
    for flag, text in _GLOBAL_FLAGS:
        top.add_argument(flag, help=text)
        parent.add_argument(flag, help=text, default=argparse.SUPPRESS)
    return parent


class _GlobalSubparsers:
    """Wraps ``add_subparsers()``'s action: every subcommand it adds also takes the global options."""

    def __init__(self, action, parent: argparse.ArgumentParser) -> None:
        self.action, self.parent = action, parent

    def add_parser(self, name: str, **kw) -> argparse.ArgumentParser:
        return self.action.add_parser(name, parents=[self.parent], **kw)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m leaderboard``."""
    p = argparse.ArgumentParser(prog="python -m leaderboard", description=__doc__.splitlines()[0])
    glob = _global_flags(p)
    sub = _GlobalSubparsers(p.add_subparsers(dest="command", required=True), glob)

    s = sub.add_parser("submit", help="validate, score and record a checkpoint")
    s.add_argument("path", help="checkpoint folder, run directory, model.safetensors, or a weights-only .pt")
    s.add_argument("--task", required=True, help="task or task@version (`python -m leaderboard tasks` lists them)")
    s.add_argument("--name", required=True, help="name shown on the board")
    s.add_argument("--data", help="dataset folder with the real test split (default: the task's generated split)")
    s.add_argument("--limit", type=int, help="score only the first N test examples (marked not reportable)")
    s.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    s.add_argument("--max-params", type=int, help="refuse larger models (default 100M)")
    s.add_argument("--max-bytes", type=int, help="refuse larger files (default 1 GiB)")
    _worker_flags(s)
    s.add_argument("--json", action="store_true", help="print the entry as JSON")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    _declared_flags(s)

    b = sub.add_parser("baselines", help="score the copy-input and random-guess dummies on a task")
    b.add_argument("--task", required=True)
    b.add_argument("--data")
    b.add_argument("--quiet", action="store_true")

    sh = sub.add_parser("show", help="ranked tables")
    sh.add_argument("--task", help="only this task (name or name@version)")
    sh.add_argument("--no-reported", action="store_true", help="leave out the papers' reported numbers")

    v = sub.add_parser("verify", help="re-score an entry and compare with the stored numbers")
    v.add_argument("id", type=int)
    v.add_argument("--path", help="the checkpoint (default: the stored copy)")
    v.add_argument("--data", help="the test data, for entries scored with --data")
    v.add_argument("--device", default="cpu")
    _worker_flags(v)
    v.add_argument("--quiet", action="store_true")

    e = sub.add_parser("export", help="write the board as HTML, CSV and/or JSON")
    e.add_argument("--html")
    e.add_argument("--csv")
    e.add_argument("--json")
    e.add_argument("--task")
    e.add_argument("--no-reported", action="store_true")

    r = sub.add_parser("remove", help="delete an entry")
    r.add_argument("id", type=int)

    sub.add_parser("tasks", help="list the task specs")

    sv = sub.add_parser("serve", help="the HTTP service: submissions, status, results, the live board")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--workers", type=int, default=1, help="scoring workers to run beside it (0: separate ones)")
    sv.add_argument("--max-upload-mib", type=float, help="largest request body (default 256 MiB)")
    sv.add_argument("--tasks", help="comma-separated task names accepted (default: all)")
    sv.add_argument("--refresh-seconds", type=float, default=5.0, help="how often the page checks for scores")
    _queue_flags(sv)

    w = sub.add_parser("worker", help="claim queued submissions and score them in the sandbox, until stopped")
    _queue_flags(w)
    w.add_argument("--poll-seconds", type=float, default=1.0, help="wait between claims on an empty queue")
    w.add_argument("--max-jobs", type=int, help="stop after this many jobs")
    w.add_argument("--idle-exit", action="store_true", help="stop when the queue is empty")

    t = sub.add_parser("token", help="submitters' API tokens")
    tsub = _GlobalSubparsers(t.add_subparsers(dest="token_command", required=True), glob)
    ta = tsub.add_parser("add", help="create a token (printed once; only its hash is stored)")
    ta.add_argument("name")
    ta.add_argument("--rate", type=int, default=30, help="submissions a minute (default 30)")
    ta.add_argument("--quota", type=int, default=1000, help="submissions in all (default 1000)")
    tsub.add_parser("list", help="names, limits and use")
    tr = tsub.add_parser("revoke", help="revoke a token by name")
    tr.add_argument("name")

    rs = sub.add_parser("remote-submit", help="submit a checkpoint to a running service over HTTP")
    rs.add_argument("path", help="checkpoint folder, run directory or model.safetensors (meta.json beside it)")
    rs.add_argument("--url", default="http://127.0.0.1:8000", help="the service (default http://127.0.0.1:8000)")
    rs.add_argument("--task", required=True)
    rs.add_argument("--name", help="name shown on the board (default: the token's name)")
    rs.add_argument("--token", help="API token (default: $LEADERBOARD_TOKEN)")
    _declared_flags(rs)
    rs.add_argument("--no-wait", action="store_true", help="print the queued status and return")
    rs.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the score (default 1800)")
    args = p.parse_args(argv)
    if args.command in ("serve", "worker", "token", "remote-submit"):
        from leaderboard.remote import run_command

        return run_command(args)

    from leaderboard.db import Board, DatabaseError
    from leaderboard.scoring import submit, verify
    from leaderboard.tasks import TASKS, TaskError, get_task
    from leaderboard.validate import SubmissionError

    try:
        if args.command == "tasks":
            for name in sorted(TASKS):
                for _ver, spec in sorted(TASKS[name].items()):
                    print(
                        f"{spec.key:<18} {'(retired) ' if spec.retired else ''}{spec.description}  "
                        f"[test {spec.test_size}, seed {spec.build_seed}, "
                        f"<= {spec.max_steps} steps, <= {spec.max_solver_iter} solver iters, {spec.precision}, "
                        f"fingerprint {spec.fingerprint}]"
                    )
            return 0
        board = Board(args.db)
        if args.command == "submit":
            res = submit(
                args.path,
                args.task,
                name=args.name,
                db=board,
                data=args.data,
                device=args.device,
                limit=args.limit,
                limits=_limits(args),
                worker=_worker(args),
                store=args.store,
                progress=not args.quiet,
                train_examples=args.train_examples,
                train_augmentations=args.train_augmentations,
            )
            _print_result(res, args.json)
        elif args.command == "baselines":
            from leaderboard.baselines import BASELINES, write_dummy_submission

            spec = get_task(args.task)
            with tempfile.TemporaryDirectory() as tmp:
                for name in BASELINES:
                    folder = write_dummy_submission(name, spec.name, Path(tmp) / name)
                    res = submit(
                        folder,
                        spec.key,
                        name=name,
                        db=board,
                        data=args.data,
                        kind="baseline",
                        store=args.store,
                        progress=not args.quiet,
                    )
                    _print_result(res, False)
        elif args.command == "show":
            print(format_table(collect_rows(board, args.task, reported=not args.no_reported)))
        elif args.command == "verify":
            rep = verify(
                args.id,
                db=board,
                path=args.path,
                data=args.data,
                device=args.device,
                store=args.store,
                worker=_worker(args),
                progress=not args.quiet,
            )
            for k, (a, b) in rep.compared.items():
                print(f"  {k:<18} stored {a!s:<22} now {b!s:<22} {'ok' if k not in str(rep.mismatches) else 'DIFFERS'}")
            print(f"#{args.id}: {'verified: the same numbers' if rep.ok else 'MISMATCH: ' + '; '.join(rep.mismatches)}")
            return 0 if rep.ok else 1
        elif args.command == "export":
            from leaderboard import export

            if not (args.html or args.csv or args.json):
                raise ValueError("export needs at least one of --html, --csv, --json")
            for out in filter(None, (args.html, args.csv, args.json)):
                if not Path(out).parent.is_dir():
                    raise ValueError(f"cannot write {out}: the folder {Path(out).parent} does not exist")
            rows = collect_rows(board, args.task, reported=not args.no_reported)
            for flag, fn in (
                (args.html, export.write_html),
                (args.csv, export.write_csv),
                (args.json, export.write_json),
            ):
                if flag:
                    fn(rows, flag)
                    print(f"wrote {flag} ({len(rows)} rows)")
        elif args.command == "remove":
            if not board.delete(args.id):
                raise ValueError(f"no score with id {args.id}")
            print(f"removed #{args.id}")
    except (SubmissionError, TaskError, DatabaseError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
