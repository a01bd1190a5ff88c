"""Tests of the leaderboard service through an HTTP client against the app (default tier, ~30 s).

The app is built by `create_app` per test and driven through Starlette's test client (real ASGI requests, real
database, real scoring worker in the sandbox for one submission); the claims of the job queue are raced from
threads; every endpoint is fuzzed from the OpenAPI schema (schemathesis) with a bounded number of examples:
no 5xx, every 4xx a one-line ``detail``. The real-server, multi-process, browser and load tests are
``tests/test_leaderboard_service_e2e.py`` (slow tier).

    python -m pytest tests/test_leaderboard_service.py
"""

from __future__ import annotations

import io
import json
import sqlite3
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the service needs pip install -e '.[serve]'")

from fastapi.testclient import TestClient
from hostile_submissions import CASES, Context
from service_harness import FIXTURE, claim_race, fake_jobs, pair, tar_gz
from sqlalchemy import select, update

from leaderboard import cli, jobs
from leaderboard.db import SCHEMA_VERSION, Board
from leaderboard.db import jobs as jobs_table
from leaderboard.export import render_html
from leaderboard.service import Settings, create_app
from leaderboard.upload import UploadLimits


@pytest.fixture
def service(tmp_path, lb_data):
    """A fresh app on a fresh SQLite board (scores the first 8 examples), its client, and a token."""
    settings = Settings(db=str(tmp_path / "board.db"), limit=8)
    board = Board(settings.db)
    token = jobs.add_token(board, "alice")
    with TestClient(create_app(settings)) as client:
        yield client, board, token, settings
    board.close()


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def post(client, token, files, **fields):
    return client.post("/api/submissions", headers=auth(token), data={"task": "sudoku6", **fields}, files=files)


def n_jobs(board: Board) -> int:
    with board.engine.connect() as c:
        return len(c.execute(select(jobs_table.c.id)).all())


# ---- submit, score once, read back -------------------------------------------------------------------------
def test_submit_queue_score_and_read_back(service):
    client, board, token, _settings = service
    before = client.get("/api/board/state").json()["state"]
    r = post(client, token, pair(FIXTURE), name="qs", train_examples="1000", train_augmentations="1000")
    assert r.status_code == 202, r.text
    first = r.json()
    assert first["status"] == "queued" and first["submitter"] == "alice" and first["name"] == "qs"
    again = post(client, token, tar_gz(FIXTURE), name="the same file again").json()  # an archive this time
    assert again["status"] == "queued" and again["duplicate_of"] == first["id"]
    assert n_jobs(board) == 1  # the same file on the same task: one job

    worker = jobs.QueueWorker(board=board, spool=jobs.spool_dir(board))
    assert worker.run(idle_exit=True) == 1
    done = client.get(f"/api/submissions/{first['id']}").json()
    assert done["status"] == "scored" and done["attempts"] == 1, done
    s = done["score"]
    assert s["name"] == "qs" and s["count"] == 8 and not s["reportable"] and s["split"] == "generated"
    assert s["parameters"] == 263_362 and (s["train_examples"], s["train_augmentations"]) == (1000, 1000)
    # test-time compute of the paper's Attractor: steps x (2 network calls per solver iteration)
    assert s["network_evals_per_example"] == pytest.approx(s["steps"] * 2 * s["solver_iters_mean"])
    assert client.get(f"/api/submissions/{again['id']}").json()["score_id"] == s["id"]
    assert not list((jobs.spool_dir(board) / "jobs").iterdir())  # the spool copy is gone, the store keeps one

    res = client.get("/api/results", params={"task": "sudoku6"}).json()
    rows = res["groups"][0]["rows"]
    assert [r["name"] for r in rows if r["kind"] == "measured"] == ["qs"]
    assert {r["split"] for r in rows if r["kind"] == "reported"} <= {"real"}
    assert client.get("/api/board/state").json()["state"] != before
    page = client.get("/")
    assert page.status_code == 200 and "qs" in page.text and 'data-live="/api/board/state"' in page.text
    assert "connect-src 'self'" in page.text
    assert client.get("/api/results", params={"task": "nope"}).status_code == 404


