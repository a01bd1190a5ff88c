"""Report over training runs: one row per run, seed aggregates, and accuracy against model size and budget.

    python -m recursive_models.report runs/sweep-20260101-120000          # -> runs/sweep-.../report/
    python -m recursive_models.report runs --out results/ --task sudoku-extreme

Walks ``RUNS_DIR`` recursively for run folders (a folder holding ``results.json``, which
`recursive_models.trainer.train` and `recursive_models.lm.trainer.train` write when a run finishes; LM runs are
reported by validation perplexity, ``val/ppl``, with ``perplexity_vs_*.png`` plots) and writes into ``--out`` (default
``RUNS_DIR/report/``):

* ``report.csv``: one row per run (``source`` = ``measured``) with its final evaluation, parameters, steps,
  samples, training FLOPs and wall time, device, precision and seed, plus the papers' published numbers for the
  same tasks (``source`` = ``reported``, from `recursive_models.reported`; not measured here);
* ``seeds.csv``: runs of the same (model, size, task) aggregated over seeds (mean, std, n);
* ``report.md``: both tables, readable (``6.83M`` parameters, ``74.7 ± 2.0`` % accuracy);
* ``accuracy_vs_parameters.png``, ``accuracy_vs_flops.png``, ``accuracy_vs_minutes.png``: exact accuracy with
  its bootstrap standard error against parameters, training FLOPs and training-loop minutes, one panel per task,
  one colour and marker per model; the reported numbers (which give only a parameter count) appear as hollow
  markers on the parameter plot.

Runs written before ``results.json`` had its ``run`` section are read too: model, size, task, seed, batch size
and steps come from the checkpoint's ``meta.json`` or the run's ``.hydra/config.yaml``; what neither records
(training FLOPs, training-loop minutes, the device and precision of ``auto``) is NaN.

    from recursive_models.report import collect_runs, write_report, format_markdown
    df = collect_runs("runs/sweep")              # one row per run, NaN where a field is unknown
    paths = write_report(df, "runs/sweep/report")  # {"csv": ..., "markdown": ..., "plot_parameters": ...}
    print(format_markdown(df))
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from recursive_models.reported import REPORTED as PUBLISHED

log = logging.getLogger(__name__)

RESULTS = "results.json"
FAILED = "error.txt"  # what a failed run of a sweep leaves instead (recursive_models.train)
MEASURED, REPORTED = "measured", "reported"
# Metrics copied from results.json (the evaluation of the final weights).
EVAL_FIELDS = ("eval/exact_accuracy", "eval/exact_accuracy_se", "eval/cell_accuracy", "eval/count", "eval/reportable")
# The language-model runs' metrics (`recursive_models.lm.trainer`: validation perplexity of the final weights).
LM_FIELDS = ("val/ppl", "val/loss", "val/tokens")
# What a finished run must have one of: a puzzle run's accuracy or an LM run's perplexity.
PRIMARY = ("eval/exact_accuracy", "val/ppl")
# The fields of results.json's "run" section, in table order.
RUN_FIELDS = (
    "model",
    "size",
    "task",
    "steps",
    "batch_size",
    "samples",
    "train_flops",
    "flops_per_sample",
    "train_minutes",
    "device",
    "precision",
    "seed",
    "world",
    "stopped_by",
    "max_minutes",
    "max_flops",
    "solver_nstep_mean",
)
COLUMNS = (
    "source",
    "run",  # the run folder relative to RUNS_DIR (measured rows)
    "name",  # the paper's name of the model (reported rows)
    "reference",  # where a reported number is published
    "model",
    "size",
    "task",
    "parameters",
    *EVAL_FIELDS,
    *LM_FIELDS,
    "eval/solver_nstep_mean",  # solver iterations per supervision step at evaluation (Attractor)
    *(f for f in RUN_FIELDS if f not in ("model", "size", "task")),  # solver_nstep_mean: the same, in training
    "minutes",  # the whole training process (data, evaluation and checkpoints included)
)
STRING_COLUMNS = ("source", "run", "name", "reference", "model", "size", "task", "device", "precision", "stopped_by")
BOOL_COLUMNS = ("eval/reportable",)
# Whole numbers: kept as float64 in the DataFrame (NaN when unknown), written to CSV without a trailing ".0".
INT_COLUMNS = ("parameters", "eval/count", "val/tokens", "steps", "batch_size", "samples", "seed", "world")
GROUP_KEYS = ("model", "size", "task")
PROGRESS_MIN_RUNS = 20  # show a progress bar from this many runs on
_MISSING = "-"  # an unknown value in the markdown tables


class ReportError(ValueError):
    """A runs folder that cannot be reported on (missing, not a folder)."""


# ---------------------------------------------------------------------------------------------------------------
# Reading runs


def find_results(runs_dir: str | os.PathLike, name: str = RESULTS) -> list[Path]:
    """Every ``results.json`` (or file ``name``) under ``runs_dir`` (itself included), in sorted order.

    Checkpoint folders and hidden folders (``.hydra``) are not entered: they never hold a run and can be large.
    """
    found = []
    for here, dirs, files in os.walk(runs_dir):
        dirs[:] = sorted(d for d in dirs if d != "checkpoints" and not d.startswith("."))
        if name in files:
            found.append(Path(here) / name)
    return sorted(found)


def _number(value: Any, field: str) -> float:
    """A JSON number as float; ``None`` (unknown, or NaN as the evaluation writes it) is NaN."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{field} should be a number, got {value!r}")
    return float(value)


