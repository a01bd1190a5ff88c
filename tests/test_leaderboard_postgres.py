"""Tests of ``leaderboard.db.Board`` against a real PostgreSQL server, including concurrent writers and migrations.

Skipped unless ``LEADERBOARD_TEST_PG_URL`` names a database the tests may create schemas in, and ``psycopg`` is
installed, e.g.::

    pip install "psycopg[binary]"
    LEADERBOARD_TEST_PG_URL=postgresql+psycopg://leaderboard:leaderboard@localhost/leaderboard_test \
        python -m pytest tests/test_leaderboard_postgres.py

Each test works in a fresh schema of its own (``lb_test_<random>``, reached through ``search_path``), dropped
afterwards, so reruns start clean and nothing else in the database is touched. The concurrency tests start their
workers with the ``spawn`` context, each opening its own ``Board``, and release them together through a barrier.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import traceback
import uuid

import pytest

PG_URL = os.environ.get("LEADERBOARD_TEST_PG_URL")
if not PG_URL:
    pytest.skip("LEADERBOARD_TEST_PG_URL is not set (a postgresql+psycopg:// URL)", allow_module_level=True)
pytest.importorskip(
    "psycopg", reason="psycopg is missing or broken (pip install 'psycopg[binary]')", exc_type=ImportError
)

import multiprocessing as mp  # noqa: E402

from sqlalchemy import create_engine, func, inspect, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from leaderboard.db import SCHEMA_VERSION, Board, DatabaseError, schema_version, scores, submissions  # noqa: E402

BARRIER_TIMEOUT_S = 120  # spawned workers import torch (through `leaderboard`): seconds each under load
JOIN_TIMEOUT_S = 300
FINGERPRINTS = {"sudoku6": "0123456789abcdef", "maze-small": "fedcba9876543210"}
DATA = {"sudoku6": "generated:seed=0:n=500", "maze-small": "sha256:ab12cd34ef56ab78"}


# ---- helpers ---------------------------------------------------------------------------------------------------
def _url_in_schema(schema: str) -> str:
    """``PG_URL`` with ``search_path`` set to ``schema`` (Board creates its tables there)."""
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


def _sha(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def submission_row(label: str, name: str | None = None) -> dict:
    """A plausible ``submissions`` row; the same label gives the same row (and sha256) in every process."""
    return {
        "sha256": _sha(label),
        "name": name or f"user-{label}",
        "model": "attractor",
        "size": "7m",
        "parameters": 6_830_000,
        "file_bytes": 27_400_000,
        "file_format": "safetensors",
        "kind": "measured",
        "meta_json": json.dumps({"label": label, "steps": 20_000}, sort_keys=True),
    }


def score_row(task: str = "sudoku6", limit_n: int = 0, exact: float = 0.5, data: str | None = None, **kw) -> dict:
    """A plausible ``scores`` row for ``task`` (version 1, the task's fixed fingerprint)."""
    count = limit_n or 500
    row = {
        "task": task,
        "task_version": 1,
        "task_fingerprint": FINGERPRINTS[task],
        "data": data or DATA[task],
        "limit_n": limit_n,
        "reportable": limit_n == 0,
        "exact_accuracy": exact,
        "exact_accuracy_se": 0.02,
        "cell_accuracy": 0.9,
        "valid_path_rate": 0.95 if task.startswith("maze") else None,
        "halt_steps_mean": 3.5,
        "solver_iters_mean": 12.25,
        "examples_per_s": 812.5,
        "count": count,
        "steps": 16,
        "metrics_json": json.dumps({"eval/exact_accuracy": exact, "eval/count": count}, sort_keys=True),
        "device": "cpu (4 threads)",
        "torch_version": "2.5.1",
        "code_version": "0123456789abcdef0123456789abcdef01234567",
        "duration_s": 1.25,
    }
    row.update(kw)
    return row


def _key(sub: dict, score: dict) -> tuple:
    return (sub["sha256"], score["task"], score["task_version"], score["data"], score["limit_n"])


# ---- fixtures --------------------------------------------------------------------------------------------------
@pytest.fixture
def pg_url():
    """A URL whose ``search_path`` is a new, empty schema; the schema is dropped afterwards."""
    schema = f"lb_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as e:  # an unreachable server is a setup problem, reported as such
        admin.dispose()
        pytest.fail(f"cannot create a schema in {make_url(PG_URL)!r}: {e}")
    try:
        yield _url_in_schema(schema)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


# ---- (a) create and migrate ------------------------------------------------------------------------------------
def test_create_and_migrate_then_reopen_is_noop(pg_url):
    board = Board(pg_url)
    try:
        assert board.engine.dialect.name == "postgresql"
        assert board.version() == SCHEMA_VERSION
        schema = make_url(pg_url).query["options"].split("=", 1)[1]
        assert {"schema_version", "submissions", "scores"} <= set(inspect(board.engine).get_table_names(schema))
        sid, created = board.add(submission_row("a"), score_row())
        assert created
    finally:
        board.close()

    again = Board(pg_url)
    try:
        assert again.version() == SCHEMA_VERSION
        assert again.migrate() == SCHEMA_VERSION  # found the current version: nothing to do
        with again.engine.connect() as conn:
            assert conn.execute(select(schema_version.c.version)).scalars().all() == [SCHEMA_VERSION]
        assert [r["id"] for r in again.rows()] == [sid]  # the data survived the reopen
    finally:
        again.close()


def test_newer_schema_is_refused(pg_url):
    board = Board(pg_url)
    with board.engine.begin() as conn:
        conn.execute(schema_version.update().values(version=SCHEMA_VERSION + 1))
    board.close()
    with pytest.raises(DatabaseError, match="newer than this code"):
        Board(pg_url)


# ---- (b) round trip --------------------------------------------------------------------------------------------
def test_add_rows_get_delete_round_trip(pg_url):
    board = Board(pg_url)
    try:
        alice, bob = submission_row("alice", "alice"), submission_row("bob", "bob")
        a_sudoku, created = board.add(alice, score_row("sudoku6", exact=0.7))
        assert created
        a_limited, created = board.add(alice, score_row("sudoku6", limit_n=100, exact=0.9))
        assert created
        a_maze, created = board.add(alice, score_row("maze-small", exact=0.4))
        assert created
        b_sudoku, created = board.add(bob, score_row("sudoku6", exact=0.8))
        assert created
        assert len({a_sudoku, a_limited, a_maze, b_sudoku}) == 4

        # a resubmission (same hash, same key) changes nothing, even under another name or with other metrics
        again, created = board.add(submission_row("alice", "mallory"), score_row("sudoku6", exact=0.1))
        assert (again, created) == (a_sudoku, False)
        with board.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(submissions)).scalar_one() == 2
            assert conn.execute(select(func.count()).select_from(scores)).scalar_one() == 4

        # rows: best first within (task, version, data); filters by task, task@version and reportability
        assert [r["id"] for r in board.rows("sudoku6")] == [a_limited, b_sudoku, a_sudoku]
        assert [r["id"] for r in board.rows("sudoku6@1", include_limited=False)] == [b_sudoku, a_sudoku]
        assert board.rows("sudoku6@2") == []
        assert [r["id"] for r in board.rows("maze-small")] == [a_maze]
        assert {r["id"] for r in board.rows()} == {a_sudoku, a_limited, a_maze, b_sudoku}

        row = board.get(a_maze)
        assert row["name"] == "alice" and row["sha256"] == alice["sha256"]
        assert json.loads(row["meta_json"]) == json.loads(alice["meta_json"])
        expected = score_row("maze-small", exact=0.4)
        for col, value in expected.items():
            assert row[col] == value, col
        assert row["reportable"] is True and isinstance(row["exact_accuracy"], float)
        assert row["scored_at"] and row["submission_id"] == board.get(a_sudoku)["submission_id"]
        assert board.find_score(alice["sha256"], "maze-small", 1, DATA["maze-small"], 0)["id"] == a_maze
        assert board.get(10**9) is None

        # the same task version under another spec is refused
        with pytest.raises(DatabaseError, match="another spec"):
            board.check_fingerprint("sudoku6", 1, "ffffffffffffffff")
        with pytest.raises(DatabaseError, match="another spec"):
            board.add(submission_row("carol"), score_row("sudoku6", task_fingerprint="ffffffffffffffff"))
        board.check_fingerprint("sudoku6", 2, "ffffffffffffffff")  # a new version is free

        # delete: the submission goes with its last score
        assert board.delete(b_sudoku) and board.get(b_sudoku) is None
        assert not board.delete(b_sudoku)
        assert board.delete(a_sudoku) and board.delete(a_limited)
        with board.engine.connect() as conn:
            assert conn.execute(select(submissions.c.name)).scalars().all() == ["alice"]  # still has a_maze
        assert board.delete(a_maze)
        with board.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(submissions)).scalar_one() == 0
        assert board.rows() == []

        # after a delete the same submission can be added again, as a new row
        new_id, created = board.add(alice, score_row("maze-small", exact=0.4))
        assert created and new_id != a_maze
    finally:
        board.close()


