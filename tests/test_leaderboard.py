"""Tests of the leaderboard: untrusted submissions are refused safely, scores are recorded once and reproduced.

Uses the quickstart checkpoint in ``tests/data/checkpoints`` (an Attractor-TRM trained on 6x6 Sudoku) and the
``sudoku6@1`` test split, generated once per session. Most scoring runs use ``limit`` to stay fast; the slow
tier scores the whole split and checks it against the training run's own evaluation.

    python -m pytest tests/test_leaderboard.py
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from hostile_submissions import CASES
from safetensors.torch import load_file, save_file

from leaderboard import cli
from leaderboard.db import SCHEMA_VERSION, Board, DatabaseError
from leaderboard.scoring import submit, verify
from leaderboard.tasks import TASKS, get_task
from leaderboard.validate import Limits, SubmissionError, open_submission
from recursive_models import MODELS, build_model

FIXTURE = Path(__file__).parent / "data" / "checkpoints" / "attractor-tiny-sudoku6"


@pytest.fixture
def board(tmp_path, lb_data):
    b = Board(tmp_path / "board.db")
    yield b
    b.close()


def copy_fixture(dst: Path, perturb: float | None = None) -> Path:
    """A copy of the quickstart checkpoint; ``perturb`` changes one weight (a different submission)."""
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURE / "meta.json", dst / "meta.json")
    if perturb is None:
        shutil.copy(FIXTURE / "model.safetensors", dst / "model.safetensors")
    else:
        state = load_file(str(FIXTURE / "model.safetensors"))
        k = sorted(state)[0]
        state[k] = state[k].clone()
        state[k].view(-1)[0] += perturb
        save_file(state, str(dst / "model.safetensors"))
    return dst


def n_rows(board: Board) -> tuple[int, int]:
    with board.engine.connect() as c:
        return (
            c.exec_driver_sql("SELECT count(*) FROM submissions").scalar_one(),
            c.exec_driver_sql("SELECT count(*) FROM scores").scalar_one(),
        )


# ---- rejections: the hostile corpus is tests/test_leaderboard_hostile.py; here the deployment limits ----------
def test_limits_on_parameters_and_file_size(tmp_path):
    d = copy_fixture(tmp_path / "sub")
    with pytest.raises(SubmissionError, match="263,362 parameters, over the limit of 1,000"):
        open_submission(d, Limits(max_parameters=1000))
    with pytest.raises(SubmissionError, match="over the limit of 10,000"):
        open_submission(d, Limits(max_file_bytes=10_000))


def test_weights_only_pickle_and_run_directory_are_accepted(tmp_path):
    ref = open_submission(FIXTURE)
    d = tmp_path / "pt"
    d.mkdir()
    shutil.copy(FIXTURE / "meta.json", d / "meta.json")
    torch.save({"state_dict": load_file(str(FIXTURE / "model.safetensors"))}, d / "model.pt")
    sub = open_submission(d)
    assert sub.file_format == "pickle" and sub.parameters == ref.parameters == 263_362
    assert all(torch.equal(sub.state[k], ref.state[k]) for k in ref.state)
    run = tmp_path / "run" / "checkpoints"
    copy_fixture(run / "step_0001500")
    (run / "latest").write_text("step_0001500\n")
    assert open_submission(tmp_path / "run").sha256 == ref.sha256
    (run / "latest").write_text("../../../etc\n")
    with pytest.raises(SubmissionError, match="does not name a checkpoint folder"):
        open_submission(tmp_path / "run")


# ---- scoring, dedupe, verify, baselines -------------------------------------------------------------------
def test_submit_rank_resubmit_and_verify(tmp_path, board):
    res = submit(FIXTURE, "sudoku6", name="quickstart", db=board, limit=96, progress=False)
    assert res.created and not res.row["reportable"] and res.row["count"] == 96
    assert res.row["task"] == "sudoku6" and res.row["task_version"] == 1
    assert res.row["data"] == "generated:seed=0:n=500" and res.row["examples_per_s"] > 0
    assert 0.5 < res.row["exact_accuracy"] <= 1.0 and res.row["solver_iters_mean"] > 0
    again = submit(copy_fixture(tmp_path / "same"), "sudoku6", name="someone else", db=board, limit=96, progress=False)
    assert (again.score_id, again.created) == (res.score_id, False)
    assert n_rows(board) == (1, 1)

    rep = verify(res.score_id, db=board, progress=False)
    assert rep.ok, rep.mismatches
    # a tampered board entry is caught
    with board.engine.begin() as c:
        c.exec_driver_sql("UPDATE scores SET exact_accuracy = exact_accuracy + 0.01")
    rep = verify(res.score_id, db=board, progress=False)
    assert not rep.ok and rep.mismatches[0].startswith("exact_accuracy")
    # verifying against another file is refused
    with pytest.raises(SubmissionError, match="not the scored submission"):
        verify(res.score_id, db=board, path=copy_fixture(tmp_path / "other", perturb=0.5), progress=False)


def test_baselines_scored_end_to_end(board, lb_data, capsys):
    db = board.url.removeprefix("sqlite:///")
    assert cli.main(["--db", db, "baselines", "--task", "sudoku6", "--quiet"]) == 0
    rows = {r["name"]: r for r in board.rows("sudoku6")}
    assert set(rows) == {"copy-input", "random-guess"}
    test = Path(lb_data) / "sudoku6@1" / "test"
    inputs, labels = np.load(test / "all__inputs.npy"), np.load(test / "all__labels.npy")
    copy = rows["copy-input"]
    assert copy["exact_accuracy"] == 0.0 and copy["parameters"] == 0 and copy["kind"] == "baseline"
    assert copy["cell_accuracy"] == pytest.approx(float(np.mean(inputs == labels)), abs=1e-12)  # the givens
    rand = rows["random-guess"]
    assert rand["exact_accuracy"] == 0.0
    assert rand["cell_accuracy"] == pytest.approx(1 / 7, abs=0.015)  # uniform over the 7 non-padding tokens


def test_parallel_submissions_land_exactly_once(tmp_path, lb_data):
    db = tmp_path / "board.db"
    subs = [copy_fixture(tmp_path / f"s{i}", perturb=None if i == 0 else 0.1 * i) for i in range(3)]
    dup = copy_fixture(tmp_path / "dup")  # the same file as s0
    env = {**os.environ, "LEADERBOARD_DATA": str(lb_data), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "leaderboard",
                "--db",
                str(db),
                "submit",
                str(p),
                "--task",
                "sudoku6",
                "--name",
                f"p{i}",
                "--limit",
                "16",
                "--quiet",
                "--json",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, p in enumerate([*subs, dup])
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    results = [json.loads(o[0]) for o in outs]
    assert results[0]["id"] == results[3]["id"]
    assert len({r["id"] for r in results}) == 3
    b = Board(db)
    assert n_rows(b) == (3, 3)
    assert sorted(r["sha256"] for r in b.rows()) == sorted({open_submission(p).sha256 for p in subs})


def _add_many(db: str, worker: int) -> list[tuple[str, int]]:
    from leaderboard.db import Board

    b = Board(db)
    out = []
    for i in range(12):
        shared = i % 2 == 0  # even rows: the same submission and score key in every worker
        sha = f"{i:064x}" if shared else f"{worker:032x}{i:032x}"
        sub = dict(sha256=sha, name=f"w{worker}", model="trm", size="tiny", parameters=1, file_bytes=1,
                   file_format="safetensors", kind="measured", meta_json="{}")  # fmt: skip
        score = dict(task="sudoku6", task_version=1, task_fingerprint="f", data="d", limit_n=0, reportable=True,
                     exact_accuracy=0.5, count=1, steps=1, metrics_json="{}", device="cpu")  # fmt: skip
        sid, _ = b.add(sub, score)
        out.append((sha, sid))
    b.close()
    return out


def test_concurrent_writers_sqlite(tmp_path):
    import multiprocessing as mp

    db = str(tmp_path / "board.db")
    with mp.get_context("spawn").Pool(4) as pool:
        results = pool.starmap(_add_many, [(db, w) for w in range(4)])
    ids: dict[str, set[int]] = {}
    for res in results:
        for sha, sid in res:
            ids.setdefault(sha, set()).add(sid)
    assert len(ids) == 6 + 4 * 6 and all(len(v) == 1 for v in ids.values())
    assert n_rows(Board(db)) == (30, 30)
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# ---- schema and versions ----------------------------------------------------------------------------------
def test_schema_version_and_newer_database_refused(tmp_path):
    db = tmp_path / "b.db"
    assert Board(db).version() == SCHEMA_VERSION
    assert Board(db).migrate() == SCHEMA_VERSION  # reopening migrates nothing
    con = sqlite3.connect(db)
    con.execute("UPDATE schema_version SET version = 99")
    con.commit()
    con.close()
    with pytest.raises(DatabaseError, match="schema version 99, newer"):
        Board(db)


def test_task_versions_never_mix(tmp_path, board, monkeypatch):
    v1 = get_task("sudoku6@1")
    monkeypatch.setitem(TASKS["sudoku6"], 2, replace(v1, version=2, batch_size=64))
    assert get_task("sudoku6").version == 2 and get_task("sudoku6@1") is v1
    with pytest.raises(ValueError, match="no version '7'"):
        get_task("sudoku6@7")
    monkeypatch.setenv("LEADERBOARD_DATA", str(tmp_path / "v2data"))  # v2's split is its own folder
    a = submit(FIXTURE, "sudoku6@1", name="a", db=board, limit=8, progress=False)
    b = submit(FIXTURE, "sudoku6@2", name="a", db=board, limit=8, progress=False)
    assert a.created and b.created and a.score_id != b.score_id
    table = cli.format_table(cli.collect_rows(board, "sudoku6"))
    assert "sudoku6@1" in table and "sudoku6@2" in table
    # a spec edited without a version bump is refused rather than mixed
    monkeypatch.setitem(TASKS["sudoku6"], 2, replace(v1, version=2, batch_size=32))
    with pytest.raises(DatabaseError, match="without a version bump"):
        submit(copy_fixture(tmp_path / "o", perturb=1.0), "sudoku6@2", name="b", db=board, limit=8, progress=False)


# ---- command line -----------------------------------------------------------------------------------------
def test_cli_submit_show_export(tmp_path, lb_data, capsys):
    db = str(tmp_path / "b.db")
    assert cli.main(["--db", db, "show"]) == 0
    assert "the board is empty" in capsys.readouterr().out
    bad = CASES["NaN weight"].make(tmp_path / "bad", None)
    assert cli.main(["--db", db, "submit", str(bad), "--task", "sudoku6", "--name", "n", "--quiet"]) == 2
    assert "non-finite" in capsys.readouterr().err
    assert cli.main(["--db", db, "submit", str(FIXTURE), "--task", "sudoku6", "--name", "qs", "--limit", "8",
                     "--quiet"]) == 0  # fmt: skip
    assert "#1 qs: scored" in capsys.readouterr().out
    assert cli.main(["--db", db, "show", "--task", "sudoku6"]) == 0
    out = capsys.readouterr().out
    assert "qs" in out and "not reportable" in out
    assert cli.main(["--db", db, "export", "--html", str(tmp_path / "b.html"), "--csv", str(tmp_path / "b.csv")]) == 0
    page = (tmp_path / "b.html").read_text()
    assert 'class="board"' in page and "qs" in page
    assert cli.main(["--db", db, "verify", "1", "--quiet"]) == 0
    assert "verified" in capsys.readouterr().out
    assert cli.main(["--db", db, "submit", str(FIXTURE), "--task", "nope", "--name", "n"]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err


def test_submit_shows_one_bar_for_the_scoring(tmp_path, lb_data, capsys):
    # The worker's progress is drawn by the parent as one bar; nothing else draws one (the split is prepared).
    import re

    db = str(tmp_path / "lb.db")
    for limit, bars in (("8", ["score"]), ("1", [])):  # no bar for a single example
        argv = ["--db", db, "submit", str(FIXTURE), "--task", "sudoku6", "--name", "qs", "--limit", limit]
        assert cli.main(argv) == 0
        err = capsys.readouterr().err
        assert sorted(set(re.findall(r"(?:^|[\r\n])([^\r\n|:]*):\s+\d+%\|", err))) == bars, err[-2000:]
        assert ("8/8 [" in err) == (limit == "8")  # the bar ends at the examples scored


def test_reported_rows_shown_for_paper_tasks(board):
    rows = cli.collect_rows(board, "maze-hard")
    assert {r["name"] for r in rows} >= {"Attractor-TRM", "HRM"}
    assert all(r["kind"] == "reported" and r["id"] is None for r in rows)
    assert rows[0]["exact_accuracy"] == 0.931


@pytest.mark.slow
def test_quickstart_checkpoint_scores_as_its_training_run_evaluated(board):
    """The whole sudoku6@1 split is the quickstart's own test split: the board reproduces its number."""
    res = submit(FIXTURE, "sudoku6", name="quickstart", db=board, progress=False)
    meta = json.loads((FIXTURE / "meta.json").read_text())["metrics"]
    assert res.row["reportable"] and res.row["count"] == 500
    assert res.row["exact_accuracy"] == meta["eval/exact_accuracy"]
    assert res.row["cell_accuracy"] == pytest.approx(meta["eval/cell_accuracy"], abs=1e-12)
    assert verify(res.score_id, db=board, progress=False).ok


