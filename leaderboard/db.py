"""The leaderboard's database: SQLite by default, any SQLAlchemy URL (e.g. PostgreSQL) for a shared board.

    from leaderboard.db import Board
    board = Board("leaderboard.db")                         # a path: SQLite (WAL), created and migrated on open
    board = Board("postgresql+psycopg://user@host/board")   # or a URL

Tables (schema version 2; `MIGRATIONS` upgrades older files on open, and a file written by a newer version is
refused rather than guessed at):

* ``submissions``: one row per distinct submission (``sha256`` of the weights and model config is unique), with
  the submitter's name, model, size, parameter count, file size and format, the full ``meta.json``, the training
  set size and augmentation the submitter declared, and when;
* ``scores``: one row per (submission, task, task version, test data, limit), with the headline metrics as
  columns, the test-time compute (network evaluations per example) and whether the split was generated or the
  real test set, every metric as JSON, the task spec's fingerprint, the scoring device, torch version, code
  commit, duration and time;
* the service's tables (``leaderboard.jobs``): ``tokens`` (submitters' API tokens, stored as hashes, with their
  rate limit and quota), ``jobs`` (one scoring job per distinct submission file, task and data: the queue
  workers claim from) and ``uploads`` (every accepted HTTP submission, pointing at its job).

Every write is one transaction. On SQLite it starts with ``BEGIN IMMEDIATE`` (the write lock is taken up front,
so two processes never both read-then-write and deadlock) and waits up to ``busy_timeout`` for other writers;
WAL mode lets readers run while a writer commits. Unique constraints make a concurrent duplicate a no-op.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError

SCHEMA_VERSION = 2
DEFAULT_DB_ENV = "LEADERBOARD_DB"

metadata = MetaData()
schema_version = Table("schema_version", metadata, Column("version", Integer, nullable=False))
submissions = Table(
    "submissions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("model", String(100), nullable=False),
    Column("size", String(50)),
    Column("parameters", BigInteger, nullable=False),  # 64-bit: Integer is 32-bit on PostgreSQL
    Column("file_bytes", BigInteger, nullable=False),
    Column("file_format", String(20), nullable=False),
    Column("kind", String(20), nullable=False),  # measured | baseline
    Column("meta_json", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
    # declared by the submitter (not checked: the board shows them as declared), schema version 2
    Column("train_examples", BigInteger),
    Column("train_augmentations", BigInteger),
)
scores = Table(
    "scores",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("submission_id", Integer, ForeignKey("submissions.id", ondelete="CASCADE"), nullable=False),
    Column("task", String(100), nullable=False),
    Column("task_version", Integer, nullable=False),
    Column("task_fingerprint", String(32), nullable=False),
    Column("data", String(200), nullable=False),
    Column("limit_n", Integer, nullable=False),  # 0: the whole test split
    Column("reportable", Boolean, nullable=False),
    Column("exact_accuracy", Float, nullable=False),
    Column("exact_accuracy_se", Float),
    Column("cell_accuracy", Float),
    Column("valid_path_rate", Float),
    Column("halt_steps_mean", Float),
    Column("solver_iters_mean", Float),
    Column("examples_per_s", Float),
    Column("count", Integer, nullable=False),
    Column("steps", Integer, nullable=False),
    Column("metrics_json", Text, nullable=False),
    Column("device", String(100), nullable=False),
    Column("torch_version", String(50)),
    Column("code_version", String(64)),
    Column("duration_s", Float),
    Column("scored_at", String(40), nullable=False),
    # schema version 2: what a reader needs to compare fairly (see `leaderboard.scoring.network_evals`)
    Column("network_evals_per_example", Float),
    Column("split", String(20)),  # generated | real
    UniqueConstraint("submission_id", "task", "task_version", "data", "limit_n", name="uq_score"),
)
#: columns added by schema version 2 to the version-1 tables (``ALTER TABLE ... ADD COLUMN`` on upgrade)
_V2_COLUMNS = {"submissions": ("train_examples", "train_augmentations"),
               "scores": ("network_evals_per_example", "split")}  # fmt: skip

tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("token_sha256", String(64), nullable=False, unique=True),  # the token itself is never stored
    Column("rate_per_minute", Integer, nullable=False),
    Column("quota", Integer, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("revoked_at", String(40)),
)
jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # what is scored: the same file on the same task version, data and limit is one job (scored once)
    Column("sha256", String(64), nullable=False),
    Column("task", String(100), nullable=False),
    Column("task_version", Integer, nullable=False),
    Column("data", String(200), nullable=False),
    Column("limit_n", Integer, nullable=False),
    Column("spool", String(200), nullable=False),  # the staged files, relative to the spool folder
    Column("name", String(200), nullable=False),
    Column("train_examples", BigInteger),
    Column("train_augmentations", BigInteger),
    Column("status", String(20), nullable=False),  # queued | scoring | scored | rejected
    Column("reason", Text),
    Column("score_id", Integer, ForeignKey("scores.id", ondelete="SET NULL")),
    Column("claim", String(64)),  # the current claim's random id: only its holder may renew or finish it
    Column("worker", String(200)),
    Column("lease_until", Float),  # unix time; a scoring job past it is claimable again
    Column("attempts", Integer, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("finished_at", String(40)),
    UniqueConstraint("sha256", "task", "task_version", "data", "limit_n", name="uq_job"),
)
uploads = Table(
    "uploads",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("token_id", Integer, ForeignKey("tokens.id"), nullable=False),
    Column("job_id", Integer, ForeignKey("jobs.id")),  # None: rejected before a job was made
    Column("name", String(200), nullable=False),
    Column("task", String(100), nullable=False),  # name@version
    Column("reason", Text),  # the rejection at the door (archive, file checks), when there was one
    Column("upload_bytes", BigInteger, nullable=False),
    Column("created_unix", Float, nullable=False),  # for the rate limit's window
    Column("created_at", String(40), nullable=False),
)


def _migrate_1(conn: Connection) -> None:
    # Creates today's definitions of the two tables; `_migrate_2` then adds only what is missing, so a fresh
    # database and an upgraded one end with the same columns.
    metadata.create_all(conn, tables=[submissions, scores])


def _migrate_2(conn: Connection) -> None:
    """The fair-comparison columns, and the service's tables (tokens, the job queue, uploads)."""
    present = {t: {c["name"] for c in inspect(conn).get_columns(t)} for t in _V2_COLUMNS}
    for table_name, names in _V2_COLUMNS.items():
        table = metadata.tables[table_name]
        for name in names:
            if name not in present[table_name]:
                col = table.c[name]
                conn.execute(text(f"ALTER TABLE {table_name} ADD COLUMN {name} {col.type.compile(conn.dialect)}"))
    metadata.create_all(conn, tables=[tokens, jobs, uploads])
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_jobs_status ON jobs (status, id)"))
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_uploads_token ON uploads (token_id, created_unix)"))