def _text(value: Any, field: str) -> str | float:
    if value is None:
        return math.nan
    if not isinstance(value, str):
        raise ValueError(f"{field} should be a string, got {value!r}")
    return value


def _select(tree: Any, dotted: str) -> Any:
    """``tree["a"]["b"]`` for ``"a.b"``; ``None`` when any level is missing or not a mapping."""
    for key in dotted.split("."):
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def _hydra_config(run_dir: Path) -> dict:
    """The run's ``.hydra/config.yaml`` as plain data ({} when absent or unreadable).

    Interpolations are resolved where they can be; one that cannot (``${now:...}`` outside hydra) becomes
    ``None`` instead of failing the whole file.
    """
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        return {}
    from omegaconf import OmegaConf

    try:
        cfg = OmegaConf.load(path)
    except Exception as e:  # a broken YAML file: fall back to meta.json alone, say why
        log.warning("%s: unreadable (%s); ignored", path, e)
        return {}
    keys = ("model.name", "model.size", "task.name", "trainer.seed", "trainer.batch_size", "trainer.steps")
    keys += ("trainer.device", "trainer.precision")
    out: dict = {}
    for key in keys:
        value = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
        if value is not None:
            node = out
            *parents, leaf = key.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
    return out


def _fallback(run_dir: Path) -> dict:
    """What an old run (no ``run`` section in results.json) records elsewhere about itself.

    The checkpoint's ``meta.json`` comes first: its config is resolved and its ``step`` is the step the final
    weights were saved at. ``.hydra/config.yaml`` fills what is left. Before the run section existed the trainer
    always ran ``trainer.steps`` steps (results.json is written only at the end), so the configured steps are
    the completed ones, and samples are steps x the global batch size.
    """
    from recursive_models.checkpoint import read_meta

    meta: dict = {}
    try:
        meta = read_meta(run_dir)
    except FileNotFoundError:
        pass  # no checkpoint left (deleted to save space): the hydra snapshot may still say what ran
    except (OSError, ValueError) as e:
        log.warning("%s: checkpoint meta.json unreadable (%s); ignored", run_dir, e)
    configs = [meta.get("config") or {}, _hydra_config(run_dir)]

    def first(*keys: str) -> Any:
        for tree in (meta, *configs):
            for key in keys:
                value = _select(tree, key)
                if value is not None:
                    return value
        return None

    out = {
        "model": first("model.name"),
        "size": first("model.size"),
        "task": first("task.name"),
        "seed": first("seed", "trainer.seed"),
        "batch_size": first("trainer.batch_size"),
        "steps": first("step", "trainer.steps"),
        "parameters": meta.get("parameters"),
    }
    # "auto" names no device: which one ran is not recorded anywhere in an old run.
    for field in ("device", "precision"):
        value = first(f"trainer.{field}")
        out[field] = None if value == "auto" else value
    if isinstance(out["steps"], int) and isinstance(out["batch_size"], int):
        out["samples"] = out["steps"] * out["batch_size"]
    return out


