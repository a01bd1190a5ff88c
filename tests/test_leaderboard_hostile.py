"""Hostile leaderboard submissions are refused within stated bounds; the scoring worker's limits hold.

Every case of the corpus is rejected (or, if harmless, accepted) within a time and memory bound, without running
code, reading a file outside the submission, echoing a file, or writing a row; and the scoring worker's limits
stop submissions that would otherwise hang or exhaust memory.

The corpus is `hostile_submissions.CASES` (generated here, no binaries in the repository). Bounds stated and
checked per case: a rejection takes under 30 s (they take milliseconds; a worker start is a few seconds) and
raises this process's peak resident set by under 1 GiB.

    python -m pytest tests/test_leaderboard_hostile.py
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest
import torch
from hostile_submissions import CASES, FIXTURE, SECRET, fixture_copy, run_case, torch_zip_bomb

from leaderboard.db import Board
from leaderboard.scoring import submit
from leaderboard.validate import Limits, SubmissionError, open_submission
from leaderboard.worker import WorkerLimits

REJECT_SECONDS = 30.0
REJECT_PEAK_BYTES = 1 << 30

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the scorer's file and process limits are Linux's")


def _rows(board: Board) -> tuple[int, int]:
    with board.engine.connect() as c:
        return tuple(c.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar_one() for t in ("submissions", "scores"))


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_submission(name, tmp_path, lb_data):
    board = Board(tmp_path / "board.db")
    r = run_case(name, tmp_path, board)
    assert not r["ran_code"], "a submission ran code"
    assert r["read_outside"] == [], f"read files outside the submission: {r['read_outside']}"
    if r["expect"] is None:  # harmless: accepted, scored from the original weights
        assert r["error"] is None, r["error"]
        assert r["result"].created and r["result"].row["count"] == 8
        assert r["result"].row["sha256"] == open_submission(FIXTURE).sha256
    else:
        assert r["error"] is not None, "accepted a hostile submission"
        assert "\n" not in r["error"] and "Traceback" not in r["error"]
        assert SECRET not in r["error"]
        assert re.search(r["expect"], r["error"]), r["error"]
        assert _rows(board) == (0, 0)
        assert r["seconds"] < REJECT_SECONDS, f"rejection took {r['seconds']:.1f} s"
        if r["peak_bytes"] is not None:
            assert r["peak_bytes"] < REJECT_PEAK_BYTES, f"rejection peaked at +{r['peak_bytes'] >> 20} MiB"
    board.close()


# ---- the worker's limits: submissions that would hang or exhaust memory are stopped and rejected -------------------
def _slow_model(d: Path) -> Path:
    """An in-bounds TRM that takes many minutes to score sudoku6 (16 layers, 16 x 17 block calls per step)."""
    from dataclasses import asdict

    from recursive_models import build_model
    from recursive_models.checkpoint import write_weights_folder

    torch.manual_seed(0)
    net = build_model("trm", "tiny", task="sudoku6", hidden_size=128, layers=16, h_cycles=16, l_cycles=16,
                      halt_max_steps=16)  # fmt: skip
    d.parent.mkdir(parents=True, exist_ok=True)
    return write_weights_folder(d, net.state_dict(), {"model": asdict(net.config)})


def test_worker_stops_a_submission_at_the_time_limit(tmp_path, lb_data):
    board = Board(tmp_path / "board.db")
    t0 = time.monotonic()
    with pytest.raises(SubmissionError, match=r"^exceeded the scoring time limit of 8 s$"):
        submit(_slow_model(tmp_path / "slow"), "sudoku6", name="slow", db=board, progress=False,
               worker=WorkerLimits(wall_seconds=8))  # fmt: skip
    assert time.monotonic() - t0 < 60
    assert _rows(board) == (0, 0)
    assert not (tmp_path / "board.db.files").exists() or not any((tmp_path / "board.db.files").iterdir())


def test_worker_stops_a_submission_at_the_cpu_time_limit(tmp_path, lb_data):
    board = Board(tmp_path / "board.db")
    with pytest.raises(SubmissionError, match=r"^exceeded the scoring CPU-time limit of 12 s$"):
        submit(_slow_model(tmp_path / "slow"), "sudoku6", name="slow", db=board, progress=False,
               worker=WorkerLimits(wall_seconds=300, cpu_seconds=12, threads=1))  # fmt: skip
    assert _rows(board) == (0, 0)


def test_worker_stops_a_decompression_bomb_at_the_memory_limit(tmp_path, lb_data):
    # 3 GiB of zeros in a file of a few MB: within a deployment's 4 GiB file limit, over its 2 GiB worker.
    d = tmp_path / "bomb"
    d.mkdir()
    fixture_copy(tmp_path / "fx")
    (d / "meta.json").write_bytes((tmp_path / "fx" / "meta.json").read_bytes())
    torch_zip_bomb(d / "model.pt", 3 << 30)
    assert (d / "model.pt").stat().st_size < 16 << 20
    board = Board(tmp_path / "board.db")
    with pytest.raises(SubmissionError, match=r"^exceeded the scoring memory limit of 2,048 MiB$"):
        submit(d, "sudoku6", name="bomb", db=board, progress=False, limits=Limits(max_file_bytes=4 << 30),
               worker=WorkerLimits(memory_bytes=2 << 30))  # fmt: skip
    assert _rows(board) == (0, 0)


def test_a_valid_submission_scores_inside_the_worker_limits(tmp_path, lb_data):
    board = Board(tmp_path / "board.db")
    res = submit(FIXTURE, "sudoku6", name="ok", db=board, limit=8, progress=False,
                 worker=WorkerLimits(memory_bytes=4 << 30, wall_seconds=120, threads=1))  # fmt: skip
    assert res.created and res.row["count"] == 8 and _rows(board) == (1, 1)
