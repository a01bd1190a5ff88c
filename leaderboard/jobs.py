"""The scoring queue of the leaderboard service: API tokens, jobs claimed by workers, and the worker loop.

    python -m leaderboard token add alice            # prints alice's API token once (only its hash is stored)
    python -m leaderboard worker                     # claim queued jobs and score them, until stopped
    python -m leaderboard --db postgresql+psycopg://... worker --spool /shared/spool   # one of many

The HTTP service (`leaderboard.service`) never scores: it stores each accepted upload's files under the spool
folder and adds a row to ``jobs``; workers, on this machine or others that share the database and the spool
folder, claim jobs, score them in the sandboxed child process of `leaderboard.worker`, and write the result.

* **One job per distinct file**: a job is keyed by the submission's content hash, the task version, the test
  data and the limit (a unique constraint), so the same file uploaded twice points at the same job and is
  scored once; a file already on the board (e.g. submitted with the CLI) is finished without scoring.
* **Atomic claims**: a claim is one transaction that picks the oldest claimable job and marks it ``scoring``
  with a fresh random claim id. On PostgreSQL the pick is ``SELECT ... FOR UPDATE SKIP LOCKED`` (concurrent
  workers take different rows without waiting); on SQLite the transaction starts with ``BEGIN IMMEDIATE``
  (`leaderboard.db`), SQLite's single-writer lock, so two claims are serialised. Either way the ``UPDATE`` is
  guarded by the row's state, so a row is never claimed twice.
* **Leases**: a scoring job carries ``lease_until``; the worker renews it from a heartbeat thread while it
  scores. A worker that dies stops renewing, and once the lease has passed another worker claims the job again
  (``attempts`` counts the claims; after `MAX_ATTEMPTS` the job is rejected rather than retried forever).
* **Exactly once**: a worker finishes a job in one transaction that checks its claim id is still the job's,
  writes the score (`Board.add_in`) and marks the job ``scored``; a worker that lost its lease writes nothing.
  The scores table's unique key makes even a late duplicate a no-op.

Worker clocks are compared through ``lease_until`` (unix time): machines sharing a database need synchronised
clocks (NTP), and a lease should be several heartbeats long (the default: 60 s, renewed every 10 s).
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
import signal
import socket
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from leaderboard.db import Board, jobs, now, scores, tokens, uploads
from leaderboard.scoring import board_folder, keep_copy, score_staged, split_of, store_dir
from leaderboard.tasks import TaskSpec, data_fingerprint, default_data_root, get_task, prepare_test_data
from leaderboard.validate import Limits, SubmissionError, inspect_submission, stage_submission
from leaderboard.worker import WorkerLimits

log = logging.getLogger(__name__)

SPOOL_ENV = "LEADERBOARD_SPOOL"
LEASE_SECONDS = 60.0
MAX_ATTEMPTS = 3
TOKEN_PREFIX = "lb_"
STATUSES = ("queued", "scoring", "scored", "rejected")


class RateLimited(Exception):
    """The token sent more submissions in the last minute than its rate allows (HTTP 429)."""


class QuotaExceeded(Exception):
    """The token has used its quota of submissions (HTTP 403)."""


# ---- tokens ------------------------------------------------------------------------------------------------------
def hash_token(token: str) -> str:
    """SHA-256 of a token: tokens are 256-bit random strings, so a fast hash is enough (no password to guess)."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def add_token(board: Board, name: str, *, rate_per_minute: int = 30, quota: int = 1000) -> str:
    """Create a submitter's token and return it (it is shown once: only its hash is stored).

    Raises:
        ValueError: a bad name or limit, or a token of that name exists.
    """
    name = name.strip()
    if not name or len(name) > 100 or not name.isprintable():
        raise ValueError("a token name must be 1 to 100 printable characters")
    if not 1 <= rate_per_minute <= 100_000 or not 0 <= quota <= 10**9:
        raise ValueError("--rate must be 1 to 100,000 per minute and --quota 0 to 10^9")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    try:
        with board.engine.begin() as conn:
            row = {"name": name, "token_sha256": hash_token(token), "rate_per_minute": rate_per_minute,
                   "quota": quota, "created_at": now()}  # fmt: skip
            conn.execute(insert(tokens).values(**row))
    except IntegrityError:
        raise ValueError(f"a token named {name!r} exists (revoke it first to issue a new one)") from None
    return token


def revoke_token(board: Board, name: str) -> bool:
    """Revoke the token named ``name``; False when there is no such live token."""
    with board.engine.begin() as conn:
        res = conn.execute(
            update(tokens).where(tokens.c.name == name, tokens.c.revoked_at.is_(None)).values(revoked_at=now())
        )
    return res.rowcount == 1