def read_run(results_path: str | os.PathLike, runs_dir: str | os.PathLike | None = None) -> dict:
    """One run's row: its ``results.json``, with the old-run fallbacks for fields it lacks.

    Args:
        results_path: the run's ``results.json``.
        runs_dir: the ``run`` column is the run folder relative to this (default: the folder as given).

    Raises:
        ValueError: the file is not a JSON object with a numeric ``eval/exact_accuracy`` (a puzzle run) or
            ``val/ppl`` (a language-model run), or a field has the wrong type (the message names it).
        OSError: the file cannot be read.
    """
    path = Path(results_path)
    run_dir = path.parent
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    if not any(k in data for k in PRIMARY):
        raise ValueError("no eval/exact_accuracy or val/ppl (not a finished training run?)")
    run = data.get("run", {})
    if not isinstance(run, dict):
        raise ValueError(f"'run' should be an object, got {type(run).__name__}")
    info = {k: run.get(k) for k in RUN_FIELDS}
    info["parameters"] = data.get("parameters")
    needs = ("model", "size", "task", "seed", "steps", "batch_size", "samples", "parameters", "device", "precision")
    if any(info[k] is None for k in needs):
        for k, v in _fallback(run_dir).items():
            if info.get(k) is None:
                info[k] = v

    rel = run_dir if runs_dir is None else run_dir.relative_to(runs_dir)
    row: dict[str, Any] = {"source": MEASURED, "run": rel.as_posix(), "name": math.nan, "reference": math.nan}
    for col in COLUMNS:
        if col in row:
            continue
        if col in EVAL_FIELDS or col in LM_FIELDS or col == "minutes":
            value, field = data.get(col), col
        elif col == "eval/solver_nstep_mean":
            value, field = data.get("solver/nstep_mean"), "solver/nstep_mean"
        else:
            value, field = info.get(col), (col if col == "parameters" else f"run.{col}")
        if col in STRING_COLUMNS:
            row[col] = _text(value, field)
        elif col in BOOL_COLUMNS:
            if value is not None and not isinstance(value, bool):
                raise ValueError(f"{field} should be true or false, got {value!r}")
            row[col] = math.nan if value is None else value
        else:
            row[col] = _number(value, field)
    if all(math.isnan(row[k]) for k in PRIMARY):
        raise ValueError(" and ".join(k for k in PRIMARY if k in data) + " is null")
    # Fields the trainer adds to the run section later (e.g. peak memory) are kept as extra columns.
    for k, v in run.items():
        if k not in row and k not in RUN_FIELDS and (v is None or isinstance(v, str | int | float | bool)):
            row[k] = math.nan if v is None else v
    return row


def _frame(rows: list[dict]) -> pd.DataFrame:
    """Rows as a DataFrame with every column of `COLUMNS` (then any extra ones): numbers float64, NaN unknown."""
    extra = list(dict.fromkeys(k for r in rows for k in r if k not in COLUMNS))
    df = pd.DataFrame(rows, columns=[*COLUMNS, *extra])
    for col in df.columns:
        values = [v for v in df[col] if not _missing(v)]
        numeric = col not in STRING_COLUMNS and col not in BOOL_COLUMNS
        if col in extra:  # an extra column is numeric when every known value is a number
            numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        df[col] = pd.to_numeric(df[col]).astype("float64") if numeric else df[col].astype(object)
    return df


