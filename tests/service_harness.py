"""Helpers for testing and benchmarking the leaderboard service with real processes on localhost.

Used by ``tests/test_leaderboard_service.py`` (claim races), ``tests/test_leaderboard_service_e2e.py`` (a real
uvicorn server, worker processes, Chromium, load and faults), ``tests/test_leaderboard_postgres.py`` (claim
races on PostgreSQL) and ``benchmarks/leaderboard_service.py`` (the recorded figures).

    with Service(tmp_path, workers=0) as svc:          # python -m leaderboard serve on a free localhost port
        w = svc.start_worker()                          # python -m leaderboard worker (its own process)
        token = svc.token("alice")
        items = corpus(tmp_path / "corpus", n_valid=10, n_duplicates=20, n_hostile=20)
        report = run_load(svc.url, token, items, clients=12)

Every process gets this environment plus ``PYTHONPATH`` pointing at this checkout (so the code under test is
this checkout's, whatever is installed) and ``OMP_NUM_THREADS=1``; all traffic goes to 127.0.0.1 and every
loop is bounded in count and time.
"""

from __future__ import annotations

import io
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
from hostile_submissions import CASES, Context, fixture_copy

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "data" / "checkpoints" / "attractor-tiny-sudoku6"


def env(**extra: str) -> dict[str, str]:
    """The environment of every process started here."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """``python -m leaderboard serve`` and workers as real processes, on a board in ``root``."""

    def __init__(self, root: Path, *, workers: int = 0, limit: int = 8, lease_seconds: float = 60.0,
                 extra: tuple[str, ...] = (), db: str | None = None):  # fmt: skip
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.db = db or str(self.root / "board.db")
        self.spool = self.root / "spool" if db else None  # a server database needs a spool folder named
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.limit, self.lease, self.extra, self.n_workers = limit, lease_seconds, extra, workers
        self.server: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.env = env()

    def _cli(self) -> list[str]:
        return [sys.executable, "-m", "leaderboard", "--db", self.db]

    def _flags(self) -> list[str]:
        spool = ["--spool", str(self.spool)] if self.spool else []
        return ["--limit", str(self.limit), "--lease-seconds", str(self.lease), "--worker-threads", "1", *spool]

    def start(self) -> Service:
        log = open(self.root / f"server-{len(list(self.root.glob('server-*.log')))}.log", "wb")
        self.server = subprocess.Popen(
            [
                *self._cli(),
                "serve",
                "--port",
                str(self.port),
                "--workers",
                str(self.n_workers),
                "--refresh-seconds",
                "1",
                *self._flags(),
                *self.extra,
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
        )
        log.close()
        self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = 120.0) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.server is not None and self.server.poll() is not None:
                raise RuntimeError(f"the server exited with {self.server.returncode}: {self.server_log()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the server did not answer in {timeout:.0f} s: {self.server_log()[-2000:]}")

    def server_log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.root.glob("server-*.log")))

    def start_worker(self) -> subprocess.Popen:
        i = len(self.workers)
        log = open(self.root / f"worker-{i}.log", "wb")
        w = subprocess.Popen([*self._cli(), "worker", "--poll-seconds", "0.2", *self._flags()], env=self.env,
                             stdout=log, stderr=subprocess.STDOUT, cwd=self.root)  # fmt: skip
        log.close()
        self.workers.append(w)
        return w

    def token(self, name: str, rate: int = 100_000, quota: int = 100_000) -> str:
        out = subprocess.run([*self._cli(), "token", "add", name, "--rate", str(rate), "--quota", str(quota)],
                             env=self.env, capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
        return out.stdout.strip()

    def kill_server(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGKILL)
            self.server.wait(timeout=30)

    def stop(self) -> None:
        for p in [self.server, *self.workers]:
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in [self.server, *self.workers]:
            if p is None:
                continue
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# ---- submissions ---------------------------------------------------------------------------------------------
@dataclass
class Item:
    """One upload of the load test: what is sent, and what must become of it."""

    label: str
    kind: str  # valid | duplicate | hostile
    files: dict[str, tuple[str, bytes]]
    expect: str | None = None  # hostile: a regex of the rejection


def _perturbed(d: Path, i: int) -> Path:
    """A copy of the fixture with one weight changed: a distinct valid submission (same size, ~1 MB)."""
    from safetensors.torch import load_file, save_file

    fixture_copy(d)
    state = load_file(str(d / "model.safetensors"))
    k = sorted(state)[0]
    state[k] = state[k].clone()
    state[k].view(-1)[0] += 1e-3 * (i + 1)
    save_file(state, str(d / "model.safetensors"))
    return d


def pair(folder: Path) -> dict[str, tuple[str, bytes]]:
    return {"weights": ("model.safetensors", (folder / "model.safetensors").read_bytes()),
            "meta": ("meta.json", (folder / "meta.json").read_bytes())}  # fmt: skip


def tar_gz(folder: Path, arcname: str = "run") -> dict[str, tuple[str, bytes]]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(folder, arcname=arcname)
    return {"archive": ("run.tar.gz", buf.getvalue())}


def _symlink_tar() -> dict[str, tuple[str, bytes]]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name in ("meta.json", "model.safetensors"):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tf.addfile(info)
    return {"archive": ("evil.tar", buf.getvalue())}


def _traversal_tar() -> dict[str, tuple[str, bytes]]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = (FIXTURE / "meta.json").read_bytes()
        info = tarfile.TarInfo("../../escaped/meta.json")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return {"archive": ("evil.tar", buf.getvalue())}


#: hostile uploads: (label, builder, rejection regex); the first ones are refused at the door, the last ones
#: (NaN weights, a pickle that runs code) only in the sandboxed worker
HOSTILE = [
    ("symlink members", lambda d, c: _symlink_tar(), r"links are not accepted"),
    ("path traversal", lambda d, c: _traversal_tar(), r"'\.\.' is not allowed"),
    ("unknown model", lambda d, c: pair(CASES["unknown model"].make(d, c)), r"unknown model 'gpt-17'"),
    ("10050 tensors", lambda d, c: pair(CASES["10050 tensors"].make(d, c)), r"10,050 tensors"),
    ("wrong shape", lambda d, c: pair(CASES["wrong shape"].make(d, c)), r"the architecture needs"),
    ("NaN weight", lambda d, c: pair(CASES["NaN weight"].make(d, c)), r"non-finite"),
    ("torch.save that runs code", lambda d, c: tar_gz(CASES["torch.save that runs code"].make(d, c)),
     r"refused.*weights_only"),
]  # fmt: skip


def corpus(folder: Path, *, n_valid: int, n_duplicates: int, n_hostile: int) -> list[Item]:
    """Uploads for a load test, in a fixed shuffled order.

    ``n_valid`` distinct valid checkpoints, ``n_duplicates`` re-uploads of them (alternating the pair and an
    archive), and ``n_hostile`` hostile uploads cycling through `HOSTILE`.
    """
    import random

    folder.mkdir(parents=True, exist_ok=True)
    ctx = Context.make(folder / "ctx")
    items = []
    valid = [_perturbed(folder / f"valid{i}", i) for i in range(n_valid)]
    for i, d in enumerate(valid):
        items.append(Item(f"valid{i}", "valid", pair(d)))
    for j in range(n_duplicates):
        d = valid[j % n_valid]
        items.append(Item(f"valid{j % n_valid}", "duplicate", tar_gz(d) if j % 2 else pair(d)))
    for k in range(n_hostile):
        label, make, expect = HOSTILE[k % len(HOSTILE)]
        d = folder / f"hostile{k}"
        items.append(Item(f"hostile{k}:{label}", "hostile", make(d, ctx), expect))
    random.Random(0).shuffle(items)
    return items


def upload(client: httpx.Client, url: str, token: str, item: Item, name: str | None = None) -> dict:
    r = client.post(url + "/api/submissions", headers={"Authorization": f"Bearer {token}"},
                    data={"task": "sudoku6", "name": name or item.label}, files=item.files, timeout=120)  # fmt: skip
    r.raise_for_status()
    return r.json()


def run_load(url: str, token: str, items: list[Item], *, clients: int, timeout: float = 600.0,
             after_uploads=None, server_pid: int | None = None) -> dict:  # fmt: skip
    """Upload ``items`` from ``clients`` concurrent clients, wait until every submission is final, and report.

    Returns the figures (accepted uploads per second, the server's CPU time per upload when ``server_pid`` is
    given, time to a final status p50/p95, lost, doubled) and every submission's final status.
    ``after_uploads`` is called once every upload has been answered (e.g. to start more workers).
    """
    from leaderboard.worker import _cpu_seconds

    cpu0 = _cpu_seconds(server_pid) if server_pid else None
    sent: list[tuple[Item, dict, float]] = []
    lock = threading.Lock()

    def one(item: Item):
        with httpx.Client() as c:
            t = time.monotonic()
            status = upload(c, url, token, item)
            with lock:
                sent.append((item, status, t))

    t0 = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, items))
    upload_s = time.monotonic() - t0
    cpu = (_cpu_seconds(server_pid) - cpu0) if server_pid else None
    if after_uploads is not None:
        after_uploads()
    final: dict[int, dict] = {}
    done_at: dict[int, float] = {}
    with httpx.Client() as c:
        while len(final) < len(sent) and time.monotonic() - t0 < timeout:
            for _, status, _ in sent:
                sid = status["id"]
                if sid in final:
                    continue
                s = c.get(f"{url}/api/submissions/{sid}", timeout=30).json()
                if s["status"] in ("scored", "rejected"):
                    final[sid], done_at[sid] = s, time.monotonic()
            time.sleep(0.2)
    total_s = time.monotonic() - t0
    to_final = sorted(done_at[s["id"]] - t for _, s, t in sent if s["id"] in done_at)
    scored_at = {s["id"]: done_at[s["id"]] for _, s, _ in sent if final.get(s["id"], {}).get("status") == "scored"}
    to_score = sorted(scored_at[s["id"]] - t for _, s, t in sent if s["id"] in scored_at)
    distinct = {final[s["id"]]["score_id"] for _, s, _ in sent if s["id"] in scored_at}
    lost = [s["id"] for _, s, _ in sent if s["id"] not in final]
    # doubled: one distinct valid file with more than one score id, or a score id shared by two distinct files
    score_of: dict[str, set] = {}
    for item, s, _ in sent:
        f = final.get(s["id"])
        if item.kind != "hostile" and f is not None and f["status"] == "scored":
            score_of.setdefault(item.label, set()).add(f["score_id"])
    owners: dict[int, set] = {}
    for label, ids in score_of.items():
        for sid in ids:
            owners.setdefault(sid, set()).add(label)
    doubled = sum(len(ids) - 1 for ids in score_of.values()) + sum(len(v) - 1 for v in owners.values())
    return {
        "uploads": len(sent),
        "clients": clients,
        "upload_seconds": round(upload_s, 3),
        "accepted_per_s": round(len(sent) / upload_s, 2),
        "server_cpu_ms_per_upload": round(1000 * cpu / len(sent), 1) if cpu is not None else None,
        "to_final_p50_s": _pct(to_final, 50),
        "to_final_p95_s": _pct(to_final, 95),
        "to_score_p50_s": _pct(to_score, 50),
        "to_score_p95_s": _pct(to_score, 95),
        "distinct_scored": len(distinct),
        "scored_per_s": round(len(distinct) / (max(scored_at.values()) - t0), 3) if scored_at else None,
        "total_seconds": round(total_s, 2),
        "lost": len(lost),
        "doubled": doubled,
        "final": {s["id"]: (item, final.get(s["id"])) for item, s, _ in sent},
    }


def _pct(sorted_values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (nearest rank) of sorted values."""
    if not sorted_values:
        return None
    return round(sorted_values[max(0, math.ceil(q / 100 * len(sorted_values)) - 1)], 2)