def list_tokens(board: Board) -> list[dict]:
    """Every token's name, limits, use and state (never the token)."""
    q = (
        select(
            tokens.c.id,
            tokens.c.name,
            tokens.c.rate_per_minute,
            tokens.c.quota,
            tokens.c.created_at,
            tokens.c.revoked_at,
            func.count(uploads.c.id).label("used"),
        )
        .outerjoin(uploads, uploads.c.token_id == tokens.c.id)
        .group_by(tokens.c.id)
        .order_by(tokens.c.id)
    )
    with board.engine.begin() as conn:
        return [dict(r) for r in conn.execute(q).mappings()]


def authenticate(board: Board, token: str) -> dict | None:
    """The live token row for ``token``, or None (unknown or revoked)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    with board.engine.begin() as conn:
        row = conn.execute(select(tokens).where(tokens.c.token_sha256 == hash_token(token))).mappings().first()
    return dict(row) if row is not None and row["revoked_at"] is None else None


def _check_allowance(conn, token: dict, t: float) -> None:
    used = conn.execute(select(func.count()).where(uploads.c.token_id == token["id"])).scalar_one()
    if used >= token["quota"]:
        raise QuotaExceeded(f"the token {token['name']!r} has used its quota of {token['quota']:,} submissions")
    recent = conn.execute(
        select(func.count()).where(uploads.c.token_id == token["id"], uploads.c.created_unix > t - 60.0)
    ).scalar_one()
    if recent >= token["rate_per_minute"]:
        raise RateLimited(f"rate limit: at most {token['rate_per_minute']} submissions a minute for this token")


def check_allowance(board: Board, token: dict) -> None:
    """Raise `RateLimited` / `QuotaExceeded` when the token may not submit now (checked again when recording)."""
    with board.engine.connect() as conn:
        _check_allowance(conn, token, time.time())


# ---- enqueue (the service) -----------------------------------------------------------------------------------
def spool_dir(board: Board, spool: str | os.PathLike | None = None) -> Path:
    """Where uploaded files wait for a worker: ``spool``, ``$LEADERBOARD_SPOOL``, or ``<sqlite file>.spool``.

    Raises:
        ValueError: a server database without a spool folder given (workers elsewhere must share one).
    """
    folder = board_folder(board, spool, SPOOL_ENV, ".spool")
    if folder is not None:
        return folder
    raise ValueError(f"with a database server, pass --spool (or ${SPOOL_ENV}): a folder every worker can read")


@dataclass(frozen=True)
class DataChoice:
    """The test data a service or worker scores a task on: the generated split, or a real test folder."""

    folder: Path | None  # None: the task's generated split
    data_id: str
    examples: int


def data_choice(spec: TaskSpec, folder: str | os.PathLike | None) -> DataChoice:
    """The data id and size of ``spec``'s test data, without building a generated split."""
    if folder is None:
        return DataChoice(None, f"generated:seed={spec.build_seed}:n={spec.test_size}", spec.test_size)
    import numpy as np

    folder = Path(folder)
    n = len(np.load(folder / "test" / "all__inputs.npy", mmap_mode="r"))
    return DataChoice(folder, data_fingerprint(folder), n)


def limit_key(limit: int | None, examples: int) -> int:
    """The ``limit_n`` of a score: 0 for the whole split (also when the limit covers it)."""
    return 0 if limit is None or limit >= examples else limit