# ---- (c) concurrent writers ------------------------------------------------------------------------------------
N_WRITERS = 6
ADDS_PER_WRITER = 15


def writer_plan(w: int) -> list[tuple[dict, dict]]:
    """The 15 (submission, score) pairs worker ``w`` adds; 8 of them use the 3 submissions shared by all workers.

    * 5 score keys are the same in every worker (they collide on purpose);
    * 3 use a shared submission but a limit of this worker's own (the submission is shared, the key is not);
    * 7 use 4 submissions of this worker's own (two tasks each, so one process reuses its own submission too).
    """
    shared = [submission_row(f"shared{i}", f"team{i}") for i in range(3)]
    colliding = [
        (shared[0], score_row("sudoku6", exact=0.61)),
        (shared[0], score_row("maze-small", exact=0.42)),
        (shared[1], score_row("sudoku6", exact=0.55)),
        (shared[1], score_row("sudoku6", limit_n=100, exact=0.57)),
        (shared[2], score_row("maze-small", exact=0.33)),
    ]
    own_limit = [(shared[i], score_row("sudoku6", limit_n=10 * (w + 1) + i, exact=0.5)) for i in range(3)]
    mine = [submission_row(f"w{w}-s{j}", f"worker{w}") for j in range(4)]
    private = [(mine[j // 2], score_row(("sudoku6", "maze-small")[j % 2], exact=0.1 * j)) for j in range(7)]
    rest = own_limit + private
    random.Random(w).shuffle(rest)
    plan = colliding[w % 5 :] + colliding[: w % 5] + rest  # the colliding keys first, in a different order each
    assert len(plan) == ADDS_PER_WRITER
    return plan


def _writer(url: str, w: int, barrier, results) -> None:
    try:
        board = Board(url)
        out = []
        barrier.wait(timeout=BARRIER_TIMEOUT_S)
        for sub, score in writer_plan(w):
            score_id, created = board.add(sub, score)
            out.append((_key(sub, score), score_id, created))
        board.close()
        results.put((w, "ok", out))
    except BaseException:  # report everything to the parent, which fails the test
        results.put((w, "error", traceback.format_exc()))


def _run_workers(target, args_of, n: int) -> dict[int, object]:
    """Start ``n`` spawned processes ``target(*args_of(i), barrier, results)``; their results by worker index."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args_of(i), barrier, results), daemon=True) for i in range(n)]
    for p in procs:
        p.start()
    got: dict[int, object] = {}
    errors = []
    try:
        for _ in range(n):
            w, status, payload = results.get(timeout=JOIN_TIMEOUT_S)
            if status == "ok":
                got[w] = payload
            else:
                errors.append(f"worker {w}:\n{payload}")
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
    assert not errors, "\n".join(errors)
    assert sorted(got) == list(range(n))
    return got


def test_concurrent_writers_dedupe(pg_url):
    Board(pg_url).close()  # migrate up front: this test is about add(), test (d) about the migration race
    got = _run_workers(_writer, lambda w: (pg_url, w), N_WRITERS)

    plans = {w: writer_plan(w) for w in range(N_WRITERS)}
    expected_keys = {_key(s, r) for plan in plans.values() for s, r in plan}
    expected_subs = {s["sha256"]: s for plan in plans.values() for s, _ in plan}
    assert len(expected_keys) == 5 + 3 * N_WRITERS + 7 * N_WRITERS
    assert len(expected_subs) == 3 + 4 * N_WRITERS

    ids_by_key: dict[tuple, set[int]] = {}
    creators: dict[tuple, int] = {}
    for w, out in got.items():
        assert [k for k, _, _ in out] == [_key(s, r) for s, r in plans[w]]
        for key, score_id, created in out:
            ids_by_key.setdefault(key, set()).add(score_id)
            creators[key] = creators.get(key, 0) + bool(created)
    # a key has one id in every process, distinct keys distinct ids, and exactly one process created each row
    assert all(len(ids) == 1 for ids in ids_by_key.values()), {k: v for k, v in ids_by_key.items() if len(v) > 1}
    id_of = {k: next(iter(v)) for k, v in ids_by_key.items()}
    assert len(set(id_of.values())) == len(id_of)
    assert all(n == 1 for n in creators.values()), {k: n for k, n in creators.items() if n != 1}

    board = Board(pg_url)
    try:
        rows = board.rows()
        stored = {_key({"sha256": r["sha256"]}, r): r["id"] for r in rows}
        assert len(rows) == len(stored) == len(expected_keys)  # each row exactly once
        assert stored == id_of
        with board.engine.connect() as conn:
            subs = conn.execute(select(submissions.c.sha256, submissions.c.name)).all()
        assert len(subs) == len(expected_subs)
        assert dict(subs) == {sha: s["name"] for sha, s in expected_subs.items()}
        for r in rows:
            assert r["name"] == expected_subs[r["sha256"]]["name"]
    finally:
        board.close()


# ---- (d) migration race ----------------------------------------------------------------------------------------
N_OPENERS = 4


def _opener(url: str, w: int, barrier, results) -> None:
    try:
        barrier.wait(timeout=BARRIER_TIMEOUT_S)
        board = Board(url)
        version = board.version()
        board.close()
        results.put((w, "ok", version))
    except BaseException:
        results.put((w, "error", traceback.format_exc()))


def test_concurrent_first_open_migrates_once(pg_url):
    got = _run_workers(_opener, lambda w: (pg_url, w), N_OPENERS)
    assert got == dict.fromkeys(range(N_OPENERS), SCHEMA_VERSION)

    board = Board(pg_url)
    try:
        with board.engine.connect() as conn:
            assert conn.execute(select(schema_version.c.version)).scalars().all() == [SCHEMA_VERSION]
        sid, created = board.add(submission_row("after-race"), score_row())
        assert created and board.get(sid)["name"] == "user-after-race"
    finally:
        board.close()


def test_delete_does_not_cascade_over_a_concurrent_add(pg_url):
    """delete() of a submission's last score while add() inserts a new one for it: the new score survives.

    add()'s INSERT is held open for 2 s (an event hook) while delete() runs; without the row lock in delete(),
    the cascade from the deleted submission removed the score that add() had just reported as created.
    """
    import threading
    import time

    from sqlalchemy import event

    a, b = Board(pg_url), Board(pg_url)
    sub = submission_row("race")
    old, _ = a.add(sub, score_row("sudoku6"))

    @event.listens_for(a.engine, "after_cursor_execute")
    def _slow(conn, cursor, statement, *args):
        if statement.startswith("INSERT INTO scores"):
            time.sleep(2)

    res = {}
    th = threading.Thread(target=lambda: res.setdefault("add", a.add(sub, score_row("maze-small"))))
    th.start()
    time.sleep(0.5)
    assert b.delete(old)
    th.join()
    new_id, created = res["add"]
    assert created and b.get(new_id) is not None
    a.close()
    b.close()


# ---- (f) the service's queue on PostgreSQL -------------------------------------------------------------------
def test_claims_skip_locked_take_each_job_once(pg_url):
    """Six workers claim 60 jobs at once (FOR UPDATE SKIP LOCKED): every job claimed exactly once, shared."""
    from service_harness import claim_race

    got = claim_race(pg_url, 60, 6)
    assert sorted(got) == list(range(1, 61)) and all(len(v) == 1 for v in got.values())
    assert len({w for v in got.values() for w in v}) > 1


def test_service_queue_scores_a_duplicate_once(pg_url, tmp_path, lb_data):
    """Two uploads of one file through the app, one worker: one job, one score, both uploads scored."""
    pytest.importorskip("fastapi", reason="the service needs pip install -e '.[serve]'")
    from fastapi.testclient import TestClient
    from service_harness import FIXTURE, pair, tar_gz

    from leaderboard import jobs
    from leaderboard.service import Settings, create_app

    settings = Settings(db=pg_url, spool=tmp_path / "spool", limit=8)
    board = Board(pg_url)
    token = jobs.add_token(board, "pg")
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(settings)) as client:
        a = client.post("/api/submissions", headers=headers, data={"task": "sudoku6"}, files=pair(FIXTURE)).json()
        b = client.post("/api/submissions", headers=headers, data={"task": "sudoku6"}, files=tar_gz(FIXTURE)).json()
        assert b["duplicate_of"] == a["id"]
        worker = jobs.QueueWorker(board=board, spool=tmp_path / "spool", store=tmp_path / "store")
        assert worker.run(idle_exit=True) == 1
        done = [client.get(f"/api/submissions/{s['id']}").json() for s in (a, b)]
    assert [d["status"] for d in done] == ["scored", "scored"] and done[0]["score_id"] == done[1]["score_id"]
    assert done[0]["score"]["split"] == "generated" and done[0]["score"]["network_evals_per_example"] > 0
    assert len(board.rows()) == 1
    board.close()


def test_migration_from_schema_1_on_postgres(pg_url):
    """A version-1 database gains the fair-comparison columns (ALTER TABLE) and the service's tables."""
    board = Board(pg_url)
    board.add(submission_row("old"), score_row())
    with board.engine.begin() as conn:
        for table in ("uploads", "jobs", "tokens"):
            conn.execute(text(f"DROP TABLE {table}"))
        for table, col in (("submissions", "train_examples"), ("submissions", "train_augmentations"),
                           ("scores", "network_evals_per_example"), ("scores", "split")):  # fmt: skip
            conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {col}"))
        conn.execute(schema_version.update().values(version=1))
    board.close()
    again = Board(pg_url)
    try:
        assert again.version() == SCHEMA_VERSION == 2
        (row,) = again.rows()
        assert row["name"] == "user-old" and row["split"] is None and row["train_examples"] is None
        schema = make_url(pg_url).query["options"].split("=", 1)[1]
        assert {"tokens", "jobs", "uploads"} <= set(inspect(again.engine).get_table_names(schema))
    finally:
        again.close()


@pytest.mark.slow
def test_service_with_two_worker_processes_on_postgres(pg_url, tmp_path, lb_data):
    """A real server and two worker processes sharing PostgreSQL: 3 files uploaded twice each, scored once."""
    pytest.importorskip("uvicorn", reason="the service needs pip install -e '.[serve]'")
    import httpx
    from service_harness import Service, board_rows, corpus, jobs_rows, run_load

    items = corpus(tmp_path / "corpus", n_valid=3, n_duplicates=3, n_hostile=0)
    with Service(tmp_path / "svc", workers=0, db=pg_url) as svc:
        for _ in range(2):
            svc.start_worker()
        report = run_load(svc.url, svc.token("pg"), items, clients=6, timeout=300)
        assert httpx.get(svc.url + "/healthz").status_code == 200
    assert report["lost"] == 0 and report["doubled"] == 0
    assert {f["status"] for _, f in report["final"].values()} == {"scored"}
    assert len(board_rows(pg_url)) == 3
    done = jobs_rows(pg_url)
    assert len(done) == 3 and all(j["status"] == "scored" and j["attempts"] == 1 for j in done)