_VARIANTS = [(m, v) for m in sorted(MODELS) for v in (sorted(getattr(MODELS[m], "VARIANTS", {})) or [""])]


@pytest.mark.parametrize(("model", "variant"), _VARIANTS)
def test_every_model_and_variant_scores(tmp_path, board, model, variant):
    # Through the registry: a new model or Attractor variant is scored without editing this test.
    from dataclasses import asdict

    from recursive_models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    net = build_model(model, "tiny", task="sudoku6", **({"variant": variant} if variant else {}))
    meta = {"model": asdict(net.config), "task": {"name": "sudoku6"}}
    run = save_checkpoint(tmp_path / "run", 1, net.state_dict(), meta)
    res = submit(run, "sudoku6", name=f"{model}-{variant}", db=board, limit=8, progress=False)
    assert res.created and res.row["count"] == 8 and res.row["model"] == model
    assert (res.row["solver_iters_mean"] is not None) == (model == "attractor")


def test_global_options_work_before_and_after_the_subcommand(tmp_path, monkeypatch, capsys):
    # git-style: `submit ... --db X` as well as `--db X submit ...`; nothing lands in the working folder.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LEADERBOARD_DB", raising=False)
    before, after = tmp_path / "before.db", tmp_path / "after.db"
    assert cli.main(["--db", str(before), "show"]) == 0
    assert cli.main(["show", "--db", str(after), "--task", "sudoku6"]) == 0
    assert cli.main(["--db", str(before), "remove", "7", "--db", str(after)]) == 2  # the later one wins
    assert "no score with id 7" in capsys.readouterr().err
    assert before.is_file() and after.is_file()
    assert not (tmp_path / "leaderboard.db").exists()
    assert cli.main(["token", "list", "--db", str(after)]) == 0


