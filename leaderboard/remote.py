"""The service's commands: ``serve``, ``worker``, ``token`` and the ``remote-submit`` client.

    python -m leaderboard token add alice --rate 30 --quota 1000      # prints the token once
    python -m leaderboard serve --port 8000                           # HTTP + one worker (--workers 0: none)
    python -m leaderboard worker --idle-exit                          # score what is queued, then stop
    LEADERBOARD_TOKEN=lb_... python -m leaderboard remote-submit runs/my-run --task sudoku6

Parsed by `leaderboard.cli` (one ``argparse`` tree); this module turns the arguments into a `Settings`, a
`leaderboard.jobs.QueueWorker` or an HTTP request. ``remote-submit`` needs nothing beyond the standard library:
it sends the checkpoint's ``model.safetensors`` + ``meta.json`` (or a ``.tar.gz`` of a pickled checkpoint and
its ``meta.json``) as a streamed multipart body, then polls the submission's status until it is final. Errors
are one line on stderr; exit codes as `leaderboard.cli`: 0 done, 2 rejected or bad arguments.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import replace
from pathlib import Path

from leaderboard.db import Board, DatabaseError
from leaderboard.tasks import TaskError, get_task
from leaderboard.validate import Limits, SubmissionError, find_files

log = logging.getLogger(__name__)
TOKEN_ENV = "LEADERBOARD_TOKEN"


def _limits(args) -> Limits:
    d = Limits()
    return replace(d, max_parameters=args.max_params or d.max_parameters,
                   max_file_bytes=args.max_bytes or d.max_file_bytes)  # fmt: skip


def _data_map(items: list[str]) -> dict[str, Path]:
    out = {}
    for item in items:
        task, sep, folder = item.partition("=")
        if not sep or not task or not folder:
            raise ValueError(f"--data {item!r}: expected TASK=DIR")
        spec = get_task(task)
        if not (Path(folder) / "test" / "dataset.json").is_file():
            raise ValueError(f"--data {item!r}: {folder} has no test/dataset.json")
        out[spec.name] = Path(folder)
    return out


def _check_queue_args(args) -> None:
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    if not args.lease_seconds >= 3:
        raise ValueError(f"--lease-seconds must be at least 3, got {args.lease_seconds}")


def _queue_worker(args, board: Board):
    from leaderboard import jobs
    from leaderboard.cli import _worker

    return jobs.QueueWorker(
        board=board,
        spool=jobs.spool_dir(board, args.spool),
        store=Path(args.store) if args.store else None,
        data=_data_map(args.data),
        device=args.device,
        limits=_limits(args),
        worker_limits=_worker(args),
        lease_seconds=args.lease_seconds,
        poll_seconds=args.poll_seconds,
    )


def _worker_argv(args, db_url: str, spool: Path) -> list[str]:
    """The command line of a worker the server starts beside itself (the same deployment flags)."""
    argv = [sys.executable, "-m", "leaderboard", "--db", db_url]
    if args.store:
        argv += ["--store", str(Path(args.store).resolve())]
    argv += ["worker", "--spool", str(spool.resolve()), "--device", args.device,
             "--lease-seconds", str(args.lease_seconds)]  # fmt: skip
    for item in args.data:
        argv += ["--data", item]
    for flag in ("limit", "max_params", "max_bytes", "worker_memory_gib", "worker_seconds", "worker_time_scale",
                 "worker_threads"):  # fmt: skip
        if getattr(args, flag) is not None:
            argv += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
    return argv


def _serve(args) -> int:
    import uvicorn

    from leaderboard import jobs
    from leaderboard.service import Settings, create_app
    from leaderboard.upload import UploadLimits

    _check_queue_args(args)
    if args.workers < 0 or args.workers > 64:
        raise ValueError("--workers must be 0 to 64")
    upload = UploadLimits()
    if args.max_upload_mib is not None:
        if not 0 < args.max_upload_mib <= 64 << 10:
            raise ValueError("--max-upload-mib must be positive and at most 65536")
        n = int(args.max_upload_mib * (1 << 20))
        upload = replace(upload, max_body_bytes=n, max_unpacked_bytes=n)
    tasks = tuple(get_task(t.strip()).name for t in args.tasks.split(",")) if args.tasks else None
    board = Board(args.db)
    spool = jobs.spool_dir(board, args.spool)
    settings = Settings(db=board.url, spool=spool, limits=_limits(args), upload=upload, limit=args.limit,
                        data=_data_map(args.data), tasks=tasks, refresh_seconds=args.refresh_seconds)  # fmt: skip
    board.close()
    workers = [subprocess.Popen(_worker_argv(args, settings.db, spool)) for _ in range(args.workers)]
    print(f"leaderboard service on http://{args.host}:{args.port} ({settings.db}, spool {spool}, "
          f"{args.workers} worker{'s' if args.workers != 1 else ''})", flush=True)  # fmt: skip
    try:
        uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)  # a worker hands its current job back to the queue and exits
        for w in workers:
            try:
                w.wait(timeout=15)
            except subprocess.TimeoutExpired:
                w.kill()
    return 0


def _worker(args) -> int:
    from leaderboard import jobs

    _check_queue_args(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(process)d %(levelname)s %(message)s")
    board = Board(args.db)
    w = _queue_worker(args, board)
    jobs.install_stop_signals()
    log.info("claiming jobs from %s (spool %s) as %s", board.url, w.spool, w.name)
    try:
        n = w.run(max_jobs=args.max_jobs, idle_exit=args.idle_exit)
    except jobs._Stop:
        log.info("stopped; the current job (if any) went back to the queue")
        return 0
    log.info("done: %d job%s", n, "" if n == 1 else "s")
    return 0


def _token(args) -> int:
    from leaderboard import jobs

    board = Board(args.db)
    if args.token_command == "add":
        token = jobs.add_token(board, args.name, rate_per_minute=args.rate, quota=args.quota)
        print(token)
        print(f"token for {args.name!r} (shown once; {args.rate}/min, quota {args.quota}): send it as "
              "'Authorization: Bearer <token>' or set $LEADERBOARD_TOKEN", file=sys.stderr)  # fmt: skip
    elif args.token_command == "list":
        rows = jobs.list_tokens(board)
        if not rows:
            print("no tokens: python -m leaderboard token add NAME")
        for r in rows:
            state = f"revoked {r['revoked_at']}" if r["revoked_at"] else "live"
            print(f"{r['name']:<24} {r['rate_per_minute']:>6}/min  used {r['used']:>6} of {r['quota']:<8} {state}")
    elif args.token_command == "revoke":
        if not jobs.revoke_token(board, args.name):
            raise ValueError(f"no live token named {args.name!r}")
        print(f"revoked {args.name!r}")
    return 0


# ---- the client ----------------------------------------------------------------------------------------------
def multipart_body(fields: dict[str, str], files: dict[str, Path], out) -> tuple[str, int]:
    """Write a multipart/form-data body to the binary file ``out``; ``(content type, length)``."""
    boundary = "----leaderboard" + uuid.uuid4().hex
    start = out.tell()
    for k, v in fields.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    for k, path in files.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{path.name}"\r\n'
                  "Content-Type: application/octet-stream\r\n\r\n".encode())  # fmt: skip
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                out.write(chunk)
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", out.tell() - start


def _request(url: str, token: str | None = None, body=None, headers: dict | None = None, timeout: float = 600):
    req = urllib.request.Request(url, data=body, headers={**(headers or {}), "Accept": "application/json"},
                                 method="POST" if body is not None else "GET")  # fmt: skip
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            detail = json.loads(e.read()).get("detail")
        except (ValueError, AttributeError):
            detail = e.reason
        raise ValueError(f"{url}: HTTP {e.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as e:
        raise ValueError(f"{url}: cannot reach the service ({getattr(e, 'reason', e)})") from None


def remote_submit(path: str | os.PathLike, url: str, task: str, token: str, *, name: str | None = None,
                  train_examples: int | None = None, train_augmentations: int | None = None) -> dict:  # fmt: skip
    """Upload a checkpoint to a service; its status (usually ``queued``)."""
    weights, meta = find_files(path)
    fields = {"task": task}
    for k, v in (("name", name), ("train_examples", train_examples), ("train_augmentations", train_augmentations)):
        if v is not None:
            fields[k] = str(v)
    with tempfile.TemporaryDirectory(prefix="leaderboard-upload-") as tmp:
        if weights.suffix == ".safetensors":
            files = {"weights": weights} | ({"meta": meta} if meta else {})
        else:  # a pickled state dict: an archive keeps its file name (and so its format)
            archive = Path(tmp) / "submission.tar.gz"
            with tarfile.open(archive, "w:gz") as tf:
                for f in filter(None, (weights, meta)):
                    tf.add(f, arcname=f.name, recursive=False)
            files = {"archive": archive}
        with tempfile.TemporaryFile(dir=tmp) as body:
            ctype, length = multipart_body(fields, files, body)
            body.seek(0)
            return _request(url.rstrip("/") + "/api/submissions", token, body,
                            {"Content-Type": ctype, "Content-Length": str(length)})  # fmt: skip


def wait_for(url: str, submission_id: int, timeout: float, poll: float = 1.0) -> dict:
    """Poll a submission until it is scored or rejected (or ``timeout`` seconds pass)."""
    t0 = time.monotonic()
    while True:
        status = _request(url.rstrip("/") + f"/api/submissions/{submission_id}")
        if status["status"] in ("scored", "rejected") or time.monotonic() - t0 > timeout:
            return status
        time.sleep(poll)


def _remote_submit(args) -> int:
    token = args.token or os.environ.get(TOKEN_ENV)
    if not token:
        raise ValueError(f"pass --token or set ${TOKEN_ENV} (from `python -m leaderboard token add NAME`)")
    status = remote_submit(args.path, args.url, args.task, token, name=args.name, train_examples=args.train_examples,
                           train_augmentations=args.train_augmentations)  # fmt: skip
    print(f"submission {status['id']}: {status['status']}" + (f" (same file as {status['duplicate_of']})"
          if status.get("duplicate_of") else ""), flush=True)  # fmt: skip
    if not args.no_wait and status["status"] not in ("scored", "rejected"):
        status = wait_for(args.url, status["id"], args.timeout)
    if status["status"] == "rejected":
        print(f"rejected: {status['reason']}", file=sys.stderr)
        return 2
    if status["status"] == "scored" and status.get("score"):
        s = status["score"]
        print(f"scored #{s['id']} {s['task']}@{s['task_version']} ({s['data']}): exact "
              f"{100 * s['exact_accuracy']:.1f}%, {s['network_evals_per_example']:.0f} network evaluations per "
              "example" + ("" if s["reportable"] else f" (first {s['count']} examples: not reportable)"))  # fmt: skip
    elif status["status"] != "scored":
        print(f"still {status['status']} after {args.timeout:.0f} s; check {args.url}/api/submissions/{status['id']}")
    return 0


def run_command(args) -> int:
    """Run ``serve``, ``worker``, ``token`` or ``remote-submit``; one-line errors, exit code 2."""
    commands = {"serve": _serve, "worker": _worker, "token": _token, "remote-submit": _remote_submit}
    try:
        return commands[args.command](args)
    except ImportError as e:
        print(f"error: {e.name or e} is missing: pip install -e '.[serve]'", file=sys.stderr)
        return 2
    except (SubmissionError, TaskError, DatabaseError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
