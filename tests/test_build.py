"""End-to-end tests of the dataset builder CLI and the verifier (small sizes, fixed seeds)."""

from __future__ import annotations

import filecmp
import json

import numpy as np
import pytest
from conftest import pattern_solution

from puzzles import build, verify
from puzzles.formats import PuzzleTable, read_csv, read_split, tokens_to_grids, write_csv

pytestmark = pytest.mark.e2e


def _write_sudoku_csv(path, rows=30, seed=0, corrupt_row=None):
    rng = np.random.default_rng(seed)
    sol = np.stack([pattern_solution((3, 3))] * rows)
    q = np.where(rng.random(sol.shape) < 0.3, 0, sol).astype(np.int8)
    if corrupt_row is not None:
        sol[corrupt_row, 0, 0], sol[corrupt_row, 0, 1] = sol[corrupt_row, 0, 1], sol[corrupt_row, 0, 0]
    write_csv(path, PuzzleTable("sudoku", q, sol, np.zeros(rows, np.int32)))


def _same_tree(a, b):
    cmp = filecmp.dircmp(a, b)
    assert not cmp.left_only and not cmp.right_only and not cmp.diff_files, (
        cmp.left_only,
        cmp.right_only,
        cmp.diff_files,
    )
    for sub in cmp.common_dirs:
        _same_tree(a / sub, b / sub)


def test_build_from_csv_layout(tmp_path):
    _write_sudoku_csv(tmp_path / "in.csv")
    out = tmp_path / "ds"
    assert build.main(["sudoku-extreme", "--out", str(out), "--from-csv", str(tmp_path / "in.csv"),
                       "--train", "20", "--test", "5", "--aug", "3", "--seed", "1", "--no-progress"]) == 0  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == [
        "build.json",
        "identifiers.json",
        "test",
        "test.csv",
        "train",
        "train.csv",
    ]
    train = read_split(out, "train")
    assert train.inputs.shape == (80, 81) and train.metadata["total_groups"] == 20
    assert (np.diff(train.group_indices) == 4).all() and (train.puzzle_indices == np.arange(81)).all()
    test = read_split(out, "test")
    assert test.inputs.shape == (5, 81) and test.metadata["total_groups"] == 5
    # The first member of each group is the original CSV puzzle.
    originals = read_csv(out / "train.csv")
    assert (tokens_to_grids(np.asarray(train.inputs[::4]), "sudoku") == originals.questions).all()
    info = json.loads((out / "build.json").read_text())
    assert info["train"]["examples"] == 80 and info["source"] == "csv:in.csv"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folder left behind"


def test_build_is_byte_identical_and_refuses_overwrite(tmp_path, capsys):
    _write_sudoku_csv(tmp_path / "in.csv")
    args = [
        "sudoku-extreme",
        "--from-csv",
        str(tmp_path / "in.csv"),
        "--train",
        "10",
        "--test",
        "5",
        "--aug",
        "2",
        "--no-progress",
    ]
    assert build.main([*args, "--out", str(tmp_path / "a")]) == 0
    assert build.main([*args, "--out", str(tmp_path / "b")]) == 0
    _same_tree(tmp_path / "a", tmp_path / "b")
    assert build.main([*args, "--out", str(tmp_path / "a")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert build.main([*args, "--out", str(tmp_path / "a"), "--seed", "5", "--force"]) == 0
    assert json.loads((tmp_path / "a" / "build.json").read_text())["seed"] == 5


def test_build_rejects_bad_input(tmp_path, capsys):
    _write_sudoku_csv(tmp_path / "bad.csv", corrupt_row=7)
    assert build.main(["sudoku-extreme", "--out", str(tmp_path / "x"), "--from-csv", str(tmp_path / "bad.csv")]) == 2
    assert "row 7" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert build.main(["maze-hard", "--out", str(tmp_path / "y"), "--aug", "8"]) == 2
    assert "--aug must be between 0 and 7" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build.main(["sudoku-hardest", "--out", str(tmp_path / "z")])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(("name", "aug"), [("sudoku4", 3), ("sudoku6", 2), ("maze-small", 7)])
def test_generated_build_verifies(tmp_path, name, aug, capsys):
    out = tmp_path / name
    assert build.main([name, "--out", str(out), "--train", "12", "--test", "6", "--aug", str(aug),
                       "--seed", "3", "--workers", "1", "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    assert verify.main([str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["splits"][0]["examples"] == 12 * (1 + aug)
    train_q = {q.tobytes() for q in read_csv(out / "train.csv").questions}
    test_q = {q.tobytes() for q in read_csv(out / "test.csv").questions}
    assert len(train_q) == 12 and len(test_q) == 6 and not train_q & test_q


def test_generated_build_independent_of_workers(tmp_path):
    for w in ("1", "2"):
        assert build.main(["sudoku6", "--out", str(tmp_path / w), "--train", "8", "--test", "4", "--seed", "11",
                           "--workers", w, "--no-progress"]) == 0  # fmt: skip
    _same_tree(tmp_path / "1", tmp_path / "2")


def test_verify_catches_a_wrong_label(tmp_path, capsys):
    _write_sudoku_csv(tmp_path / "in.csv", rows=10)
    out = tmp_path / "ds"
    assert build.main(["sudoku-extreme", "--out", str(out), "--from-csv", str(tmp_path / "in.csv"), "--train", "5",
                       "--test", "5", "--no-progress"]) == 0  # fmt: skip
    labels = np.load(out / "test" / "all__labels.npy")
    labels[2, :2] = labels[2, 1::-1]  # swap two cells: no longer the solution
    np.save(out / "test" / "all__labels.npy", labels)
    capsys.readouterr()
    assert verify.main([str(out), "--split", "test"]) == 1
    assert json.loads(capsys.readouterr().out)["splits"][0]["first_failures"] == [2]


def test_build_from_real_csvs(tmp_path, shared_data, capsys):
    sx = shared_data / "sudoku_extreme_sample" / "sudoku-extreme_train_random1k_reconstructed.csv"
    assert build.main(["sudoku-extreme", "--out", str(tmp_path / "sx"), "--from-csv", str(sx), "--train", "100",
                       "--test", "50", "--aug", "10", "--no-progress"]) == 0  # fmt: skip
    mz = shared_data / "maze" / "maze-30x30-hard-1k_train_reconstructed.csv"
    assert build.main(["maze-hard", "--out", str(tmp_path / "mz"), "--from-csv", str(mz), "--train", "40",
                       "--test", "20", "--aug", "7", "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    for d in ("sx", "mz"):
        assert verify.main([str(tmp_path / d)]) == 0, capsys.readouterr().out


def _bar_totals(err: str) -> list[str]:
    """The total of every tqdm bar drawn into ``err`` (``16/500 [`` -> ``500``), one entry per bar."""
    import re

    return sorted({m[1] + m[2] for m in re.finditer(r"(?:^|[\r\n])([^\r\n|:]*):\s+\d+%\|[^|]*\| *\d+/(\d+) \[", err)})


def test_one_bar_per_generated_split_and_none_for_one_puzzle(capsys):
    # `leaderboard submit` builds its test split with train=1: the single train puzzle gets no bar.
    from puzzles.datasets import get_dataset

    build.generate_splits(get_dataset("sudoku6"), 1, 20, seed=0, workers=1, progress=True)
    assert _bar_totals(capsys.readouterr().err) == ["sudoku 6x6 any20"]