def test_the_default_database_and_its_folders_are_ignored_by_git():
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    paths = ["leaderboard.db", "leaderboard.db-wal", "leaderboard.db.files/x.safetensors", "leaderboard.db.spool/j/x"]
    out = subprocess.run(["git", "check-ignore", *paths], cwd=root, capture_output=True, text=True)
    assert out.stdout.split() == paths


def test_retired_task_version_is_not_rebuilt(tmp_path):
    """sudoku-extreme@1-@3's generated splits came from older generators (issue 22): they are never rebuilt."""
    from leaderboard.tasks import TaskError, prepare_test_data

    old, new = get_task("sudoku-extreme@1"), get_task("sudoku-extreme")
    assert new.version == 4 and not new.retired and old.retired
    # same scored fields apart from the version: the old fingerprints (and their rows) are untouched
    assert replace(new, version=1).fingerprint == old.fingerprint
    for v in (2, 3):
        assert get_task(f"sudoku-extreme@{v}").retired
        assert replace(new, version=v).fingerprint == get_task(f"sudoku-extreme@{v}").fingerprint
        with pytest.raises(TaskError, match="retired"):
            prepare_test_data(get_task(f"sudoku-extreme@{v}"), root=tmp_path, progress=False)
    with pytest.raises(TaskError, match="retired"):
        prepare_test_data(old, root=tmp_path, progress=False)
    assert not (tmp_path / "sudoku-extreme@1").exists()
    # a split that the old code cached under its name is still scored on
    (tmp_path / "sudoku-extreme@1" / "test").mkdir(parents=True)
    (tmp_path / "sudoku-extreme@1" / "test" / "dataset.json").write_text("{}")
    folder, data_id = prepare_test_data(old, root=tmp_path, progress=False)
    assert folder == tmp_path / "sudoku-extreme@1" and data_id == "generated:seed=0:n=1000"