def record_upload(
    board: Board,
    token: dict,
    *,
    name: str,
    task: TaskSpec,
    upload_bytes: int,
    reason: str | None = None,
    staged: Path | None = None,
    sha256: str | None = None,
    data_id: str | None = None,
    limit_n: int = 0,
    declared: dict | None = None,
    spool: Path | None = None,
) -> tuple[int, bool]:
    """Record one accepted upload: rejected at the door (``reason``), or queued for scoring.

    A queued upload's ``staged`` folder is moved into ``spool`` (a rename, so the job's files are complete the
    moment any worker can see the job) unless a job for the same file, task, data and limit exists, which the
    upload then shares. Returns ``(upload id, duplicate)``.

    Raises:
        RateLimited, QuotaExceeded: the token may not submit now (nothing recorded; the files are left as given).
    """
    declared = declared or {}
    for attempt in range(3):
        moved: Path | None = None
        try:
            with board.engine.begin() as conn:
                t = time.time()
                _check_allowance(conn, token, t)
                job_id, duplicate = None, False
                if reason is None:
                    key = (jobs.c.sha256 == sha256, jobs.c.task == task.name, jobs.c.task_version == task.version,
                           jobs.c.data == data_id, jobs.c.limit_n == limit_n)  # fmt: skip
                    found = conn.execute(select(jobs.c.id).where(*key)).first()
                    if found is not None:
                        job_id, duplicate = found[0], True
                    else:
                        rel = f"jobs/{uuid.uuid4().hex}"
                        moved = spool / rel
                        moved.parent.mkdir(parents=True, exist_ok=True)
                        os.replace(staged, moved)
                        job_id = conn.execute(
                            insert(jobs)
                            .values(
                                sha256=sha256,
                                task=task.name,
                                task_version=task.version,
                                data=data_id,
                                limit_n=limit_n,
                                spool=rel,
                                name=name,
                                status="queued",
                                attempts=0,
                                created_at=now(),
                                **declared,
                            )
                            .returning(jobs.c.id)
                        ).scalar_one()
                upload_id = conn.execute(
                    insert(uploads)
                    .values(
                        token_id=token["id"],
                        job_id=job_id,
                        name=name,
                        task=task.key,
                        reason=reason,
                        upload_bytes=upload_bytes,
                        created_unix=t,
                        created_at=now(),
                    )
                    .returning(uploads.c.id)
                ).scalar_one()
            return int(upload_id), duplicate
        except BaseException as e:
            if moved is not None and moved.exists():  # the transaction did not commit: put the files back
                os.replace(moved, staged)
            if isinstance(e, IntegrityError) and attempt < 2:
                continue  # a concurrent upload of the same file made the job first (servers): share it
            raise
    raise AssertionError("unreachable")


def upload_status(board: Board, upload_id: int) -> dict | None:
    """An upload's state: its job's status (or its rejection at the door), reason, and score row when scored."""
    q = (
        select(
            uploads,
            tokens.c.name.label("submitter"),
            jobs.c.status,
            jobs.c.reason.label("job_reason"),
            jobs.c.score_id,
            jobs.c.attempts,
        )
        .join(tokens, tokens.c.id == uploads.c.token_id)
        .outerjoin(jobs, jobs.c.id == uploads.c.job_id)
        .where(uploads.c.id == upload_id)
    )
    with board.engine.begin() as conn:
        r = conn.execute(q).mappings().first()
        if r is None:
            return None
        first = None
        if r["job_id"] is not None:
            first = conn.execute(select(func.min(uploads.c.id)).where(uploads.c.job_id == r["job_id"])).scalar_one()
    status = "rejected" if r["job_id"] is None else r["status"]
    return {
        "id": r["id"],
        "task": r["task"],
        "name": r["name"],
        "submitter": r["submitter"],
        "status": status,
        "reason": r["reason"] if r["job_id"] is None else r["job_reason"],
        "score_id": r["score_id"],
        "duplicate_of": first if first is not None and first != r["id"] else None,
        "attempts": r["attempts"] or 0,
        "created_at": r["created_at"],
    }


def board_state(board: Board) -> str:
    """A string that changes whenever a score is added or removed (what the live page polls)."""
    with board.engine.connect() as conn:
        n, top = conn.execute(select(func.count(scores.c.id), func.max(scores.c.id))).one()
    return f"{n}-{top or 0}"


def queue_counts(board: Board) -> dict[str, int]:
    """Jobs per status."""
    with board.engine.connect() as conn:
        got = dict(conn.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status)).all())
    return {s: int(got.get(s, 0)) for s in STATUSES}