def collect_runs(runs_dir: str | os.PathLike, *, progress: bool | None = None) -> pd.DataFrame:
    """One row per finished run under ``runs_dir`` (see `COLUMNS`), sorted by task, model, size, seed.

    A ``results.json`` that cannot be read is logged as a warning naming the file and skipped; the skipped paths
    are in ``df.attrs["skipped"]``. Runs of a sweep that failed (an ``error.txt`` and no ``results.json``) are
    warned about with their error; their ``error.txt`` paths are in ``df.attrs["failed"]``.

    Args:
        runs_dir: a folder of runs (searched recursively), or one run folder.
        progress: show a tqdm bar (default: when there are at least `PROGRESS_MIN_RUNS` runs).

    Raises:
        ReportError: ``runs_dir`` does not exist or is not a folder.
    """
    root = Path(runs_dir)
    if not root.exists():
        raise ReportError(f"{root}: no such directory")
    if not root.is_dir():
        raise ReportError(f"{root}: not a directory")
    files = find_results(root)
    show = len(files) >= PROGRESS_MIN_RUNS if progress is None else progress
    rows, skipped = [], []
    for path in tqdm(files, desc="runs", unit="run", disable=not show, dynamic_ncols=True):
        try:
            rows.append(read_run(path, root))
        except (OSError, ValueError) as e:
            log.warning("%s: %s; skipped", path, e)
            skipped.append(path)
    df = _frame(rows)
    if len(df):
        df = df.sort_values(["task", "model", "size", "seed", "run"], na_position="last", kind="stable")
        df = df.reset_index(drop=True)
    df.attrs["skipped"] = skipped
    # Runs of a sweep that failed (`recursive_models.train` leaves error.txt instead of results.json).
    failed = [f for f in find_results(root, name=FAILED) if not (f.parent / RESULTS).exists()]
    for path in failed:
        log.warning("%s: the run failed: %s", path.parent, path.read_text().strip())
    df.attrs["failed"] = failed
    return df


def reported_rows(tasks: Iterable[str]) -> pd.DataFrame:
    """The papers' published numbers for ``tasks`` (`recursive_models.reported`), as ``source = reported`` rows.

    Tasks without published numbers (the CPU presets) give no rows.
    """
    rows = []
    for task in sorted({t for t in tasks if isinstance(t, str)}):
        for name, model, parameters, accuracy, reference in PUBLISHED.get(task, ()):
            rows.append(
                {
                    "source": REPORTED,
                    "name": name,
                    "reference": reference,
                    "model": model,
                    "task": task,
                    "parameters": parameters,
                    "eval/exact_accuracy": accuracy,
                }
            )
    return _frame(rows)


