r"""The Attractor studies (issue 16): every variant next to HRM, TRM and the Transformer; TRM vs the solve in depth.

    python benchmarks/attractor_study.py equal_budget --minutes 4 --jobs 2 \
        --out benchmarks/results/attractor_equal_budget_cpu        # .json, .md, .png
    python benchmarks/attractor_study.py depth --steps 400 --jobs 2 --out benchmarks/results/attractor_depth_cpu
    python benchmarks/attractor_study.py equal_budget --replot benchmarks/results/attractor_equal_budget_cpu

``equal_budget``: the tiny CPU preset on sudoku6 (1000 training puzzles, 500 test), every entry trained for the
same training-loop wall time (``trainer.max_minutes``), 3 seeds each; the paper variant's backward modes are
entries too (the ablation behind its default). ``depth``: a miniature of the paper's Table 2 claim (TRM degrades
from 7M to 27M, the Attractor does not): TRM and the paper Attractor at two depths of the same width, equal
optimiser steps, 3 seeds.

Each run is ``python -m recursive_models.train ...`` in its own process with ``trainer.threads=1`` (``--jobs`` of
them at once; on a 2-core machine use at most 2). A finished run's ``results.json`` is kept in ``--runs``, so a
rerun skips what is done and an interrupted study loses only the runs in flight. The summary (mean ± std over
seeds of test exact accuracy, the per-run bootstrap s.e., parameters, steps) is written as JSON and Markdown with
the commit and machine, and a PNG.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quickstart import machine  # benchmarks/ is a folder of scripts, not a package

# entry name -> (hydra overrides, note). The variant and backward settings are spelled out so a later change of
# a default does not silently change what a recorded entry means.
_PAPER = ["model=attractor", "model.variant=paper"]
EQUAL_BUDGET = {
    "attractor-paper (phantom 2x1.0)": (
        [*_PAPER, "model.solver.backward=phantom", "model.solver.phantom_steps=2", "model.solver.phantom_tau=1.0"],
        "default of model=attractor",
    ),
    "attractor-paper (phantom 2x0.5)": (
        [*_PAPER, "model.solver.backward=phantom", "model.solver.phantom_steps=2", "model.solver.phantom_tau=0.5"],
        "backward ablation: the old damped default",
    ),
    "attractor-paper (one-step)": ([*_PAPER, "model.solver.backward=onestep"], "backward ablation"),
    "attractor-authors": (["model=attractor", "model.variant=authors"], "their TRMDEQ, their Anderson"),
    "attractor-authors (our Anderson)": (
        ["model=attractor", "model.variant=authors", "model.solver.method=anderson"],
        "their TRMDEQ with equilibrium's Anderson",
    ),
    "attractor-backbone": (["model=attractor", "model.variant=backbone"], "this suite's first model"),
    "trm": (["model=trm"], ""),
    "hrm": (["model=hrm"], ""),
    "transformer": (["model=transformer"], ""),
}
DEPTH = {
    f"{name} {layers} layers": ([*over, f"model.layers={layers}"], "")
    for layers in (2, 6)
    for name, over in (("trm", ["model=trm"]), ("attractor-paper", _PAPER))
}


def run_one(name: str, overrides: list[str], seed: int, args: argparse.Namespace) -> dict:
    """Train one entry at one seed in a fresh process (skipped when its results.json exists)."""
    out = Path(args.runs) / args.study / f"{name.replace(' ', '_').replace('(', '').replace(')', '')}-s{seed}"
    done = out / "results.json"
    if args.finished_only and not done.exists():
        return {}
    if not done.exists():
        cmd = [
            sys.executable, "-m", "recursive_models.train", "size=tiny", "task=sudoku6", *overrides,
            f"trainer.seed={seed}", f"trainer.out_dir={out}", "trainer.threads=1", "trainer.progress=false",
            "trainer.checkpoint_interval=0", "trainer.device=cpu",
        ]  # fmt: skip
        if args.study == "equal_budget":
            cmd += ["trainer.steps=1000000000", f"trainer.max_minutes={args.minutes}"]
        else:
            cmd += [f"trainer.steps={args.steps}", "trainer.max_minutes=null"]  # equal steps, no time budget
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if proc.returncode != 0:
            out.mkdir(parents=True, exist_ok=True)
            (out / "error.txt").write_text(proc.stderr[-5000:])
            print(f"FAILED {name} seed {seed}: see {out / 'error.txt'}", file=sys.stderr, flush=True)
            return {}
        result = json.loads(done.read_text())
        result["command"] = " ".join(cmd[1:])
        result["process_minutes"] = (time.time() - t0) / 60
        done.write_text(json.dumps(result, indent=1))
        print(f"done {name} seed {seed}: {result['eval/exact_accuracy']:.3f} ({result['process_minutes']:.1f} min)",
              flush=True)  # fmt: skip
    return json.loads(done.read_text())


def git_commit() -> str:
    """The commit the study ran at (``+dirty`` when the tree had changes)."""
    root = Path(__file__).resolve().parent.parent
    sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True)  # fmt: skip
    return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def summarise(entries: dict, results: dict) -> list[dict]:
    """One row per entry: mean ± std over seeds and the per-run numbers."""
    rows = []
    for name, (_, note) in entries.items():
        runs = [r for r in results.get(name, []) if r]
        if not runs:
            continue
        acc = [r["eval/exact_accuracy"] for r in runs]
        rows.append(
            {
                "entry": name,
                "note": note,
                "seeds": len(runs),
                "parameters": runs[0]["parameters"],
                "exact_mean": statistics.mean(acc),
                "exact_std": statistics.stdev(acc) if len(acc) > 1 else float("nan"),
                "exact_per_seed": acc,
                "bootstrap_se_mean": statistics.mean(r["eval/exact_accuracy_se"] for r in runs),
                "cell_mean": statistics.mean(r["eval/cell_accuracy"] for r in runs),
                "cell_per_seed": [r["eval/cell_accuracy"] for r in runs],
                "steps_mean": statistics.mean(r["run"]["steps"] for r in runs),
                "train_minutes_mean": statistics.mean(r["run"]["train_minutes"] for r in runs),
                "solver_nstep_mean": _mean([r.get("solver/nstep_mean") for r in runs]),
                "solver_hit_max_fraction": _mean([r.get("solver/hit_max_fraction") for r in runs]),
                "halt_steps_mean": statistics.mean(r["act/halt_steps_mean"] for r in runs),
            }
        )
    return rows


def _std(xs: list | None) -> float:
    return statistics.stdev(xs) if xs and len(xs) > 1 else float("nan")


def _mean(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.mean(xs) if xs else None


def markdown(doc: dict) -> str:
    """The summary table with its provenance."""
    budget = f"{doc['minutes']:g} training minutes" if doc["study"] == "equal_budget" else f"{doc['steps']} steps"
    lines = [
        f"# Attractor study `{doc['study']}` (sudoku6, tiny, {budget} per run, 3 seeds)",
        "",
        f"Commit `{doc['commit']}`; {doc['machine']['cpu']}, {doc['machine']['cores']} cores, {doc['jobs']} runs at a "
        f"time with 1 thread each; command `{doc['command']}`.",
        "",
        "| entry | params | test exact acc. (mean ± std, n) | per seed | bootstrap s.e. | cell acc. (mean ± std) | "
        "steps | solver evals / step | solves at max_iter | halt step |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in doc["rows"]:
        per = ", ".join(f"{100 * a:.1f}" for a in r["exact_per_seed"])
        nstep = f"{r['solver_nstep_mean']:.1f}" if r["solver_nstep_mean"] is not None else "–"
        hit = f"{100 * r['solver_hit_max_fraction']:.0f}%" if r["solver_hit_max_fraction"] is not None else "–"
        lines.append(
            f"| {r['entry']} | {r['parameters'] / 1e6:.3f}M | "
            f"**{100 * r['exact_mean']:.1f} ± {100 * r['exact_std']:.1f}** (n={r['seeds']}) | {per} | "
            f"{100 * r['bootstrap_se_mean']:.1f} | "
            f"{100 * r['cell_mean']:.1f} ± {100 * _std(r.get('cell_per_seed')):.1f} | "
            f"{r['steps_mean']:.0f} | {nstep} | {hit} | {r['halt_steps_mean']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def plot(doc: dict, path: str) -> None:
    """Mean ± std test exact and cell accuracy per entry, each seed as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = doc["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(max(9, 2.2 * len(rows)), 4.5))
    x = list(range(len(rows)))
    colors = ["tab:red" if r["entry"].startswith("attractor") else "tab:blue" for r in rows]
    for ax, key, label in ((axes[0], "exact", "test exact accuracy (%)"), (axes[1], "cell", "test cell accuracy (%)")):
        per = [r.get(f"{key}_per_seed", []) for r in rows]
        mean = [100 * statistics.mean(p) if p else 0.0 for p in per]
        std = [100 * statistics.stdev(p) if len(p) > 1 else 0.0 for p in per]
        ax.bar(x, mean, yerr=std, color=colors, alpha=0.6, capsize=4)
        for i, p in enumerate(per):
            ax.scatter([i] * len(p), [100 * a for a in p], color="k", s=10, zorder=3)
        ax.set_xticks(x, [f"{r['entry']}\n{r['parameters'] / 1e6:.2f}M" for r in rows], fontsize=7, rotation=20)
        ax.set(ylabel=label)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"{doc['study']}: mean ± std over seeds (dots: seeds), commit {doc['commit']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study", choices=["equal_budget", "depth"])
    p.add_argument("--minutes", type=float, default=4.0, help="equal_budget: training-loop minutes per run")
    p.add_argument("--steps", type=int, default=400, help="depth: optimiser steps per run")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--entries", nargs="+", help="only these entries (default: all)")
    p.add_argument("--jobs", type=int, default=1, help="runs at once (1 thread each)")
    p.add_argument("--runs", default="runs/attractor_study")
    p.add_argument("--out", help="write OUT.json, OUT.md and OUT.png")
    p.add_argument("--replot", help="only redraw OUT.png from OUT.json")
    p.add_argument(
        "--finished-only",
        action="store_true",
        help="run nothing: summarise the runs already finished in --runs (an interrupted study)",
    )
    args = p.parse_args()
    if args.replot:
        plot(json.loads(Path(args.replot + ".json").read_text()), args.replot + ".png")
        return
    entries = EQUAL_BUDGET if args.study == "equal_budget" else DEPTH
    if args.entries:
        unknown = set(args.entries) - set(entries)
        if unknown:
            raise SystemExit(f"error: unknown entries {sorted(unknown)}; known: {sorted(entries)}")
        entries = {k: v for k, v in entries.items() if k in args.entries}
    commit = git_commit()  # now: the tree may change while the study runs
    jobs = [(name, over, seed) for seed in args.seeds for name, (over, _) in entries.items()]
    results: dict[str, list] = {}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(run_one, n, o, s, args): n for n, o, s in jobs}
        for fut, name in futures.items():
            results.setdefault(name, []).append(fut.result())
    doc = {
        "study": args.study,
        "minutes": args.minutes,
        "steps": args.steps,
        "jobs": args.jobs,
        "seeds": args.seeds,
        "commit": commit,
        "machine": machine(),
        "command": "python " + " ".join(sys.argv),
        "rows": summarise(entries, results),
        "runs": {n: [r for r in rs if r] for n, rs in results.items()},
    }
    text = markdown(doc)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out + ".json").write_text(json.dumps(doc, indent=1))
        Path(args.out + ".md").write_text(text)
        plot(doc, args.out + ".png")


if __name__ == "__main__":
    main()