# ---- claims (the workers) ------------------------------------------------------------------------------------
def claim(board: Board, worker: str, *, lease_seconds: float = LEASE_SECONDS, real_data: tuple[str, ...] = (),
          max_attempts: int = MAX_ATTEMPTS) -> dict | None:  # fmt: skip
    """Claim the oldest queued job (or one whose lease ran out) for ``worker``; None when there is none.

    ``real_data``: the data ids of real test folders this worker has; jobs on generated splits are always
    claimable (any worker can build them). A lapsed job that has had ``max_attempts`` claims is rejected here.
    """
    while True:
        with board.engine.begin() as conn:
            t = time.time()
            ready = or_(jobs.c.status == "queued", and_(jobs.c.status == "scoring", jobs.c.lease_until < t))
            q = select(jobs).where(ready, or_(jobs.c.data.like("generated:%"), jobs.c.data.in_(real_data)))
            q = q.order_by(jobs.c.id).limit(1)
            if conn.dialect.name == "postgresql":
                q = q.with_for_update(skip_locked=True)
            row = conn.execute(q).mappings().first()
            if row is None:
                return None
            job = dict(row)
            if job["attempts"] >= max_attempts:
                conn.execute(
                    update(jobs)
                    .where(jobs.c.id == job["id"], ready)
                    .values(
                        status="rejected",
                        claim=None,
                        finished_at=now(),
                        reason=f"scoring was interrupted {job['attempts']} times (the worker stopped or lost its "
                        "lease); not retried",
                    )
                )
                continue
            token = uuid.uuid4().hex
            res = conn.execute(
                update(jobs)
                .where(jobs.c.id == job["id"], ready)
                .values(
                    status="scoring",
                    claim=token,
                    worker=worker[:200],
                    lease_until=t + lease_seconds,
                    attempts=jobs.c.attempts + 1,
                )
            )
            if res.rowcount != 1:  # taken between the pick and the update (a server without the lock): next one
                continue
            job.update(status="scoring", claim=token, worker=worker, attempts=job["attempts"] + 1)
            return job


def renew(board: Board, job_id: int, claim_id: str, lease_seconds: float = LEASE_SECONDS) -> bool:
    """Extend the lease of a job this worker holds; False when the claim is no longer its."""
    with board.engine.begin() as conn:
        res = conn.execute(
            update(jobs).where(jobs.c.id == job_id, jobs.c.claim == claim_id, jobs.c.status == "scoring")
            .values(lease_until=time.time() + lease_seconds)
        )  # fmt: skip
    return res.rowcount == 1


def _held(job_id: int, claim_id: str):
    return (jobs.c.id == job_id, jobs.c.claim == claim_id, jobs.c.status == "scoring")


def finish_scored(board: Board, job: dict, record: dict | None, row: dict | None, score_id: int | None = None) -> bool:
    """Write the score and mark the job scored, in one transaction; False (nothing written) if the claim was lost.

    ``score_id``: an existing score of the same file (nothing new is written but the job's link to it).
    """
    for attempt in range(3):
        try:
            with board.engine.begin() as conn:
                q = select(jobs.c.id).where(*_held(job["id"], job["claim"]))
                if conn.dialect.name == "postgresql":
                    q = q.with_for_update()
                if conn.execute(q).first() is None:
                    return False
                if score_id is None:
                    declared = {k: job[k] for k in ("train_examples", "train_augmentations")}
                    score_id, _ = board.add_in(conn, {**record, "name": job["name"], "kind": "measured", **declared},
                                               row)  # fmt: skip
                conn.execute(
                    update(jobs).where(*_held(job["id"], job["claim"]))
                    .values(status="scored", score_id=score_id, claim=None, finished_at=now())
                )  # fmt: skip
            return True
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def finish_rejected(board: Board, job: dict, reason: str) -> bool:
    """Mark a held job rejected with its one-line reason; False if the claim was lost."""
    with board.engine.begin() as conn:
        res = conn.execute(
            update(jobs).where(*_held(job["id"], job["claim"]))
            .values(status="rejected", reason=reason[:2000], claim=None, finished_at=now())
        )  # fmt: skip
    return res.rowcount == 1


def release(board: Board, job: dict, *, count: bool = True) -> None:
    """Hand a held job back to the queue (``count=False``: this claim does not count as an attempt)."""
    values = {"status": "queued", "claim": None, "lease_until": None}
    if not count:
        values["attempts"] = jobs.c.attempts - 1
    with board.engine.begin() as conn:
        conn.execute(update(jobs).where(*_held(job["id"], job["claim"])).values(**values))


# ---- the worker loop -----------------------------------------------------------------------------------------
class _Stop(BaseException):
    """SIGTERM/SIGINT: hand the current job back and stop."""


