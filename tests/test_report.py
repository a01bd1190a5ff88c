"""recursive_models.report: fake run folders -> rows, seed aggregates, reported rows, files, plots, CLI errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from leaderboard.tasks import get_task
from recursive_models.report import (
    MEASURED,
    REPORTED,
    aggregate_seeds,
    collect_runs,
    format_markdown,
    main,
    plot_accuracy,
    with_reported,
    write_report,
)

REPO = Path(__file__).resolve().parents[1]
H100 = "cuda (NVIDIA H100 80GB HBM3)"


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _eval(acc: float, se: float | None, cell: float = 0.9, count: int = 1000, reportable: bool = True) -> dict:
    return {
        "eval/exact_accuracy": acc,
        "eval/exact_accuracy_se": se,
        "eval/cell_accuracy": cell,
        "eval/exact_accuracy_act": acc,
        "eval/count": count,
        "eval/steps": 16,
        "eval/reportable": reportable,
        "eval/version": 1,
    }


def new_run(root: Path, rel: str, *, model, size, task, seed, acc, se, params, flops, minutes, nstep=None, **kw):
    """A run folder whose results.json has the ``run`` section (the current trainer)."""
    steps, batch = kw.get("steps", 100), kw.get("batch_size", 32)
    result = {
        **_eval(acc, se, reportable=kw.get("reportable", True)),
        "checkpoint": f"{rel}/checkpoints/step_0000100",
        "minutes": minutes + 1.0,
        "parameters": params,
        "run": {
            "model": model,
            "size": size,
            "task": task,
            "device": kw.get("device", H100),
            "precision": kw.get("precision", "bf16"),
            "seed": seed,
            "world": 1,
            "steps": steps,
            "batch_size": batch,
            "samples": steps * batch,
            "train_minutes": minutes,
            "train_flops": flops,
            "flops_per_sample": None if flops is None else flops / (steps * batch),
            "stopped_by": kw.get("stopped_by", "steps"),
            "max_minutes": kw.get("max_minutes"),
            "max_flops": None,
            "solver_nstep_mean": nstep,
            **kw.get("extra", {}),
        },
    }
    if nstep is not None:  # Attractor runs: the evaluation's solver iterations too
        result["solver/nstep_mean"] = nstep - 1.0
    _write_json(root / rel / "results.json", result)


HYDRA_CONFIG = """\
model:
  name: hrm
  size: tiny
  loss_type: stablemax
task:
  name: sudoku-extreme
  data_dir: null
trainer:
  device: auto
  precision: auto
  batch_size: 16
  steps: 150
  seed: 3
  out_dir: runs/${model.name}-${model.size}-${task.name}-${now:%Y%m%d-%H%M%S}