def with_reported(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` followed by the reported numbers of its tasks (unchanged when it already has reported rows)."""
    if len(df) == 0 or (df["source"] == REPORTED).any():
        return df
    rep = reported_rows(df["task"])
    if len(rep) == 0:
        return df
    out = pd.concat([df, rep], ignore_index=True)
    # Keep each task's reported rows right after its measured ones.
    order = out["task"].map({t: i for i, t in enumerate(pd.unique(out["task"]))})
    out = out.assign(_o=order).sort_values("_o", kind="stable").drop(columns="_o").reset_index(drop=True)
    out.attrs = dict(df.attrs)
    return out


def aggregate_seeds(df: pd.DataFrame, by: Sequence[str] = GROUP_KEYS) -> pd.DataFrame:
    """Measured runs grouped by ``by`` (default model, size, task): n, seeds, accuracy (or perplexity) mean and std.

    ``std`` is the sample standard deviation (NaN for a single run). Other numeric columns are averaged over
    the runs that know them.
    """
    measured = df[df["source"] == MEASURED]
    cols = [
        *by,
        "n",
        "seeds",
        "parameters",
        "eval/exact_accuracy_mean",
        "eval/exact_accuracy_std",
        "eval/cell_accuracy_mean",
        "val/ppl_mean",
        "val/ppl_std",
        "samples_mean",
        "train_flops_mean",
        "train_minutes_mean",
    ]
    rows = []
    for key, g in measured.groupby(list(by), dropna=False, sort=True):
        seeds = sorted({int(s) for s in g["seed"] if not math.isnan(s)})
        acc = g["eval/exact_accuracy"]
        rows.append(
            {
                **dict(zip(by, key, strict=True)),
                "n": len(g),
                "seeds": ",".join(map(str, seeds)) if seeds else math.nan,
                "parameters": g["parameters"].median(),
                "eval/exact_accuracy_mean": acc.mean(),
                "eval/exact_accuracy_std": acc.std(ddof=1),
                "eval/cell_accuracy_mean": g["eval/cell_accuracy"].mean(),
                "val/ppl_mean": g["val/ppl"].mean(),
                "val/ppl_std": g["val/ppl"].std(ddof=1),
                "samples_mean": g["samples"].mean(),
                "train_flops_mean": g["train_flops"].mean(),
                "train_minutes_mean": g["train_minutes"].mean(),
            }
        )
    return pd.DataFrame(rows, columns=cols)


# ---------------------------------------------------------------------------------------------------------------
# Tables


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA


def human_count(n: float) -> str:
    """A count to three significant figures with a K/M/B suffix: 263000 -> "263K", 6830000 -> "6.83M".

    Also the board's parameter format (`leaderboard.export.human_params` is this function).
    """
    n = float(n)
    if abs(n) < 999.5:
        return f"{n:.0f}"
    for scale, suffix in ((1e3, "K"), (1e6, "M"), (1e9, "B")):
        v = n / scale
        if abs(v) < 999.5 or suffix == "B":  # 999_999 reads "1.00M", not "1000K"
            decimals = 2 if abs(v) < 9.995 else 1 if abs(v) < 99.95 else 0
            return f"{v:.{decimals}f}{suffix}"
    raise AssertionError("unreachable")


def _tick_count(v: float) -> str:
    """An axis tick's count without trailing zeros: "100K", "1M" (not "1.00M")."""
    return re.sub(r"\.0+(?=[KMB]$)", "", human_count(v)) if v >= 1000 else f"{v:g}"


def _sci(x: float) -> str:
    """``1.23e15`` (FLOPs)."""
    mantissa, exp = f"{x:.2e}".split("e")
    return f"{mantissa}e{int(exp)}"


def _minutes(m: float) -> str:
    """``3.5``, or two significant digits below a minute (``0.016``: a smoke run, not ``0.0``)."""
    return f"{m:.1f}" if abs(m) >= 1 else f"{m:.2g}"


def _pct(x: float, err: float = math.nan) -> str:
    return f"{100 * x:.1f}%" if _missing(err) else f"{100 * x:.1f} ± {100 * err:.1f}%"


def _pm(x: float, err: float = math.nan) -> str:
    return f"{x:.2f}" if _missing(err) else f"{x:.2f} ± {err:.2f}"


def _run_label(r: pd.Series) -> Any:
    if r.get("source") == REPORTED:
        return f"{r['name']} ({r['reference']})" if not _missing(r.get("reference")) else r.get("name")
    return r.get("run")


# (header, column that must be present and known, cell of a row). A column whose cells are all unknown is left
# out of the markdown (the CSV keeps every column).
_Cell = Callable[[pd.Series], Any]
_MD_COLUMNS: tuple[tuple[str, str, _Cell], ...] = (
    ("source", "source", lambda r: r["source"]),
    ("run", "source", _run_label),
    ("model", "model", lambda r: r["model"]),
    ("size", "size", lambda r: r["size"]),
    ("task", "task", lambda r: r["task"]),
    ("n", "n", lambda r: f"{int(r['n'])}"),
    ("seeds", "seeds", lambda r: r["seeds"]),
    ("params", "parameters", lambda r: human_count(r["parameters"])),
    ("exact acc.", "eval/exact_accuracy", lambda r: _pct(r["eval/exact_accuracy"], r.get("eval/exact_accuracy_se"))),
    (
        "exact acc. (mean ± std)",
        "eval/exact_accuracy_mean",
        lambda r: _pct(r["eval/exact_accuracy_mean"], r.get("eval/exact_accuracy_std")),
    ),
    ("cell acc.", "eval/cell_accuracy", lambda r: _pct(r["eval/cell_accuracy"])),
    ("cell acc. (mean)", "eval/cell_accuracy_mean", lambda r: _pct(r["eval/cell_accuracy_mean"])),
    ("test n", "eval/count", lambda r: f"{int(r['eval/count'])}"),
    ("val ppl", "val/ppl", lambda r: f"{r['val/ppl']:.2f}"),
    ("val ppl (mean ± std)", "val/ppl_mean", lambda r: _pm(r["val/ppl_mean"], r.get("val/ppl_std"))),
    ("val tokens", "val/tokens", lambda r: human_count(r["val/tokens"])),
    ("reportable", "eval/reportable", lambda r: "yes" if r["eval/reportable"] else "no"),
    ("steps", "steps", lambda r: f"{int(r['steps'])}"),
    ("samples", "samples", lambda r: human_count(r["samples"])),
    ("samples (mean)", "samples_mean", lambda r: human_count(r["samples_mean"])),
    ("train FLOPs", "train_flops", lambda r: _sci(r["train_flops"])),
    ("train FLOPs (mean)", "train_flops_mean", lambda r: _sci(r["train_flops_mean"])),
    ("train min", "train_minutes", lambda r: _minutes(r["train_minutes"])),
    ("train min (mean)", "train_minutes_mean", lambda r: _minutes(r["train_minutes_mean"])),
    ("stopped by", "stopped_by", lambda r: r["stopped_by"]),
    ("device", "device", lambda r: r["device"]),
    ("precision", "precision", lambda r: r["precision"]),
    ("seed", "seed", lambda r: f"{int(r['seed'])}"),
    ("solver it. (train)", "solver_nstep_mean", lambda r: f"{r['solver_nstep_mean']:.1f}"),
    ("solver it. (eval)", "eval/solver_nstep_mean", lambda r: f"{r['eval/solver_nstep_mean']:.1f}"),
)


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def format_markdown(df: pd.DataFrame) -> str:
    """A readable markdown table of a runs table (`collect_runs`, `with_reported`) or a seed table.

    Parameters and samples as ``6.83M``, accuracies in percent with ``± se`` (``± std`` for seed means), FLOPs as
    ``1.23e15``; unknown values as ``-``; columns unknown for every row, and the ``reportable`` column when every
    run is reportable, are left out.
    """
    if len(df) == 0:
        return "(no runs)\n"
    headers, cells = [], []
    for header, key, cell in _MD_COLUMNS:
        if key not in df.columns:
            continue
        known = [not _missing(v) for v in df[key]]
        if not any(known):
            continue
        if key == "eval/reportable" and all(v is True or _missing(v) for v in df[key]):
            continue
        col = [_escape(str(cell(r))) if ok else _MISSING for ok, (_, r) in zip(known, df.iterrows(), strict=True)]
        headers.append(header)
        cells.append(col)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in zip(*cells, strict=True)]
    return "\n".join(lines) + "\n"


def _csv(df: pd.DataFrame, path: Path) -> None:
    out = df.copy()
    for col in out.columns:
        if col in INT_COLUMNS or col == "n":
            out[col] = out[col].round().astype("Int64")  # 263362, not 263362.0; unknown stays empty
    out.to_csv(path, index=False)


# ---------------------------------------------------------------------------------------------------------------
# Plots

# One colour and marker per model, the same on every plot; models not listed here cycle through the rest.
MODEL_STYLE = {
    "attractor": ("tab:red", "o"),
    "trm": ("tab:blue", "s"),
    "hrm": ("tab:green", "^"),
    "transformer": ("tab:purple", "D"),
}
_EXTRA_STYLES = (("tab:orange", "v"), ("tab:brown", "P"), ("tab:pink", "X"), ("tab:gray", "h"), ("tab:olive", "<"))
# x column -> (axis label, log scale, file stem)
PLOTS = {
    "parameters": ("parameters", True, "accuracy_vs_parameters"),
    "train_flops": ("training compute (FLOPs, forward + backward)", True, "accuracy_vs_flops"),
    "train_minutes": ("training wall time (minutes, training loop)", False, "accuracy_vs_minutes"),
}


# y metric -> (axis label, scale, standard-error column, log scale, file-name word): puzzles' accuracy, LMs' perplexity
METRICS = {
    "eval/exact_accuracy": ("exact accuracy (%)", 100.0, "eval/exact_accuracy_se", False, "accuracy"),
    "val/ppl": ("validation perplexity", 1.0, None, True, "perplexity"),
}


def _model_styles(models: Iterable[str]) -> dict[str, tuple[str, str]]:
    styles, extra = {}, iter(_EXTRA_STYLES * 10)
    for m in sorted({m for m in models if isinstance(m, str)}, key=lambda m: (m not in MODEL_STYLE, m)):
        styles[m] = MODEL_STYLE.get(m) or next(extra)
    return styles


def plot_accuracy(df: pd.DataFrame, x: str, metric: str = "eval/exact_accuracy"):
    """Exact accuracy (%) against column ``x`` (a key of `PLOTS`): one panel per task, one style per model.

    ``metric="val/ppl"`` plots language-model runs' validation perplexity instead (log scale; no reported rows).

    Measured runs are filled markers with standard-error bars; reported rows (which have parameters only) are
    hollow markers named after the paper's model. Built on `matplotlib.figure.Figure` (Agg canvas), so it
    neither needs nor changes a pyplot backend.

    Returns:
        the figure, or ``None`` when no measured run knows ``x``.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    label, log_x, _ = PLOTS[x]
    y_label, scale, se_col, log_y, _ = METRICS[metric]
    ok = df[x].notna() & df[metric].notna()
    if log_x:
        ok &= df[x] > 0  # a log axis cannot show zero
    measured = df[ok & (df["source"] == MEASURED)]
    reported = df[ok & (df["source"] == REPORTED)]
    tasks = sorted(set(measured["task"].dropna()))
    if not tasks:
        return None
    styles = _model_styles(pd.concat([measured["model"], reported["model"]]))
    fig = Figure(figsize=(5.2 * len(tasks), 4.2), layout="constrained")
    axes = fig.subplots(1, len(tasks), squeeze=False)[0]
    for ax, task in zip(axes, tasks, strict=True):
        for model, (color, marker) in styles.items():
            m = measured[(measured["task"] == task) & (measured["model"] == model)]
            if len(m):
                se = m[se_col].fillna(0.0) if se_col else 0.0 * m[metric]
                ax.errorbar(
                    m[x],
                    scale * m[metric],
                    yerr=scale * se,
                    fmt=marker,
                    color=color,
                    capsize=3,
                    markersize=6,
                    alpha=0.85,
                    label=model,
                )
            r = reported[(reported["task"] == task) & (reported["model"] == model)]
            if len(r):
                ax.scatter(
                    r[x],
                    scale * r[metric],
                    marker=marker,
                    s=60,
                    facecolors="none",
                    edgecolors=color,
                    linewidths=1.5,
                    label=f"{model} (reported)",
                )
                for _, row in r.iterrows():
                    ax.annotate(
                        row["name"],
                        (row[x], scale * row[metric]),
                        textcoords="offset points",
                        xytext=(6, 4),
                        fontsize=7,
                        color=color,
                    )
        if log_x:
            ax.set_xscale("log")
        else:
            ax.set_xlim(left=0)  # a linear budget axis starts at nothing spent
        if x == "parameters":
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _tick_count(v)))
        ax.margins(x=0.15)  # room for the reported models' names right of their markers
        if log_y:
            ax.set_yscale("log")
        else:
            ax.set_ylim(-3, 103)
        ax.set_title(task)
        ax.set_xlabel(label)
        ax.set_ylabel(y_label)
        ax.grid(True, which="major", alpha=0.3)
    # One legend for the figure: a filled marker per model, one hollow marker explaining "reported".
    handles = [
        Line2D([], [], color=c, marker=mk, linestyle="none", label=m)
        for m, (c, mk) in styles.items()
        if (measured["model"] == m).any() or (reported["model"] == m).any()
    ]
    if len(reported):
        handles.append(
            Line2D(
                [], [], color="gray", marker="o", markerfacecolor="none", linestyle="none", label="reported (papers)"
            )
        )
    fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    return fig


# ---------------------------------------------------------------------------------------------------------------
# Writing


def write_report(
    df: pd.DataFrame, out_dir: str | os.PathLike, *, reported: bool = True, plots: bool = True
) -> dict[str, Path]:
    """Write the tables and plots of a runs table into ``out_dir`` (created if needed).

    Args:
        df: rows as `collect_runs` returns them (reported rows may already be included).
        out_dir: the output folder.
        reported: add the papers' published numbers for the tasks in ``df`` (unless it has reported rows).
        plots: write the PNG plots.

    Returns:
        the files written: ``csv`` (report.csv), ``seeds_csv`` (seeds.csv), ``markdown`` (report.md) and
        ``plot_parameters`` / ``plot_flops`` / ``plot_minutes`` for each plot with data (a plot none of the
        runs has an x value for, e.g. FLOPs of old runs, is not written); language-model runs add
        ``plot_perplexity_parameters`` / ``..._flops`` / ``..._minutes`` (``perplexity_vs_*.png``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = with_reported(df) if reported else df
    seeds = aggregate_seeds(df)
    paths: dict[str, Path] = {}
    paths["csv"] = out / "report.csv"
    _csv(table, paths["csv"])
    paths["seeds_csv"] = out / "seeds.csv"
    _csv(seeds, paths["seeds_csv"])

    figures = []
    for metric, (*_, word) in METRICS.items() if plots else ():
        if not table[metric].notna().any():
            continue
        for x, (_, _, stem) in PLOTS.items():
            stem = stem.replace("accuracy", word)
            fig = plot_accuracy(table, x, metric)
            if fig is None:
                log.info("no run records %s; %s.png not written", x, stem)
                continue
            key = "plot_" + ("" if word == "accuracy" else f"{word}_")
            key += {"parameters": "parameters", "train_flops": "flops", "train_minutes": "minutes"}[x]
            paths[key] = out / f"{stem}.png"
            fig.savefig(paths[key], dpi=120)
            figures.append(paths[key].name)

    n_measured = int((table["source"] == MEASURED).sum())
    md = [
        "# Training runs",
        "",
        f"{n_measured} measured run(s). Measured rows: the final evaluation of each run (exact accuracy ± its "
        "bootstrap standard error; language-model runs: the validation perplexity). Reported rows: the papers' "
        "published numbers (`recursive_models/reported.py`), not measured here.",
        "",
        format_markdown(table),
        "## Seeds",
        "",
        "Runs of the same model, size and task: exact accuracy (or perplexity) mean ± sample standard deviation over "
        "runs.",
        "",
        format_markdown(seeds),
    ]
    if figures:
        md += ["## Plots", ""] + [f"![{name[:-4].replace('_', ' ')}]({name})" for name in figures] + [""]
    paths["markdown"] = out / "report.md"
    paths["markdown"].write_text("\n".join(md))
    return paths


def main(argv: list[str] | None = None) -> int:
    """Collect the runs under RUNS_DIR, print the markdown table and write the report files."""
    p = argparse.ArgumentParser(prog="python -m recursive_models.report", description=__doc__.splitlines()[0])
    p.add_argument("runs_dir", help="folder searched recursively for run folders (holding results.json)")
    p.add_argument("--out", help="output folder (default: RUNS_DIR/report)")
    p.add_argument("--task", help="only runs of this task (e.g. sudoku-extreme)")
    p.add_argument("--no-plots", action="store_true", help="tables only")
    args = p.parse_args(argv)
    logging.basicConfig(format="%(levelname)s: %(message)s")

    root = Path(args.runs_dir)
    try:
        df = collect_runs(root)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if len(df) == 0:
        skipped = len(df.attrs.get("skipped", []))
        why = f" ({skipped} unreadable {RESULTS} skipped, see the warnings above)" if skipped else ""
        print(
            f"error: no runs found under {root}{why}; a run folder holds {RESULTS}, which training writes when a "
            "run finishes",
            file=sys.stderr,
        )
        return 2
    if args.task:
        tasks = sorted(set(df["task"].dropna()))
        df = df[df["task"] == args.task].reset_index(drop=True)
        if len(df) == 0:
            print(f"error: no runs of task {args.task!r} under {root}; tasks found: {tasks}", file=sys.stderr)
            return 2
    out = Path(args.out) if args.out else root / "report"
    try:
        paths = write_report(df, out, plots=not args.no_plots)
    except OSError as e:
        print(f"error: cannot write the report into {out}: {e}", file=sys.stderr)
        return 2
    print(format_markdown(with_reported(df)))
    print(format_markdown(aggregate_seeds(df)))
    for path in paths.values():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