@dataclass
class QueueWorker:
    """A worker process's loop: claim, score in the sandbox, finish; see the module docstring.

    Attributes:
        board: the shared database.
        spool: the spool folder the service writes uploads to.
        store: where accepted submissions are kept (default: the board's, as `leaderboard.scoring.store_dir`).
        data: task name -> real test folder (tasks not named are scored on their generated split).
        device: the scoring device.
        limits, worker_limits: the file checks and the sandbox's limits.
        lease_seconds: the claim's lease, renewed every third of it while scoring.
        poll_seconds: the wait between claims when the queue is empty.
        name: this worker's name in the jobs table (host and pid by default).
    """

    board: Board
    spool: Path
    store: Path | None = None
    data: dict[str, Path] = field(default_factory=dict)
    device: str = "cpu"
    limits: Limits = field(default_factory=Limits)
    worker_limits: WorkerLimits = field(default_factory=WorkerLimits)
    lease_seconds: float = LEASE_SECONDS
    poll_seconds: float = 1.0
    name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    def __post_init__(self):
        self._real = {get_task(t).name: data_choice(get_task(t), folder) for t, folder in self.data.items()}
        self._stop = threading.Event()

    def stop(self) -> None:
        """Stop after the current claim attempt (from another thread)."""
        self._stop.set()

    def run(self, max_jobs: int | None = None, idle_exit: bool = False) -> int:
        """Claim and score jobs until stopped (or ``max_jobs`` done, or the queue is empty with ``idle_exit``)."""
        done = 0
        real = tuple(c.data_id for c in self._real.values())
        while not self._stop.is_set() and (max_jobs is None or done < max_jobs):
            job = claim(self.board, self.name, lease_seconds=self.lease_seconds, real_data=real)
            if job is None:
                if idle_exit:
                    break
                self._stop.wait(self.poll_seconds)
                continue
            self.process(job)
            done += 1
        return done

    def process(self, job: dict) -> str:
        """Score one claimed job; returns what became of it (``scored``, ``rejected``, ``lost``, ``released``)."""
        beat_stop, lost = threading.Event(), threading.Event()

        def heartbeat():
            while not beat_stop.wait(self.lease_seconds / 3):
                try:
                    if not renew(self.board, job["id"], job["claim"], self.lease_seconds):
                        lost.set()
                        return
                except Exception:  # a database hiccup: the next beat tries again, the lease has slack
                    log.exception("could not renew the lease of job %s", job["id"])

        beat = threading.Thread(target=heartbeat, name=f"lease-{job['id']}", daemon=True)
        beat.start()
        outcome = "released"
        try:
            outcome = self._score(job)
        except _Stop:
            release(self.board, job, count=False)
            raise
        except Exception:
            log.exception("job %s failed for a reason that is not the submission's; it goes back to the queue",
                          job["id"])  # fmt: skip
            release(self.board, job)
        finally:
            beat_stop.set()
            beat.join()
        if outcome in ("scored", "rejected"):
            shutil.rmtree(self.spool / job["spool"], ignore_errors=True)  # the store keeps accepted copies
        log.info("job %s (%s): %s", job["id"], job["name"], outcome)
        return outcome

    def _score(self, job: dict) -> str:
        spec = get_task(f"{job['task']}@{job['task_version']}")
        choice = self._real.get(spec.name)
        with _data_lock():  # workers starting together on a fresh machine would build the same split at once
            data_dir, data_id = prepare_test_data(spec, choice.folder if choice else None, progress=False)
        if data_id != job["data"]:
            raise RuntimeError(f"job {job['id']} is on data {job['data']}, this worker has {data_id}")
        existing = self.board.find_score(job["sha256"], spec.name, spec.version, job["data"], job["limit_n"])
        if existing is not None:  # the same file was scored already (another job's limit, or the CLI)
            return "scored" if finish_scored(self.board, job, None, None, score_id=int(existing["id"])) else "lost"
        with tempfile.TemporaryDirectory(prefix="leaderboard-job-") as tmp:
            work = Path(tmp)
            try:
                # a private copy again: the spool may be shared, and the sandbox reads only what it was handed
                staged = stage_submission(self.spool / job["spool"], work / "submission", self.limits)
                pre = inspect_submission(staged, self.limits, task=spec)
                if pre.sha256 != job["sha256"]:
                    raise SubmissionError("the queued files changed after they were accepted; submit again")
                row, record = score_staged(staged, spec, data_dir, work, device=self.device,
                                           limit=job["limit_n"] or None, limits=self.limits,
                                           worker=self.worker_limits)  # fmt: skip
            except SubmissionError as e:
                reason = str(e).replace(str(work / "submission"), "submission")
                return "rejected" if finish_rejected(self.board, job, reason) else "lost"
            row["data"], row["split"] = data_id, split_of(data_id)
            root = self.store or store_dir(self.board)
            if root is not None:
                keep_copy(staged, record["sha256"], root)
            return "scored" if finish_scored(self.board, job, record, row) else "lost"


@contextmanager
def _data_lock():
    """An exclusive lock on the generated-splits folder (``flock``: released if the process dies)."""
    import fcntl

    root = default_data_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def install_stop_signals() -> None:
    """SIGTERM and SIGINT stop the worker: its current job goes back to the queue at once."""

    def handler(signum, _frame):
        raise _Stop(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