def test_hostile_files_rejected_at_the_door_or_in_the_worker(service, tmp_path):
    client, board, token, _ = service
    ctx = Context.make(tmp_path / "ctx")
    door = post(client, token, pair(CASES["unknown model"].make(tmp_path / "u", ctx))).json()
    assert door["status"] == "rejected" and "unknown model 'gpt-17'" in door["reason"]
    assert str(tmp_path) not in door["reason"] and "\n" not in door["reason"]
    nan = post(client, token, pair(CASES["NaN weight"].make(tmp_path / "n", ctx))).json()
    assert nan["status"] == "queued"  # finite values need the tensors: the sandbox checks them
    jobs.QueueWorker(board=board, spool=jobs.spool_dir(board)).run(idle_exit=True)
    nan = client.get(f"/api/submissions/{nan['id']}").json()
    assert nan["status"] == "rejected" and "non-finite" in nan["reason"] and "/tmp" not in nan["reason"]
    assert board.rows() == []


def _tar(members) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _member(name, data=b"x", kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, (data if kind == tarfile.REGTYPE else None)


def _zip(entries) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for info, data in entries:
            z.writestr(info, data)
    return buf.getvalue()


def _zip_link(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (0o120777) << 16
    return info


def _gzip_bomb() -> bytes:
    import gzip

    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9) as g:
        chunk = bytes(1 << 20)
        for _ in range(40):  # 40 MiB of zeros in ~40 KB; this test's limit is 8 MiB
            g.write(chunk)
    return buf.getvalue()


UNSAFE_ARCHIVES = {
    "symbolic link": (_tar([_member("model.safetensors", kind=tarfile.SYMTYPE, link="/etc/passwd")]), "links"),
    "hard link": (_tar([_member("meta.json"), _member("model.safetensors", kind=tarfile.LNKTYPE, link="meta.json")]),
                  "links"),
    "absolute path": (_tar([_member("/etc/cron.d/evil")]), "absolute paths"),
    "parent traversal": (_tar([_member("run/../../evil")]), r"'\.\.'"),
    "device": (_tar([_member("dev", kind=tarfile.CHRTYPE)]), "only regular files and folders"),
    "fifo": (_tar([_member("fifo", kind=tarfile.FIFOTYPE)]), "only regular files and folders"),
    "too many members": (_tar([_member(f"f{i}") for i in range(70)]), "more than 64 members"),
    "too deep": (_tar([_member("/".join(["d"] * 12) + "/f")]), "nested deeper"),
    "backslash": (_tar([_member("..\\..\\evil")]), "backslashes"),
    "zip symlink": (_zip([(_zip_link("model.safetensors"), "/etc/passwd")]), "links"),
    "zip traversal": (_zip([(zipfile.ZipInfo("../evil"), "x")]), r"'\.\.'"),
    "zip of 70 members": (_zip([(zipfile.ZipInfo(f"f{i}"), "") for i in range(70)]), "more than 64 members"),
    "gzip bomb": (_gzip_bomb(), "unpacks to more than"),
    "not an archive": (b"just some bytes, not an archive at all", "not a .tar, .tar.gz or .zip"),
    "truncated tar.gz": (tar_gz(FIXTURE)["archive"][1][:5000], "not a readable archive|truncated|unpacks"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(UNSAFE_ARCHIVES))
def test_unsafe_archives_rejected(tmp_path, lb_data, case):
    data, reason = UNSAFE_ARCHIVES[case]
    settings = Settings(db=str(tmp_path / "board.db"), upload=UploadLimits(max_unpacked_bytes=8 << 20))
    board = Board(settings.db)
    token = jobs.add_token(board, "mallory")
    with TestClient(create_app(settings)) as client:
        r = post(client, token, {"archive": ("a.tar", data)})
        assert r.status_code == 202, r.text
        body = r.json()
    assert body["status"] == "rejected", body
    import re

    assert re.search(reason, body["reason"]), body["reason"]
    assert n_jobs(board) == 0
    assert not (tmp_path / "escaped").exists() and not (tmp_path.parent / "evil").exists()
    assert not any((tmp_path / "board.db.spool" / ".incoming").iterdir())  # nothing left behind


def test_bad_requests_are_4xx_with_one_line(service):
    client, board, token, _ = service
    files = pair(FIXTURE)
    cases = [
        (client.post("/api/submissions", data={"task": "sudoku6"}, files=files), 401, "missing API token"),
        (client.post("/api/submissions", headers=auth("lb_nope"), data={"task": "sudoku6"}, files=files), 401,
         "unknown or revoked"),
        (client.post("/api/submissions", headers=auth(token), content=b"{}",
                     params=None), 415, "multipart/form-data"),
        (post(client, token, files, task="nope"), 422, "unknown task 'nope'"),
        (post(client, token, files, colour="red"), 422, "unknown form field 'colour'"),
        (post(client, token, {**files, **tar_gz(FIXTURE)}), 422, "either an archive or"),
        (client.post("/api/submissions", headers={**auth(token), "Content-Type": "multipart/form-data; boundary=b"},
                     content=b'--b\r\nContent-Disposition: form-data; name="task"\r\n\r\nsudoku6\r\n--b--\r\n'),
         422, "no file"),
        (post(client, token, files, train_examples="-3"), 422, "train_examples"),
        (post(client, token, files, train_examples="1e99"), 422, "train_examples"),
        (post(client, token, files, name="tab\there"), 422, "printable"),
        (post(client, token, files, task="x" * 5000), 413, "exceeds 1,024 bytes"),
        (client.get("/api/submissions/0"), 422, "submission_id"),
        (client.get("/api/submissions/99"), 404, "no submission 99"),
    ]  # fmt: skip
    for r, code, text in cases:
        assert r.status_code == code, (r.status_code, r.text)
        detail = r.json()["detail"]
        assert isinstance(detail, str) and "\n" not in detail and text in detail, detail
    assert n_jobs(board) == 0


def test_body_limit_enforced_while_reading(tmp_path, lb_data):
    import asyncio

    from leaderboard.upload import UploadError, receive_form

    limits = UploadLimits(max_body_bytes=200_000)
    boundary = "xyz"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="task"\r\n\r\nsudoku6\r\n--{boundary}\r\n'
            'Content-Disposition: form-data; name="weights"; filename="w"\r\n\r\n').encode()  # fmt: skip
    sent = []

    async def endless():  # no Content-Length: the limit must stop the stream, not a declared size
        yield head
        for _ in range(1000):
            sent.append(1)
            yield bytes(64 << 10)

    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    (tmp_path / "in").mkdir()
    with pytest.raises(UploadError, match="exceeds the limit of 200,000") as e:
        asyncio.run(receive_form(headers, endless(), tmp_path / "in", limits))
    assert e.value.status == 413 and len(sent) == 4  # stopped at the limit, not after reading 64 MB
    assert (tmp_path / "in" / "part-weights").stat().st_size <= 200_000

    settings = Settings(db=str(tmp_path / "board.db"), upload=limits)
    board = Board(settings.db)
    token = jobs.add_token(board, "bob")
    with TestClient(create_app(settings)) as client:
        h = {**auth(token), "Content-Type": headers["content-type"]}
        big = client.post("/api/submissions", headers={**h, "Content-Length": "999999999"}, content=head)
        assert big.status_code == 413 and "999,999,999 bytes" in big.json()["detail"]
        r = client.post("/api/submissions", headers=h, content=head + bytes(300_000))
        assert r.status_code == 413 and "300,134 bytes, over the limit of 200,000" in r.json()["detail"]
        cut = client.post("/api/submissions", headers=h, content=head + b"half a file")  # no closing boundary
        assert cut.status_code == 400 and "incomplete" in cut.json()["detail"]
    assert n_jobs(board) == 0 and not any((tmp_path / "board.db.spool" / ".incoming").iterdir())


# ---- tokens: hashed, rate limit, quota; reads public -------------------------------------------------------
def test_tokens_are_hashed_rate_limited_and_have_a_quota(tmp_path, lb_data, capsys):
    db = str(tmp_path / "board.db")
    assert cli.main(["--db", db, "token", "add", "carol", "--rate", "2", "--quota", "3"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("lb_") and len(token) > 40
    con = sqlite3.connect(db)
    assert con.execute("SELECT token_sha256 FROM tokens").fetchone()[0] == jobs.hash_token(token)
    assert token not in Path(db).read_bytes().decode("latin-1")  # only the hash is stored
    assert cli.main(["--db", db, "token", "add", "carol"]) == 2
    assert "exists" in capsys.readouterr().err
    settings = Settings(db=db, limit=8)
    bad = pair(CASES["unknown model"].make(tmp_path / "u", Context.make(tmp_path / "ctx")))  # cheap: no job
    with TestClient(create_app(settings)) as client:
        assert [post(client, token, bad).status_code for _ in range(2)] == [202, 202]
        r = post(client, token, bad)
        assert r.status_code == 429 and "2 submissions a minute" in r.json()["detail"]
        assert r.headers["Retry-After"] == "60"
        with Board(db).engine.begin() as c:  # the window moves on: a minute later
            c.exec_driver_sql("UPDATE uploads SET created_unix = created_unix - 61")
        assert post(client, token, bad).status_code == 202
        with Board(db).engine.begin() as c:
            c.exec_driver_sql("UPDATE uploads SET created_unix = created_unix - 61")
        r = post(client, token, bad)
        assert r.status_code == 403 and "quota of 3" in r.json()["detail"]
        assert client.get("/api/results").status_code == 200 and client.get("/").status_code == 200  # public
        assert cli.main(["--db", db, "token", "list"]) == 0
        assert "used      3 of 3" in capsys.readouterr().out
        assert cli.main(["--db", db, "token", "revoke", "carol"]) == 0
        r = post(client, token, bad)
        assert r.status_code == 401 and "revoked" in r.json()["detail"]


# ---- the queue: atomic claims, leases, exactly once ----------------------------------------------------------
def test_claims_are_atomic_on_sqlite(tmp_path):
    got = claim_race(str(tmp_path / "board.db"), 60, 6)
    assert sorted(got) == list(range(1, 61)) and all(len(v) == 1 for v in got.values())
    assert len({w for v in got.values() for w in v}) > 1  # the work was shared


def test_lease_timeout_requeues_and_only_the_holder_finishes(tmp_path):
    board = Board(tmp_path / "board.db")
    fake_jobs(board, 1)
    a = jobs.claim(board, "a", lease_seconds=60)
    assert jobs.claim(board, "b", lease_seconds=60) is None  # held
    assert jobs.renew(board, a["id"], a["claim"], 60)
    with board.engine.begin() as c:  # a's worker died: its lease runs out
        c.execute(update(jobs_table).values(lease_until=time.time() - 1))
    b = jobs.claim(board, "b", lease_seconds=60)
    assert b["id"] == a["id"] and b["attempts"] == 2 and b["claim"] != a["claim"]
    assert not jobs.renew(board, a["id"], a["claim"], 60)  # the old claim is dead
    assert not jobs.finish_rejected(board, a, "late")  # and cannot finish it
    assert jobs.finish_rejected(board, b, "done by b")
    assert jobs.upload_status is not None
    with board.engine.connect() as c:
        row = c.execute(select(jobs_table)).mappings().one()
    assert (row["status"], row["reason"], row["worker"]) == ("rejected", "done by b", "b")
    # a job whose workers keep dying is rejected after MAX_ATTEMPTS claims instead of looping forever
    with board.engine.begin() as c:
        c.execute(update(jobs_table).values(status="scoring", lease_until=time.time() - 1, attempts=jobs.MAX_ATTEMPTS))
    assert jobs.claim(board, "c") is None
    with board.engine.connect() as c:
        row = c.execute(select(jobs_table)).mappings().one()
    assert row["status"] == "rejected" and "interrupted 3 times" in row["reason"]


def test_migration_from_schema_1_keeps_the_rows(tmp_path):
    db = tmp_path / "old.db"
    Board(db).add(
        dict(sha256="a" * 64, name="old", model="trm", size="tiny", parameters=1, file_bytes=1,
             file_format="safetensors", kind="measured", meta_json="{}"),
        dict(task="sudoku6", task_version=1, task_fingerprint="f", data="generated:seed=0:n=500", limit_n=0,
             reportable=True, exact_accuracy=0.5, count=1, steps=1, metrics_json="{}", device="cpu"),
    )  # fmt: skip
    con = sqlite3.connect(db)  # back to what schema version 1 wrote
    for table in ("uploads", "jobs", "tokens"):
        con.execute(f"DROP TABLE {table}")
    for col in ("train_examples", "train_augmentations"):
        con.execute(f"ALTER TABLE submissions DROP COLUMN {col}")
    for col in ("network_evals_per_example", "split"):
        con.execute(f"ALTER TABLE scores DROP COLUMN {col}")
    con.execute("UPDATE schema_version SET version = 1")
    con.commit()
    con.close()
    b = Board(db)
    assert b.version() == SCHEMA_VERSION == 2
    (row,) = b.rows()
    assert row["name"] == "old" and row["split"] is None and row["train_examples"] is None
    assert cli.collect_rows(b, "sudoku6")[0]["split"] == "generated"  # derived for old rows
    jobs.add_token(b, "new")  # the service's tables exist


# ---- the schema and fuzzing -------------------------------------------------------------------------------
def test_openapi_schema_is_the_contract(service):
    client = service[0]
    schema = client.get("/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    assert set(paths) >= {"/api/submissions", "/api/submissions/{submission_id}", "/api/results",
                          "/api/board/state", "/api/tasks", "/", "/healthz"}  # fmt: skip
    post_op = paths["/api/submissions"]["post"]
    form = post_op["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["task"] and {"archive", "weights", "meta", "train_examples"} <= set(form["properties"])
    assert post_op["security"] == [{"HTTPBearer": []}]
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert post_op["responses"]["202"]["content"]["application/json"]["schema"]["$ref"].endswith("SubmissionStatus")
    for code in ("401", "413", "422", "429"):
        assert post_op["responses"][code]["content"]["application/json"]["schema"]["$ref"].endswith("Problem")
    row = schema["components"]["schemas"]["ScoreRow"]["properties"]
    assert {"network_evals_per_example", "train_examples", "train_augmentations", "split", "parameters"} <= set(row)
    status = schema["components"]["schemas"]["SubmissionStatus"]["properties"]["status"]
    assert status["enum"] == ["queued", "scoring", "scored", "rejected"]
    tasks = client.get("/api/tasks").json()
    assert {"sudoku6@1", "sudoku-extreme@1", "maze-hard@1"} <= {t["key"] for t in tasks}


def test_fuzz_every_endpoint_from_the_schema(service):
    """Schema-driven requests (valid and invalid) to every operation: never a 5xx, a 4xx is one line."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    client, board, token, _ = service
    app = client.app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    seen: dict[tuple[str, int], int] = {}

    def one_line_4xx(response):
        if 400 <= response.status_code < 500:
            detail = json.loads(response.content)["detail"]
            assert isinstance(detail, str) and detail and "\n" not in detail, detail

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    for op in schema.get_all_operations():
        operation = op.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=25, deadline=None, derandomize=True,
                      suppress_health_check=list(HealthCheck), database=None)  # fmt: skip
            def fuzz(case):
                response = case.call_and_validate(headers=auth(token), checks=checks)
                key = (f"{case.method} {case.path}", response.status_code)
                seen[key] = seen.get(key, 0) + 1
                one_line_4xx(response)
                assert response.status_code < 500, response.text

            try:
                fuzz()
            except Unsatisfiable:  # an operation without parameters has no invalid request to generate
                assert mode is GenerationMode.NEGATIVE
    codes = {code for (_, code) in seen}
    assert sum(seen.values()) >= 100 and {200, 202, 404, 422} <= codes, sorted(seen.items())
    # everything the fuzzer sent was either rejected at the door or is a job waiting: nothing half-recorded
    with board.engine.connect() as c:
        assert c.exec_driver_sql("SELECT count(*) FROM uploads WHERE job_id IS NULL AND reason IS NULL").scalar() == 0


def test_live_page_csp_allows_only_its_own_scripts_and_same_origin_polls():
    page = render_html([], live=("/api/board/state", "3-7", 2.5))
    assert page.count("<script>") == 2 and 'data-state="3-7"' in page and 'data-refresh-ms="2500"' in page
    csp = page.split('http-equiv="Content-Security-Policy" content="')[1].split('"')[0]
    assert "connect-src 'self'" in csp and csp.count("'sha256-") == 3  # style + two scripts
    assert "connect-src" not in render_html([])  # a static export stays network-free


def test_cli_service_commands_fail_in_one_line(tmp_path, capsys):
    db = str(tmp_path / "b.db")
    for argv, text in [
        (["--db", db, "serve", "--data", "sudoku6"], "expected TASK=DIR"),
        (["--db", db, "serve", "--data", f"sudoku6={tmp_path}"], "no test/dataset.json"),
        (["--db", db, "worker", "--limit", "0"], "--limit must be at least 1"),
        (["--db", db, "token", "revoke", "nobody"], "no live token named 'nobody'"),
        (["remote-submit", str(FIXTURE), "--task", "sudoku6"], "pass --token"),
        (
            ["remote-submit", str(FIXTURE), "--task", "sudoku6", "--token", "lb_x", "--url", "http://127.0.0.1:9"],
            "cannot reach the service",
        ),
    ]:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and text in err and "Traceback" not in err, err
