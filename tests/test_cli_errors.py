"""Every command-line entry point answers bad input with a one-line error and exit status 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from puzzles import build, data, maze, maze_generator, sudoku_generator, verify


def _run(main, argv):
    try:
        return main(argv)
    except SystemExit as e:  # argparse errors exit through SystemExit
        return e.code


@pytest.mark.parametrize(
    ("main", "argv", "message"),
    [
        (data.main, ["{tmp}/missing"], "no dataset.json"),
        (verify.main, ["{tmp}/missing"], "no dataset.json"),
        (maze.main, ["{tmp}/missing.txt"], "No such file"),
        (sudoku_generator.main, ["--n", "-3"], "--n must be at least 1"),
        (sudoku_generator.main, ["--n", "3", "--real", "{tmp}/missing.csv"], "--real: no such file"),
        (sudoku_generator.main, ["--profile", "hardest"], "invalid choice"),
        (maze_generator.main, ["--n", "0"], "--n must be at least 1"),
        (maze_generator.main, ["--n", "2", "--out", "{tmp}/no/such/dir/x.npz"], "does not exist"),
        (build.main, ["sudoku6", "--out", "{tmp}/x", "--train", "0"], "--train must be at least 1"),
        (build.main, ["sudoku6", "--out", "{tmp}/x", "--from-csv", "{tmp}/missing.csv"], "CSV file not found"),
    ],
)
def test_cli_rejects_bad_input(tmp_path, capsys, main, argv, message):
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert _run(main, argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == [], "a failed command left files behind"


def test_maze_cli_reads_stdin(monkeypatch, capsys):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("S #\n   \n  G\n"))
    assert maze.main([]) == 0
    assert "shortest path: 5 cells" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("S #\n   \n  X\n"))
    assert maze.main([]) == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("module", "argv", "loaded"),
    [
        ("leaderboard", ["--help"], "leaderboard.cli"),
        ("leaderboard", ["submit", "--help"], "leaderboard.cli"),
        ("leaderboard", ["submit", "--bogus"], "leaderboard.cli"),
        ("puzzles.play", ["--help"], "puzzles.agents"),
        ("puzzles.play", ["chess"], "puzzles.agents"),
        ("recursive_models.report", ["--help"], "recursive_models.reported"),
        ("recursive_models.report", ["--bogus"], "recursive_models.reported"),
        ("recursive_models.evaluate", ["--help"], "recursive_models"),
        ("recursive_models.evaluate", [], "recursive_models"),  # the checkpoint argument is missing
        ("recursive_models.convert", ["--help"], "recursive_models"),
        ("recursive_models.convert", ["--from", "gpt"], "recursive_models"),
        ("recursive_models.lm.data", ["--help"], "recursive_models.lm.sources"),
        ("recursive_models.lm.data", ["--source", "wikipedia"], "recursive_models.lm.sources"),
    ],
)
def test_help_and_bad_arguments_do_not_import_torch(module, argv, loaded):
    # `--help` and argument errors must answer at once: torch (seconds to import) only where a command needs it.
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", module, *argv], capture_output=True, text=True, timeout=60
    )
    assert out.returncode in (0, 2), out.stderr[-2000:]
    imported = {ln.rsplit("|", 1)[-1].strip() for ln in out.stderr.splitlines() if ln.startswith("import time")}
    assert loaded in imported and "torch" not in imported
    assert "usage:" in out.stdout + out.stderr  # it answered (help, or argparse's error), not something else