#: schema version N is reached by running MIGRATIONS[N - 1] on a database at version N - 1
MIGRATIONS: list[Callable[[Connection], None]] = [_migrate_1, _migrate_2]
assert len(MIGRATIONS) == SCHEMA_VERSION


class DatabaseError(RuntimeError):
    """The database cannot be used (a newer schema, an unreachable server, a spec conflict)."""


def now() -> str:
    """UTC time, ISO 8601, seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def database_url(db: str | os.PathLike | None) -> str:
    """A SQLAlchemy URL from a path or URL (default: ``$LEADERBOARD_DB`` or ``./leaderboard.db``)."""
    db = str(db) if db is not None else os.environ.get(DEFAULT_DB_ENV, "leaderboard.db")
    if "://" in db:
        return db
    path = Path(db).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


class Board:
    """A connection to the leaderboard database (created and migrated on first open)."""

    def __init__(self, db: str | os.PathLike | None = None, busy_timeout_s: float = 60.0):
        self.url = database_url(db)
        sqlite = self.url.startswith("sqlite")
        self.engine = create_engine(self.url, connect_args={"timeout": busy_timeout_s} if sqlite else {})
        self.sqlite = sqlite
        if sqlite:
            ms = int(busy_timeout_s * 1000)

            @event.listens_for(self.engine, "connect")
            def _on_connect(dbapi_conn, _record):
                dbapi_conn.isolation_level = None  # autocommit at the driver: SQLAlchemy's BEGIN below is the only one
                cur = dbapi_conn.cursor()
                cur.execute(f"PRAGMA busy_timeout={ms}")
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable at checkpoints, never corrupt
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()

            @event.listens_for(self.engine, "begin")
            def _on_begin(conn):
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        try:
            self.migrate()
        except Exception as e:
            if isinstance(e, DatabaseError):
                raise
            raise DatabaseError(f"cannot open the leaderboard database {self.url}: {e}") from e

    # ---- schema ------------------------------------------------------------------------------------------
    def version(self) -> int:
        """The schema version of the database (0: empty)."""
        with self.engine.begin() as conn:
            return self._version(conn)

    @staticmethod
    def _version(conn: Connection) -> int:
        schema_version.create(conn, checkfirst=True)
        row = conn.execute(select(schema_version.c.version)).first()
        return 0 if row is None else int(row[0])

    def migrate(self) -> int:
        """Bring the schema to `SCHEMA_VERSION` in one transaction; returns the version found before."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(727274)"))  # serialise concurrent migrations
            found = self._version(conn)
            if found > SCHEMA_VERSION:
                raise DatabaseError(
                    f"{self.url} has schema version {found}, newer than this code's {SCHEMA_VERSION}; upgrade "
                    "attractor-suite to use it"
                )
            for v in range(found, SCHEMA_VERSION):
                MIGRATIONS[v](conn)
            if found == 0:
                conn.execute(insert(schema_version).values(version=SCHEMA_VERSION))
            elif found < SCHEMA_VERSION:
                conn.execute(schema_version.update().values(version=SCHEMA_VERSION))
            return found

    # ---- reads -------------------------------------------------------------------------------------------
    def find_score(self, sha256: str, task: str, task_version: int, data: str, limit_n: int) -> dict | None:
        """The score row of this submission on this task/data/limit, if it was scored before."""
        with self.engine.begin() as conn:
            return self._find_score(conn, sha256, task, task_version, data, limit_n)

    @staticmethod
    def _find_score(conn, sha256, task, task_version, data, limit_n) -> dict | None:
        q = (
            select(scores, submissions.c.name, submissions.c.sha256)
            .join(submissions, scores.c.submission_id == submissions.c.id)
            .where(
                submissions.c.sha256 == sha256,
                scores.c.task == task,
                scores.c.task_version == task_version,
                scores.c.data == data,
                scores.c.limit_n == limit_n,
            )
        )
        row = conn.execute(q).mappings().first()
        return dict(row) if row else None

    def check_fingerprint(self, task: str, task_version: int, fingerprint: str) -> None:
        """Refuse to add to a task version whose stored scores were made under a different spec."""
        with self.engine.begin() as conn:
            self._check_fingerprint(conn, task, task_version, fingerprint)

    @staticmethod
    def _check_fingerprint(conn, task, task_version, fingerprint) -> None:
        q = select(scores.c.task_fingerprint).where(
            scores.c.task == task, scores.c.task_version == task_version, scores.c.task_fingerprint != fingerprint
        )
        other = conn.execute(q.limit(1)).first()
        if other is not None:
            raise DatabaseError(
                f"{task}@{task_version} was scored under another spec (fingerprint {other[0]}, now {fingerprint}): "
                "the scoring changed without a version bump; bump the task's version in leaderboard/tasks.py"
            )

    def rows(self, task: str | None = None, include_limited: bool = True) -> list[dict]:
        """Score rows joined with their submission, best first within each task version and test data."""
        q = select(
            scores,
            submissions.c.name,
            submissions.c.model,
            submissions.c.size,
            submissions.c.parameters,
            submissions.c.sha256,
            submissions.c.kind,
            submissions.c.file_format,
            submissions.c.created_at,
            submissions.c.train_examples,
            submissions.c.train_augmentations,
        ).join(submissions, scores.c.submission_id == submissions.c.id)
        if task is not None:
            base, _, ver = task.partition("@")
            q = q.where(scores.c.task == base)
            if ver:
                q = q.where(scores.c.task_version == int(ver))
        if not include_limited:
            q = q.where(scores.c.reportable.is_(True))
        q = q.order_by(
            scores.c.task, scores.c.task_version.desc(), scores.c.data, scores.c.exact_accuracy.desc(), scores.c.id
        )
        with self.engine.begin() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def get(self, score_id: int) -> dict | None:
        """One score row with its submission's fields (``meta`` parsed)."""
        q = (
            select(
                scores,
                submissions.c.name,
                submissions.c.sha256,
                submissions.c.meta_json,
                submissions.c.model,
                submissions.c.size,
                submissions.c.parameters,
                submissions.c.kind,
                submissions.c.train_examples,
                submissions.c.train_augmentations,
            )
            .join(submissions, scores.c.submission_id == submissions.c.id)
            .where(scores.c.id == score_id)
        )
        with self.engine.begin() as conn:
            row = conn.execute(q).mappings().first()
        return dict(row) if row else None

    # ---- writes ------------------------------------------------------------------------------------------
    def add(self, submission: dict, score: dict) -> tuple[int, bool]:
        """Insert a submission (or reuse the row with its hash) and its score, in one transaction.

        Args:
            submission: ``submissions`` columns but ``id`` and ``created_at``.
            score: ``scores`` columns but ``id``, ``submission_id`` and ``scored_at``.

        Returns:
            ``(score id, created)``: ``created`` is False when this score already existed (a resubmission, possibly
            by a concurrent process); nothing is changed then.
        """
        for attempt in range(3):
            try:
                with self.engine.begin() as conn:
                    return self.add_in(conn, submission, score)
            except IntegrityError:
                # Another process inserted the same submission or score between our read and write (possible on
                # servers without SQLite's up-front write lock): read again, which finds it.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def add_in(self, conn: Connection, submission: dict, score: dict) -> tuple[int, bool]:
        """`add` inside the caller's transaction (a worker finishes its job in the same one).

        May raise ``IntegrityError`` on a concurrent duplicate; the caller then retries the whole transaction.
        """
        self._check_fingerprint(conn, score["task"], score["task_version"], score["task_fingerprint"])
        existing = self._find_score(
            conn, submission["sha256"], score["task"], score["task_version"], score["data"], score["limit_n"]
        )
        if existing is not None:
            return int(existing["id"]), False
        row = conn.execute(select(submissions.c.id).where(submissions.c.sha256 == submission["sha256"])).first()
        if row is None:
            sid = conn.execute(
                insert(submissions).values(**submission, created_at=now()).returning(submissions.c.id)
            ).scalar_one()
        else:
            sid = row[0]
        new = conn.execute(
            insert(scores).values(**score, submission_id=sid, scored_at=now()).returning(scores.c.id)
        ).scalar_one()
        return int(new), True

    def delete(self, score_id: int) -> bool:
        """Remove a score (and its submission when no other score uses it); True if it existed."""
        with self.engine.begin() as conn:
            row = conn.execute(select(scores.c.submission_id).where(scores.c.id == score_id)).first()
            if row is None:
                return False
            # Lock the submission first: otherwise (on a server) a concurrent add() of a new score for it, not yet
            # committed, is invisible to the check below, and the cascade would delete it after add() reported it.
            conn.execute(select(submissions.c.id).where(submissions.c.id == row[0]).with_for_update())
            conn.execute(scores.delete().where(scores.c.id == score_id))
            left = conn.execute(select(scores.c.id).where(scores.c.submission_id == row[0]).limit(1)).first()
            if left is None:
                conn.execute(submissions.delete().where(submissions.c.id == row[0]))
            return True

    def close(self) -> None:
        """Release the connections."""
        self.engine.dispose()


def metrics_json(metrics: dict) -> str:
    """Stable JSON of a metrics dict."""
    return json.dumps(metrics, sort_keys=True, default=str)