def summary(report: dict) -> dict:
    """The JSON-able figures of a `run_load` report (without the per-submission details)."""
    return {k: v for k, v in report.items() if k != "final"}


def fake_jobs(board, n: int) -> None:
    """``n`` queued jobs that are only rows (for claim races: nothing is scored)."""
    from sqlalchemy import insert

    from leaderboard.db import jobs as jobs_table

    with board.engine.begin() as c:
        for i in range(n):
            c.execute(insert(jobs_table).values(sha256=f"{i:064x}", task="sudoku6", task_version=1,
                                                data="generated:seed=0:n=500", limit_n=8, spool=f"jobs/{i}",
                                                name=f"j{i}", status="queued", attempts=0, created_at="t"))  # fmt: skip


def claim_race(url: str, n_jobs: int, n_workers: int) -> dict[int, list[str]]:
    """``n_workers`` threads, each with its own connection, claim until the queue is empty, all at once."""
    from leaderboard import jobs
    from leaderboard.db import Board

    board = Board(url)
    fake_jobs(board, n_jobs)
    got: dict[int, list[str]] = {}
    lock, barrier = threading.Lock(), threading.Barrier(n_workers)

    def run(w: int):
        b = Board(url)
        barrier.wait()
        while (job := jobs.claim(b, f"w{w}", lease_seconds=60)) is not None:
            with lock:
                got.setdefault(job["id"], []).append(f"w{w}")
            time.sleep(0.005)  # "score" it: the others claim meanwhile
        b.close()

    threads = [threading.Thread(target=run, args=(w,)) for w in range(n_workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    board.close()
    return got


def board_rows(db: str) -> list[dict]:
    from leaderboard.db import Board

    b = Board(db)
    try:
        return b.rows()
    finally:
        b.close()


def jobs_rows(db: str) -> list[dict]:
    from sqlalchemy import select

    from leaderboard.db import Board, jobs

    b = Board(db)
    try:
        with b.engine.connect() as c:
            return [dict(r) for r in c.execute(select(jobs).order_by(jobs.c.id)).mappings()]
    finally:
        b.close()


def dump(obj, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=1, default=str) + "\n")
