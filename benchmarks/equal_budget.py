r"""Equal-budget comparison: every puzzle model trains for the same wall time (or FLOPs) on the same device.

    python benchmarks/equal_budget.py --task sudoku6 --minutes 10 \
        --out benchmarks/results/equal_budget_sudoku6_cpu.json --png benchmarks/results/equal_budget_sudoku6_cpu.png
    python benchmarks/equal_budget.py --task sudoku6 --minutes 1 --models trm attractor     # a quick look
    python benchmarks/equal_budget.py --task sudoku-extreme --size 7m --device cuda --minutes 20 \
        --out benchmarks/results/equal_budget_sudoku-extreme_7m_h100.json                    # on a GPU
    python benchmarks/equal_budget.py --task sudoku6 --flops 2e14                            # a FLOP budget

Each model runs ``python -m recursive_models.train model=M size=S task=T trainer.max_minutes=B`` in its own process
(one after another, so they never share the CPU or GPU, and each process's peak memory is its own), with the
size preset's recipe and the same seed and data. The budget counts the training loop only; the final evaluation
on the full test split is outside it. Prints a Markdown table (exact accuracy +- bootstrap s.e., steps, training
samples, samples/s, measured FLOPs, peak memory) and writes JSON; the PNG plots training exact accuracy against
wall time and against FLOPs for every model (from each run's metrics.jsonl) next to the final test accuracies.
Extra ``key=value`` arguments are hydra overrides given to every run (e.g. ``trainer.batch_size=32``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quickstart import machine  # benchmarks/ is a folder of scripts, not a package

MODELS = ("hrm", "trm", "attractor", "transformer")
UNLIMITED_STEPS = 10**9  # the budget ends the run, not the step count


def run_model(model: str, args: argparse.Namespace, out_dir: Path) -> dict:
    """Train ``model`` under the budget in a fresh process; its results.json plus the curve and the command."""
    cmd = [
        sys.executable, "-m", "recursive_models.train", f"model={model}", f"size={args.size}", f"task={args.task}",
        f"trainer.device={args.device}", f"trainer.out_dir={out_dir}", f"trainer.steps={UNLIMITED_STEPS}",
        f"trainer.seed={args.seed}", "trainer.progress=false", "trainer.checkpoint_interval=0",
    ]  # fmt: skip
    if args.minutes is not None:
        cmd.append(f"trainer.max_minutes={args.minutes}")
    if args.flops is not None:
        cmd.append(f"trainer.max_flops={args.flops}")
    cmd += args.overrides
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if proc.returncode != 0:
        raise SystemExit(f"error: {model} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads((out_dir / "results.json").read_text())
    rows = [json.loads(ln) for ln in (out_dir / "metrics.jsonl").read_text().splitlines()]
    result["curve"] = [
        (r["train/loop_minutes"], r.get("compute/flops"), r["train/exact_accuracy"], r["train/loss"])
        for r in rows
        if "train/loop_minutes" in r
    ]
    result["command"] = " ".join(cmd[1:])
    result["process_minutes"] = (time.time() - t0) / 60
    return result


def table_rows(results: dict[str, dict]) -> list[dict]:
    """One flat row per model, in the order run."""
    rows = []
    for model, r in results.items():
        run = r["run"]
        mem = run.get("peak_memory_bytes") or run.get("peak_rss_bytes")
        rows.append(
            {
                "model": model,
                "parameters": r["parameters"],
                "exact_accuracy": r["eval/exact_accuracy"],
                "exact_accuracy_se": r["eval/exact_accuracy_se"],
                "cell_accuracy": r["eval/cell_accuracy"],
                "test_puzzles": r["eval/count"],
                "steps": run["steps"],
                "samples": run["samples"],
                "train_minutes": run["train_minutes"],
                "samples_per_s": run["samples"] / max(60 * run["train_minutes"], 1e-9),
                "train_flops": run["train_flops"],
                "stopped_by": run["stopped_by"],
                "peak_memory_mib": mem / 2**20 if mem else None,
                "memory_kind": "cuda allocated" if run.get("peak_memory_bytes") else "process RSS",
                "solver_nstep_mean": run.get("solver_nstep_mean"),
            }
        )
    return rows


def markdown(rows: list[dict]) -> str:
    """The comparison as a Markdown table."""
    head = "| model | params | test exact acc. | cell acc. | steps | samples | samples/s | train FLOPs | peak mem. |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        mem = f"{r['peak_memory_mib']:.0f} MiB" if r["peak_memory_mib"] else "n/a"
        flops = f"{r['train_flops']:.2e}" if r["train_flops"] else "n/a"
        lines.append(
            f"| {r['model']} | {r['parameters'] / 1e6:.2f}M | {100 * r['exact_accuracy']:.1f}% "
            f"± {100 * r['exact_accuracy_se']:.1f} | {100 * r['cell_accuracy']:.1f}% | {r['steps']} | "
            f"{r['samples']} | {r['samples_per_s']:.0f} | {flops} | {mem} |"
        )
    return "\n".join(lines)


def budget_text(doc: dict) -> str:
    """``10 min`` or ``2e+14 FLOPs``."""
    b = doc["budget"]
    return f"{b['minutes']:g} min" if b["minutes"] else f"{b['flops']:.2g} FLOPs"


def plot(doc: dict, path: str) -> None:
    """Training exact accuracy against wall time and FLOPs, and the final test accuracies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for model, r in doc["results"].items():
        curve = r["curve"]
        minutes = [c[0] for c in curve]
        acc = [c[2] for c in curve]
        (line,) = axes[0].plot(minutes, acc, label=model)
        if all(c[1] for c in curve):
            axes[1].plot([c[1] for c in curve], acc, color=line.get_color(), label=model)
    budget = budget_text(doc)
    axes[0].set(xlabel="training wall time (min)", ylabel="train exact accuracy (ACT-halted samples)")
    axes[1].set(xlabel="training FLOPs (measured)", xscale="log", ylabel="train exact accuracy")
    rows = doc["rows"]
    x = range(len(rows))
    axes[2].bar(
        x,
        [100 * r["exact_accuracy"] for r in rows],
        yerr=[100 * r["exact_accuracy_se"] for r in rows],
        color=[axes[0].lines[i].get_color() for i in x],
        capsize=4,
    )
    axes[2].set_xticks(list(x), [f"{r['model']}\n{r['parameters'] / 1e6:.2f}M" for r in rows])
    axes[2].set(ylabel="test exact accuracy (%)", title="final test accuracy (± bootstrap s.e.)")
    for ax in axes[:2]:
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(f"{doc['task']} {doc['size']}: equal budget of {budget} per model on {doc['device_name']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="sudoku6")
    p.add_argument("--size", default="tiny")
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--minutes", type=float, help="training wall-time budget per model")
    p.add_argument("--flops", type=float, help="training FLOP budget per model (measured)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", default="runs/equal_budget")
    p.add_argument("--out", help="write the results JSON here")
    p.add_argument("--png")
    p.add_argument("--replot", help="only redraw --png from this results JSON")
    p.add_argument("overrides", nargs="*", help="hydra overrides for every run")
    args = p.parse_args()
    if args.replot:
        plot(json.loads(Path(args.replot).read_text()), args.png)
        return
    if (args.minutes is None) == (args.flops is None):
        p.error("give exactly one budget: --minutes or --flops")
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown:
        p.error(f"unknown model(s) {unknown}; choose from {list(MODELS)}")

    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = {}
    for model in tqdm(args.models, desc="models", unit="model"):
        out_dir = Path(args.runs) / f"{args.task}-{args.size}-{stamp}" / model
        results[model] = run_model(model, args, out_dir)
        r = results[model]
        tqdm.write(
            f"{model}: {r['run']['steps']} steps, test exact accuracy {r['eval/exact_accuracy']:.3f}", file=sys.stderr
        )
    rows = table_rows(results)
    doc = {
        "task": args.task,
        "size": args.size,
        "budget": {"minutes": args.minutes, "flops": args.flops},
        "device_name": next(iter(results.values()))["run"]["device"],
        "machine": machine(),
        "command": "python benchmarks/equal_budget.py " + " ".join(sys.argv[1:]),
        "rows": rows,
        "results": results,
    }
    print(markdown(rows))
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
        Path(args.out).with_suffix(".md").write_text(
            f"# Equal budget: {args.task} {args.size}, {budget_text(doc)} per model, {doc['device_name']}\n\n"
            f"`{doc['command']}`\n\nMachine: {doc['machine']}\n\n{markdown(rows)}\n"
        )
    if args.png:
        plot(doc, args.png)


if __name__ == "__main__":
    main()
