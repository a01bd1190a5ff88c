"""End-to-end, load and fault tests of the leaderboard service: real processes on localhost (slow tier).

A real ``python -m leaderboard serve`` (uvicorn) and ``python -m leaderboard worker`` processes on a SQLite board,
driven over HTTP from this process (`service_harness`); Debian's Chromium through selenium, as the page test
does. Bounded: each test has its own time limits, every loop a count, all traffic goes to 127.0.0.1.

* the browser: the board page, open in Chromium, shows a submission made with ``remote-submit`` once it is
  scored (the page reloads itself); the screenshot is kept under ``tmp/artifacts/`` (or
  ``$LEADERBOARD_ARTIFACTS``) and its path printed;
* load: 12 concurrent clients send 50 uploads (10 distinct valid checkpoints, 20 duplicates, 20 hostile) to a
  server with two workers: every valid file scored exactly once, every hostile one rejected, nothing lost or
  doubled, uploads accepted at >= 20/s;
* faults: a worker killed mid-score (its job completes on the other worker, its sandbox child dies with it);
  the server killed mid-upload and restarted, and a client that goes away mid-upload (no partial file is
  ever queued or scored).

    python -m pytest -m slow tests/test_leaderboard_service_e2e.py -s      # -s shows the screenshot's path
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the service needs pip install -e '.[serve]'")
pytest.importorskip("uvicorn", reason="the service needs pip install -e '.[serve]'")

import httpx
from service_harness import (
    FIXTURE,
    ROOT,
    Service,
    board_rows,
    corpus,
    jobs_rows,
    pair,
    run_load,
    summary,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux", reason="the scorer's process limits are Linux's"),
]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def wait_until(predicate, timeout: float, what: str, every: float = 0.2):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        got = predicate()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def status(svc: Service, sid: int) -> dict:
    return httpx.get(f"{svc.url}/api/submissions/{sid}", timeout=30).json()


def artifacts_dir() -> Path:
    return Path(os.environ.get("LEADERBOARD_ARTIFACTS", ROOT / "tmp" / "artifacts"))


# ---- the browser -----------------------------------------------------------------------------------------------
def test_board_page_shows_a_submission_when_scored(tmp_path, lb_data, monkeypatch, capsys):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(f"the browser test needs {CHROMIUM} and {CHROMEDRIVER}")
    selenium = pytest.importorskip("selenium", reason="the browser test needs selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService
    from selenium.webdriver.common.by import By

    del selenium
    monkeypatch.setenv("SE_AVOID_STATS", "true")
    with Service(tmp_path / "svc", workers=0) as svc:
        for _ in range(2):
            svc.start_worker()
        token = svc.token("alice")
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'chrome-profile'}", "--window-size=1500,1000"):  # fmt: skip
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(options=options, service=DriverService(executable_path=str(CHROMEDRIVER)))
        try:
            driver.set_page_load_timeout(30)
            driver.get(svc.url + "/")
            assert driver.find_elements(By.CSS_SELECTOR, "tr.measured") == []  # only the papers' numbers yet
            drawn = driver.find_element(By.TAG_NAME, "body").get_attribute("data-state")
            # the README's submit command, as a submitter runs it (waits for the score)
            out = subprocess.run(
                [sys.executable, "-m", "leaderboard", "remote-submit", str(FIXTURE), "--url", svc.url, "--task",
                 "sudoku6", "--name", "browser-e2e", "--train-examples", "1000", "--train-augmentations", "1000"],
                env={**svc.env, "LEADERBOARD_TOKEN": token}, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            assert out.returncode == 0, out.stderr + svc.server_log()[-3000:]
            assert re.search(r"scored #1 sudoku6@1 .*exact \d+\.\d%, \d+ network evaluations per example", out.stdout)

            def row_shown():
                rows = driver.find_elements(By.CSS_SELECTOR, 'table.board[data-task="sudoku6"] tbody tr.measured')
                return rows[0] if rows else None

            row = wait_until(row_shown, 60, "the page to reload with the score")  # no driver.refresh(): it reloads
            assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-state") != drawn
            assert "browser-e2e" in row.text
            table = driver.find_element(By.CSS_SELECTOR, 'table.board[data-task="sudoku6"]')
            headers = [h.text for h in table.find_elements(By.CSS_SELECTOR, "thead th")]
            assert any(h.startswith("Net evals/ex") for h in headers) and any(h.startswith("Split") for h in headers)
            assert any(h.startswith("Train N (declared)") for h in headers)
            paper = driver.find_element(By.CSS_SELECTOR, 'table.board[data-task="sudoku-extreme"]')
            reported = paper.find_elements(By.CSS_SELECTOR, "tbody tr.reported")
            assert len(reported) == 4 and all("reported" in r.text for r in reported)  # the papers', marked
            img = driver.find_element(By.CSS_SELECTOR, 'section[data-task="sudoku6"] img.plot')
            assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 0
            errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            assert errors == [], errors  # no CSP violation, no failed poll, no script error
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(1500, min(int(height) + 120, 4000))
            shot = artifacts_dir() / "leaderboard_service_e2e.png"
            shot.parent.mkdir(parents=True, exist_ok=True)
            assert driver.save_screenshot(str(shot))
        finally:
            driver.quit()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    with capsys.disabled():  # shown without -s too
        print(f"\nscreenshot of the live board: {shot}")


# ---- load ------------------------------------------------------------------------------------------------------
def test_load_concurrent_clients_nothing_lost_or_doubled(tmp_path, lb_data):
    items = corpus(tmp_path / "corpus", n_valid=10, n_duplicates=20, n_hostile=20)
    assert len(items) == 50
    with Service(tmp_path / "svc", workers=0) as svc:
        svc.start_worker()  # one claims while the uploads come in; the second joins once they are in
        token = svc.token("load")
        report = run_load(svc.url, token, items, clients=12, timeout=420, after_uploads=svc.start_worker,
                          server_pid=svc.server.pid)  # fmt: skip
        log = svc.server_log()
    print("\n", summary(report))
    assert report["lost"] == 0 and report["doubled"] == 0, summary(report)
    scored: dict[str, set] = {}
    for item, final in report["final"].values():
        if item.kind == "hostile":
            assert final["status"] == "rejected", (item.label, final)
            assert re.search(item.expect, final["reason"]), (item.label, final["reason"])
        else:
            assert final["status"] == "scored", (item.label, final)
            scored.setdefault(item.label, set()).add(final["score_id"])
    assert len(scored) == 10 and all(len(v) == 1 for v in scored.values())
    rows = board_rows(svc.db)
    assert len(rows) == 10 and len({r["sha256"] for r in rows}) == 10  # every valid file scored exactly once
    jobs = jobs_rows(svc.db)
    assert all(j["attempts"] == 1 for j in jobs)  # no job was claimed twice
    assert len([j for j in jobs if j["status"] == "scored"]) == 10
    # The server's CPU per ~1 MB upload is ~16-21 ms on a quiet 2-core machine (benchmarks/leaderboard_service.py
    # records it with the wall-clock rate). CPU time still grows on a loaded or slower machine (a CI run measured
    # 54 ms with the worker scoring on the sibling core), so this is not a speed test: the bound only catches an
    # order-of-magnitude regression, such as importing torch or re-reading the whole file per upload.
    assert report["server_cpu_ms_per_upload"] <= 250, summary(report)
    assert "Traceback" not in log and " 500 " not in log


# ---- faults ----------------------------------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_worker_killed_mid_score_completes_on_another(tmp_path, lb_data):
    with Service(tmp_path / "svc", workers=0, lease_seconds=4, limit=64) as svc:
        a = svc.start_worker()
        token = svc.token("faults")
        with httpx.Client() as c:
            r = c.post(svc.url + "/api/submissions", headers={"Authorization": f"Bearer {token}"},
                       data={"task": "sudoku6", "name": "survivor"}, files=pair(FIXTURE), timeout=60)  # fmt: skip
        sid = r.json()["id"]
        wait_until(lambda: status(svc, sid)["status"] == "scoring", 60, "worker a to claim the job")
        sandbox = wait_until(lambda: _children(a.pid), 30, "worker a's sandbox child")
        b = svc.start_worker()  # the survivor, started only now so that a holds the job
        time.sleep(1.0)  # a is scoring in its sandbox
        a.send_signal(signal.SIGKILL)
        a.wait(timeout=10)
        wait_until(lambda: not any(_alive(p) for p in sandbox), 10, "a's sandbox child to die with it")
        final = wait_until(lambda: (s := status(svc, sid))["status"] in ("scored", "rejected") and s, 180,
                           "the job to be scored by worker b")  # fmt: skip
        assert final["status"] == "scored" and final["attempts"] == 2, final
        (job,) = jobs_rows(svc.db)
        assert job["worker"].endswith(f":{b.pid}")
    rows = board_rows(svc.db)
    assert len(rows) == 1 and rows[0]["name"] == "survivor" and rows[0]["count"] == 64


def _raw_upload(svc: Service, token: str, body: bytes, ctype: str, send: int) -> socket.socket:
    """An HTTP POST that sends its headers and the first ``send`` bytes of ``body``, then stalls."""
    s = socket.create_connection(("127.0.0.1", svc.port), timeout=30)
    head = (f"POST /api/submissions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
    s.sendall(head + body[:send])
    return s


def test_server_restart_or_client_gone_mid_upload_never_scores_a_partial_file(tmp_path, lb_data):
    import io

    from leaderboard.remote import multipart_body

    ck = tmp_path / "ck"
    shutil.copytree(FIXTURE, ck)
    buf = io.BytesIO()
    ctype, _ = multipart_body({"task": "sudoku6", "name": "half"}, {"weights": ck / "model.safetensors",
                              "meta": ck / "meta.json"}, buf)  # fmt: skip
    body = buf.getvalue()
    half = len(body) // 2
    with Service(tmp_path / "svc", workers=0) as svc:
        token = svc.token("faults")
        incoming = tmp_path / "svc" / "board.db.spool" / ".incoming"

        def partial_on_disk():
            return [p for p in incoming.glob("*/part-weights") if p.stat().st_size > 0]

        # 1. the server is killed while the upload streams in
        s = _raw_upload(svc, token, body, ctype, half)
        (part,) = wait_until(partial_on_disk, 30, "the partial upload to reach the disk")
        svc.kill_server()
        s.close()
        assert part.stat().st_size < len(body)
        svc.start()  # restarted on the same board and port
        assert jobs_rows(svc.db) == [] and httpx.get(svc.url + "/api/submissions/1").status_code == 404
        w = svc.start_worker()
        # 2. a client that goes away mid-upload: the server stays up and records nothing
        s = _raw_upload(svc, token, body, ctype, half)
        wait_until(lambda: len(partial_on_disk()) == 2, 30, "the second partial upload")
        s.close()
        wait_until(lambda: len(partial_on_disk()) == 1, 30, "the abandoned upload to be removed")
        # 3. the complete upload is accepted and scored; nothing else ever was
        with httpx.Client() as c:
            r = c.post(svc.url + "/api/submissions", headers={"Authorization": f"Bearer {token}",
                       "Content-Type": ctype}, content=body, timeout=60)  # fmt: skip
        assert r.status_code == 202 and r.json()["id"] == 1, r.text
        final = wait_until(lambda: (x := status(svc, 1))["status"] in ("scored", "rejected") and x, 180, "the score")
        assert final["status"] == "scored", final
        assert len(jobs_rows(svc.db)) == 1 and len(board_rows(svc.db)) == 1
        # the killed server's partial upload is never referenced; a restart removes it once it is stale
        old = time.time() - 2 * 3600
        os.utime(part.parent, (old, old))
        svc.stop()
        assert w.poll() is not None
        svc.server = None
        svc.workers = []
        svc.start()
        assert not part.parent.exists()
        assert [s["status"] for s in [status(svc, 1)]] == ["scored"]
    log = svc.server_log()
    assert "Traceback" not in log, log[-3000:]