"""


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """Seven readable runs (new and old style, two tasks with reported numbers, one without) and three bad ones."""
    root = tmp_path / "runs"
    common = {"model": "attractor", "size": "tiny", "task": "sudoku-extreme", "params": 263_362}
    new_run(
        root,
        "sweep/model=attractor,seed=0",
        seed=0,
        acc=0.50,
        se=0.02,
        flops=1.0e12,
        minutes=3.0,
        nstep=5.5,
        **common,
        extra={"peak_rss_bytes": 4.5e8},  # a field added to the run section later
    )
    new_run(
        root, "sweep/model=attractor,seed=1", seed=1, acc=0.60, se=0.03, flops=1.2e12, minutes=3.5, nstep=4.5, **common
    )
    new_run(
        root, "sweep/model=attractor,seed=2", seed=2, acc=0.55, se=0.025, flops=1.4e12, minutes=4.0, nstep=5.0, **common
    )
    new_run(
        root,
        "sweep/model=trm,seed=0",
        model="trm",
        size="7m",
        task="sudoku-extreme",
        seed=0,
        acc=0.30,
        se=0.015,
        params=6_830_000,
        flops=5.0e13,
        minutes=20.0,
    )
    new_run(
        root,
        "cpu/trm-tiny-sudoku6",
        model="trm",
        size="tiny",
        task="sudoku6",
        seed=0,
        acc=0.738,
        se=0.02,
        params=131_000,
        flops=None,
        minutes=4.0,
        device="cpu",
        precision="fp32",
        reportable=False,
    )

    # Old run, hydra snapshot only (checkpoints deleted): device/precision "auto" are unknown.
    old = root / "old" / "hrm-hydra"
    _write_json(
        old / "results.json", {**_eval(0.05, 0.007), "checkpoint": "gone", "minutes": 9.0, "parameters": 130_000}
    )
    (old / ".hydra").mkdir()
    (old / ".hydra" / "config.yaml").write_text(HYDRA_CONFIG)

    # Old run with a checkpoint's meta.json only; its step (700) is what the final weights were saved at.
    old = root / "old" / "trm-meta"
    _write_json(old / "results.json", {**_eval(0.12, 0.01), "checkpoint": "x", "minutes": 30.0})
    ckpt = old / "checkpoints" / "step_0000700"
    ckpt.mkdir(parents=True)
    (ckpt / "model.safetensors").write_bytes(b"")
    meta = {
        "format_version": 1,
        "model": {"name": "trm", "size": "7m"},
        "task": {"name": "maze-hard", "kind": "maze", "data_dir": "data/x"},
        "config": {"trainer": {"device": "cpu", "precision": "fp32", "batch_size": 64, "steps": 1000, "seed": 5}},
        "seed": 5,
        "parameters": 6_830_000,
        "step": 700,
    }
    (ckpt / "meta.json").write_text(json.dumps(meta))
    (old / "checkpoints" / "latest").write_text("step_0000700\n")

    (root / "broken").mkdir()
    (root / "broken" / "results.json").write_text('{"eval/exact_accuracy": 0.5,')
    _write_json(root / "listed" / "results.json", [0.5])
    bad = {**_eval(0.4, 0.02), "parameters": 1, "run": {"model": "trm", "seed": "zero"}}
    _write_json(root / "badtype" / "results.json", bad)
    return root


def _row(df: pd.DataFrame, run: str) -> pd.Series:
    rows = df[df["run"] == run]
    assert len(rows) == 1, f"{run}: {len(rows)} rows"
    return rows.iloc[0]


def test_collect_runs_rows_and_values(runs, caplog):
    df = collect_runs(runs)
    assert len(df) == 7 and set(df["source"]) == {MEASURED}
    assert sorted(p.parent.name for p in df.attrs["skipped"]) == ["badtype", "broken", "listed"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    for name in ("broken", "listed", "badtype"):
        assert any(str(runs / name / "results.json") in w and "skipped" in w for w in warnings), warnings
    assert any("run.seed" in w for w in warnings)  # the wrong-typed field is named

    r = _row(df, "sweep/model=attractor,seed=1")
    assert (r["model"], r["size"], r["task"], r["device"], r["precision"]) == (
        "attractor",
        "tiny",
        "sudoku-extreme",
        H100,
        "bf16",
    )
    assert r["eval/exact_accuracy"] == 0.60 and r["eval/exact_accuracy_se"] == 0.03
    assert r["eval/cell_accuracy"] == 0.9 and r["eval/count"] == 1000 and r["eval/reportable"] is True
    assert (r["parameters"], r["seed"], r["steps"], r["batch_size"], r["samples"]) == (263_362, 1, 100, 32, 3200)
    assert r["train_flops"] == 1.2e12 and r["flops_per_sample"] == pytest.approx(1.2e12 / 3200)
    assert r["train_minutes"] == 3.5 and r["minutes"] == 4.5 and r["stopped_by"] == "steps"
    assert r["solver_nstep_mean"] == 4.5 and r["eval/solver_nstep_mean"] == 3.5
    assert math.isnan(r["max_minutes"]) and pd.isna(r["name"])
    # Run-section fields the report does not know yet become extra columns.
    assert df["peak_rss_bytes"].dtype == np.float64 and df["peak_rss_bytes"].notna().sum() == 1
    assert _row(df, "sweep/model=attractor,seed=0")["peak_rss_bytes"] == 4.5e8

    trm = _row(df, "cpu/trm-tiny-sudoku6")
    assert math.isnan(trm["train_flops"]) and math.isnan(trm["solver_nstep_mean"])
    assert trm["eval/reportable"] is False and trm["device"] == "cpu"
    # Sorted by task, then model, size, seed.
    assert list(df["task"]) == ["maze-hard", *["sudoku-extreme"] * 5, "sudoku6"]
    assert list(df["run"][1:5]) == [f"sweep/model=attractor,seed={s}" for s in range(3)] + ["old/hrm-hydra"]
    assert df["parameters"].dtype == np.float64 and df["seed"].dtype == np.float64


def test_old_runs_fall_back_to_hydra_config_and_meta(runs):
    df = collect_runs(runs)
    hydra = _row(df, "old/hrm-hydra")
    assert (hydra["model"], hydra["size"], hydra["task"]) == ("hrm", "tiny", "sudoku-extreme")
    assert (hydra["seed"], hydra["steps"], hydra["batch_size"], hydra["samples"]) == (3, 150, 16, 2400)
    assert hydra["parameters"] == 130_000 and hydra["minutes"] == 9.0
    for unknown in ("device", "precision", "train_flops", "train_minutes", "stopped_by", "solver_nstep_mean"):
        assert pd.isna(hydra[unknown]), unknown

    meta = _row(df, "old/trm-meta")
    assert (meta["model"], meta["size"], meta["task"], meta["device"], meta["precision"]) == (
        "trm",
        "7m",
        "maze-hard",
        "cpu",
        "fp32",
    )
    # meta.json's step beats the configured steps; parameters come from meta.json when results.json lacks them.
    assert (meta["seed"], meta["steps"], meta["batch_size"], meta["samples"]) == (5, 700, 64, 700 * 64)
    assert meta["parameters"] == 6_830_000 and math.isnan(meta["train_flops"])


def test_one_run_folder_is_its_own_runs_dir(runs):
    df = collect_runs(runs / "sweep" / "model=trm,seed=0")
    assert list(df["run"]) == ["."] and df["eval/exact_accuracy"].tolist() == [0.30]


def test_seed_aggregation(runs):
    seeds = aggregate_seeds(collect_runs(runs))
    assert len(seeds) == 5  # attractor-tiny, trm-7m, hrm-tiny on sudoku-extreme; trm-7m maze; trm-tiny sudoku6
    a = seeds[(seeds["model"] == "attractor") & (seeds["task"] == "sudoku-extreme")].iloc[0]
    assert (a["n"], a["seeds"], a["parameters"]) == (3, "0,1,2", 263_362)
    assert a["eval/exact_accuracy_mean"] == pytest.approx(0.55)
    assert a["eval/exact_accuracy_std"] == pytest.approx(0.05)  # sample std of 0.50, 0.60, 0.55
    assert a["train_flops_mean"] == pytest.approx(1.2e12) and a["train_minutes_mean"] == pytest.approx(3.5)
    one = seeds[(seeds["model"] == "trm") & (seeds["size"] == "7m") & (seeds["task"] == "sudoku-extreme")].iloc[0]
    assert one["n"] == 1 and one["eval/exact_accuracy_mean"] == 0.30 and math.isnan(one["eval/exact_accuracy_std"])
    # Reported rows are never aggregated with measured ones.
    assert aggregate_seeds(with_reported(collect_runs(runs)))["n"].sum() == 7


def test_reported_rows_come_from_the_leaderboard_tasks(runs):
    df = with_reported(collect_runs(runs))
    rep = df[df["source"] == REPORTED]
    for task in ("sudoku-extreme", "maze-hard"):
        got = {
            (r["name"], r["model"], int(r["parameters"]), r["eval/exact_accuracy"], r["reference"])
            for _, r in rep[rep["task"] == task].iterrows()
        }
        assert got == set(get_task(task).reported)
    assert len(get_task("sudoku-extreme").reported) == 4  # HRM, TRM (attention), TRM (MLP), Attractor
    assert not (rep["task"] == "sudoku6").any()  # no published numbers for the CPU preset
    assert rep["run"].isna().all() and rep["eval/exact_accuracy_se"].isna().all()
    assert len(with_reported(df)) == len(df)  # not added twice
    # Each task's reported rows follow its measured ones.
    tasks = list(dict.fromkeys(df["task"]))
    assert tasks == ["maze-hard", "sudoku-extreme", "sudoku6"]
    sx = df[df["task"] == "sudoku-extreme"]["source"].tolist()
    assert sx == [MEASURED] * 5 + [REPORTED] * 4


def test_format_markdown(runs):
    df = with_reported(collect_runs(runs))
    md = format_markdown(df)
    lines = md.strip().splitlines()
    assert len(lines) == 2 + len(df)
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:3] == ["source", "run", "model"] and "reportable" in header  # one run is not reportable
    line = next(ln for ln in lines if "| sweep/model=attractor,seed=0 |" in ln)
    cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
    assert cells["run"] == "sweep/model=attractor,seed=0"
    assert cells["params"] == "263K" and cells["exact acc."] == "50.0 ± 2.0%" and cells["cell acc."] == "90.0%"
    assert cells["train FLOPs"] == "1.00e12" and cells["train min"] == "3.0" and cells["samples"] == "3.20K"
    assert cells["solver it. (train)"] == "5.5" and cells["solver it. (eval)"] == "4.5" and cells["device"] == H100
    assert "| reported | TRM (MLP) (TRM paper, Table 1) | trm | - | sudoku-extreme | 5.00M | 87.4% |" in md
    assert "| measured | old/hrm-hydra | hrm | tiny | sudoku-extreme | 130K | 5.0 ± 0.7% |" in md

    # Columns unknown everywhere, and "reportable" when every run is, are left out; "|" is escaped.
    new = collect_runs(runs / "sweep")
    header = format_markdown(new).splitlines()[0]
    assert "reportable" not in header and "name" not in header and "max" not in header
    new.loc[0, "run"] = "a|b"
    new.loc[0, "train_minutes"] = 0.0163  # a smoke run: not "0.0"
    assert "| a\\|b |" in format_markdown(new) and "| 0.016 |" in format_markdown(new)

    seeds_md = format_markdown(aggregate_seeds(df))
    assert "| attractor | tiny | sudoku-extreme | 3 | 0,1,2 | 263K | 55.0 ± 5.0% |" in seeds_md
    assert "| trm | 7m | sudoku-extreme | 1 | 0 | 6.83M | 30.0% |" in seeds_md


def test_write_report_files(runs, tmp_path):
    out = tmp_path / "out"
    paths = write_report(collect_runs(runs), out)
    assert set(paths) == {"csv", "seeds_csv", "markdown", "plot_parameters", "plot_flops", "plot_minutes"}
    assert all(p.parent == out and p.is_file() for p in paths.values())

    csv = pd.read_csv(paths["csv"])
    assert (csv["source"] == MEASURED).sum() == 7 and (csv["source"] == REPORTED).sum() == 4 + 3
    assert ",263362," in paths["csv"].read_text()  # whole numbers without ".0"
    r = csv[csv["run"] == "sweep/model=attractor,seed=2"].iloc[0]
    assert r["eval/exact_accuracy"] == 0.55 and r["train_flops"] == 1.4e12 and r["seed"] == 2
    mlp = csv[csv["name"] == "TRM (MLP)"].iloc[0]
    assert (mlp["parameters"], mlp["eval/exact_accuracy"], mlp["task"]) == (5_000_000, 0.874, "sudoku-extreme")
    seeds = pd.read_csv(paths["seeds_csv"])
    assert seeds["n"].tolist() == [3, 1, 1, 1, 1] and list(seeds.columns[:5]) == ["model", "size", "task", "n", "seeds"]

    md = paths["markdown"].read_text()
    assert "55.0 ± 5.0%" in md and "TRM (MLP) (TRM paper, Table 1)" in md and "## Seeds" in md
    assert "![accuracy vs parameters](accuracy_vs_parameters.png)" in md

    import matplotlib.image

    for key in ("plot_parameters", "plot_flops", "plot_minutes"):
        with Image.open(paths[key]) as im:
            assert im.format == "PNG" and im.width > 600 and im.height > 300
        pixels = matplotlib.image.imread(paths[key])
        assert pixels.ndim == 3 and pixels.std() > 0.05  # something drawn, not a blank canvas

    # Without runs that know their FLOPs or training minutes those plots are not written (old runs only).
    only_old = write_report(collect_runs(runs / "old"), tmp_path / "old", reported=False)
    assert set(only_old) == {"csv", "seeds_csv", "markdown", "plot_parameters"}
    assert (pd.read_csv(only_old["csv"])["source"] == MEASURED).all()


def test_plot_panels_markers_and_error_bars(runs):
    df = with_reported(collect_runs(runs))
    fig = plot_accuracy(df, "parameters")
    assert [ax.get_title() for ax in fig.axes] == ["maze-hard", "sudoku-extreme", "sudoku6"]
    assert all(ax.get_xscale() == "log" for ax in fig.axes)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["attractor", "hrm", "trm", "reported (papers)"]

    sx = fig.axes[1]
    bars = {c.get_label(): c for c in sx.containers}
    line, _, (bar_lines,) = bars["attractor"].lines
    assert line.get_ydata().tolist() == pytest.approx([50.0, 60.0, 55.0])
    segments = bar_lines.get_segments()  # vertical error bars: y ± 100 * se
    ends = [(s[0][1], s[1][1]) for s in segments]
    np.testing.assert_allclose(ends, [(48.0, 52.0), (57.0, 63.0), (52.5, 57.5)])
    hollow = [c for c in sx.collections if c.get_label().endswith("(reported)")]
    assert sum(len(c.get_offsets()) for c in hollow) == 4
    assert all(len(c.get_facecolors()) == 0 or c.get_facecolors()[:, 3].max() == 0 for c in hollow)
    assert {t.get_text() for t in sx.texts} == {name for name, *_ in get_task("sudoku-extreme").reported}

    flops = plot_accuracy(df, "train_flops")  # old runs and the sudoku6 run recorded no FLOPs
    assert [ax.get_title() for ax in flops.axes] == ["sudoku-extreme"]
    assert not [c for c in flops.axes[0].collections if c.get_label().endswith("(reported)")]
    minutes = plot_accuracy(df, "train_minutes")
    assert [ax.get_title() for ax in minutes.axes] == ["sudoku-extreme", "sudoku6"]
    assert minutes.axes[0].get_xscale() == "linear"
    assert plot_accuracy(collect_runs(runs / "old"), "train_flops") is None


def test_cli_writes_report_and_prints_table(runs, capsys):
    assert main([str(runs)]) == 0
    out = capsys.readouterr().out
    out_dir = runs / "report"
    assert out.startswith("| source | run | model |")
    assert "| measured | sweep/model=attractor,seed=1 | attractor | tiny | sudoku-extreme | 263K | 60.0 ± 3.0% |" in out
    for name in ("report.csv", "seeds.csv", "report.md", "accuracy_vs_parameters.png", "accuracy_vs_flops.png"):
        assert f"wrote {out_dir / name}" in out and (out_dir / name).is_file()
    # The report folder holds no results.json, so a second report over the same folder sees the same runs.
    assert len(collect_runs(runs)) == 7


def test_cli_task_filter_and_out(runs, tmp_path, capsys):
    out = tmp_path / "only-sx"
    assert main([str(runs), "--task", "sudoku-extreme", "--out", str(out), "--no-plots"]) == 0
    csv = pd.read_csv(out / "report.csv")
    assert set(csv["task"]) == {"sudoku-extreme"} and (csv["source"] == MEASURED).sum() == 5
    assert not list(out.glob("*.png"))
    capsys.readouterr()
    assert main([str(runs), "--task", "maze-small", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no runs of task 'maze-small'") and "'sudoku-extreme'" in err


def test_cli_errors(tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path / 'missing'}: no such directory\n"

    (tmp_path / "file").write_text("")
    assert main([str(tmp_path / "file")]) == 2
    assert "not a directory" in capsys.readouterr().err

    (tmp_path / "empty" / "sub").mkdir(parents=True)
    assert main([str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: no runs found under {tmp_path / 'empty'}") and "results.json" in err
    assert not (tmp_path / "empty" / "report").exists()

    (tmp_path / "bad" / "r").mkdir(parents=True)
    (tmp_path / "bad" / "r" / "results.json").write_text("nope")
    assert main([str(tmp_path / "bad")]) == 2
    assert "(1 unreadable results.json skipped" in capsys.readouterr().err


def test_cli_as_module(runs, tmp_path):
    cmd = [sys.executable, "-m", "recursive_models.report"]
    missing = subprocess.run([*cmd, str(tmp_path / "nope")], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert missing.returncode == 2 and missing.stderr.startswith("error: ") and missing.stdout == ""

    ok = subprocess.run(
        [*cmd, str(runs), "--out", str(tmp_path / "r")], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert ok.returncode == 0, ok.stderr
    assert f"{runs / 'broken' / 'results.json'}: not valid JSON" in ok.stderr  # warned, named, skipped
    assert "| reported | Attractor-TRM (Solve the Loop (2026)) | attractor |" in ok.stdout
    assert (tmp_path / "r" / "report.md").is_file()
