r"""LM experiments 1, 2 and 4 over seeds: perplexity per family, test-time iterations, solver iterations, FLOPs.

    python benchmarks/lm_compare.py --seeds 0 1 2 --out benchmarks/results/lm_compare_cpu \
        trainer.threads=1                                     # the CPU study (resumable; see below)
    python benchmarks/lm_compare.py --families gpt attractor --seeds 0 --steps 200 --out /tmp/quick
    python benchmarks/lm_compare.py --size small --device cuda --out benchmarks/results/lm_compare_cuda
    python benchmarks/lm_compare.py --summarize benchmarks/results/lm_compare_cpu   # tables and plot only

Every run trains one family (``--families``: ``gpt``, ``parcae``, ``deq``, ``deq-tied`` (Table 3's DEQ with the
tied unembedding), ``attractor``) with ``python -m recursive_models.lm.train``'s recipe at one seed; all runs
share the data, batch, steps (so the same training tokens) and size (parameters matched by the registry). Per
run, written to ``OUT/runs/<family>-s<seed>.json`` as soon as it finishes (a rerun skips finished runs, so an
interrupted study loses at most the run in flight):

* validation perplexity on ``--eval-batches`` fixed windows of the held-out works;
* for the recurrent families, perplexity at test-time depth / solver budget ``T`` in ``--iters`` (Figure 7;
  ``T=0`` decodes the Attractor's proposal, runs Parcae's prelude -> coda) and at the model's default, with the
  solver statistics (mean iterations, fraction of positions converged);
* the training curve and the solver iterations logged over training (Figure 6);
* training FLOPs: `torch.utils.flop_counter.FlopCounterMode` counts one training step (forward + backward) of
  the final model on a training-shaped batch at two solver budgets / depths ``k`` (tolerance 0, so exactly
  ``k``), which fits ``flops(k) = a + b·k``; the run's total is ``Σ_steps flops(k_step)`` with ``k_step`` the logged
  mean iterations (depth for Parcae), interpolated between log points. GPT's step is counted once. The counter
  runs on a copy, after training, so it cannot change the trajectory.

``OUT.json``, ``OUT.md`` and ``OUT.png`` summarise the finished runs: mean ± std over seeds (n given), parameter
counts, FLOPs ratios, and the paper's numbers beside ours. The commit of each run is recorded with it.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_module
from seeded_study import load_runs, mean_std, open_study, read_study, run_seeded
from torch.utils.flop_counter import FlopCounterMode

from recursive_models.checkpoint import git_commit
from recursive_models.lm.config import register_lm_configs
from recursive_models.lm.data import TokenDataset
from recursive_models.lm.trainer import evaluate_lm, load_lm_checkpoint, train

#: label -> (registry family, hydra overrides)
FAMILIES = {
    "gpt": ("gpt", []),
    "parcae": ("parcae", []),
    "deq": ("deq", []),
    "deq-tied": ("deq", ["+model.overrides.tie_head=true"]),
    "attractor": ("attractor", []),
}
SOLVER_FAMILIES = ("deq", "attractor")


def _flops_one_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, iters: int | None) -> int:
    """Matmul/attention FLOPs of one training step (forward + backward) of a copy of ``model``."""
    m = copy.deepcopy(model).train()
    with torch.random.fork_rng(), FlopCounterMode(display=False) as counter:
        torch.manual_seed(0)
        out = m(x, y, iters=iters)
        out["loss"].backward()
    return int(counter.get_total_flops())


def training_flops(ckpt: str, family: str, rows: list[dict], steps: int, batch: tuple[int, int], device: str) -> dict:
    """Total training FLOPs of a run from two counted steps and the logged iterations (module docstring)."""
    exact = {"solver": {"tol": 0.0}} if family in SOLVER_FAMILIES else {}
    model, _ = load_lm_checkpoint(ckpt, device, **exact)
    v = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, v, batch, generator=g).to(device)
    y = torch.randint(0, v, batch, generator=g).to(device)
    if family == "gpt":
        per = _flops_one_step(model, x, y, None)
        return {"total": per * steps, "per_step": per, "fit": None}
    k1, k2 = 4, 8
    f1, f2 = _flops_one_step(model, x, y, k1), _flops_one_step(model, x, y, k2)
    b = (f2 - f1) / (k2 - k1)
    a = f1 - b * k1
    logged = [(r["step"], r["solver/nstep"]) for r in rows if "solver/nstep" in r]
    total = 0.0
    for s in range(1, steps + 1):  # piecewise-linear iterations between log points
        k = _interp(logged, s)
        total += a + b * k
    return {"total": total, "per_step": total / steps, "fit": {"a": a, "b": b, "k": [k1, k2]}}


def _interp(points: list[tuple[int, float]], s: int) -> float:
    if s <= points[0][0]:
        return points[0][1]
    for (s0, k0), (s1, k1) in itertools.pairwise(points):
        if s0 <= s <= s1:
            return k0 + (k1 - k0) * (s - s0) / max(s1 - s0, 1)
    return points[-1][1]


def run_one(label: str, seed: int, args: argparse.Namespace) -> dict:
    """Train, evaluate and count one (family, seed) run; returns its entry."""
    family, extra = FAMILIES[label]
    out_dir = Path(args.runs) / f"{label}-{args.size}-s{seed}"
    over = [f"model={family}", f"size={args.size}", f"trainer.device={args.device}", f"trainer.seed={seed}",
            f"trainer.out_dir={out_dir}", "trainer.progress=false", *extra, *args.overrides]  # fmt: skip
    if args.steps:
        over.append(f"trainer.steps={args.steps}")
    if args.eval_batches:
        over.append(f"trainer.eval_batches={args.eval_batches}")
    with initialize_config_module("recursive_models.lm.conf", version_base="1.3"):
        cfg = compose("config", overrides=over)
    commit = git_commit()  # the code the run trains with
    t0 = time.time()
    res = train(cfg)
    minutes = (time.time() - t0) / 60
    rows = [json.loads(ln) for ln in Path(out_dir, "metrics.jsonl").read_text().splitlines()]
    t = cfg.trainer
    entry = {
        "family": family, "label": label, "seed": seed, "overrides": over, "commit": commit,
        "parameters": res["parameters"], "val_ppl": res["val/ppl"], "val_loss": res["val/loss"],
        "val_tokens": res["val/tokens"], "train_minutes": minutes, "tokens_seen": t.steps * t.batch_size * t.seq_len,
        "curve": [(r["step"], r["train/loss"]) for r in rows if "train/loss" in r],
        "solver_curve": [(r["step"], r["solver/nstep"]) for r in rows if "solver/nstep" in r],
        "final_stats": {k: v for k, v in res.items() if k.startswith("solver/") or k == "depth"},
        "checkpoint": res["checkpoint"],
    }  # fmt: skip
    model, meta = load_lm_checkpoint(res["checkpoint"], args.device)
    entry["non_embedding_parameters"] = model.num_params(non_embedding=True)
    if family != "gpt":
        val = TokenDataset(Path(meta["data"]["folder"]), "validation")
        sweep = {}
        for it in [*args.iters, None]:
            m = evaluate_lm(model, val, batch_size=t.eval_batch_size, seq_len=t.seq_len, iters=it,
                            max_batches=args.iters_batches, device=args.device)  # fmt: skip
            sweep["default" if it is None else str(it)] = {
                "ppl": m["val/ppl"],
                **{k: v for k, v in m.items() if k.startswith("solver/")},
            }
        entry["iters_sweep"] = sweep
    entry["flops"] = training_flops(res["checkpoint"], family, rows, t.steps, (t.batch_size, t.seq_len), args.device)
    return entry


# ---- summary ---------------------------------------------------------------------------------------------------
def summarize(folder: Path) -> dict:
    """Mean ± std per family over the finished runs in ``folder/runs``."""
    entries = load_runs(folder)
    by: dict[str, list[dict]] = {}
    for e in entries:
        by.setdefault(e["label"], []).append(e)
    fams = {}
    for label in [k for k in FAMILIES if k in by]:
        es = by[label]
        s = {
            "seeds": sorted(e["seed"] for e in es),
            "commits": sorted({e["commit"] for e in es}),
            "parameters": es[0]["parameters"],
            "non_embedding_parameters": es[0]["non_embedding_parameters"],
            "tokens_seen": es[0]["tokens_seen"],
            "val_ppl": mean_std([e["val_ppl"] for e in es]),
            "train_minutes": mean_std([e["train_minutes"] for e in es]),
            "flops": mean_std([e["flops"]["total"] for e in es]),
        }
        if es[0].get("solver_curve"):
            s["iters_start"] = mean_std([e["solver_curve"][0][1] for e in es])
            s["iters_end"] = mean_std([e["solver_curve"][-1][1] for e in es])
        if "iters_sweep" in es[0]:
            keys = list(es[0]["iters_sweep"])
            s["iters_sweep"] = {k: mean_std([e["iters_sweep"][k]["ppl"] for e in es]) for k in keys}
            d = [e["iters_sweep"]["default"] for e in es]
            for stat in ("solver/nstep", "solver/converged_positions", "solver/residual"):
                if stat in d[0]:
                    s[f"default_{stat.split('/')[1]}"] = mean_std([x[stat] for x in d])
            s["t0_over_default"] = mean_std([e["iters_sweep"]["0"]["ppl"] / e["iters_sweep"]["default"]["ppl"] - 1
                                        for e in es if "0" in e["iters_sweep"]])  # fmt: skip
        fams[label] = s
    summary = {"families": fams, "n_runs": len(entries)}
    if "attractor" in fams and "parcae" in fams:
        summary["flops_attractor_over_parcae"] = fams["attractor"]["flops"]["mean"] / fams["parcae"]["flops"]["mean"]
    if entries:
        e = entries[0]
        summary["machine"] = e.get("machine")
    return summary


def _f(ms: dict, digits: int = 1) -> str:
    return f"{ms['mean']:.{digits}f} ± {ms['std']:.{digits}f}" if ms["n"] > 1 else f"{ms['mean']:.{digits}f} (n=1)"


def markdown(summary: dict, meta: dict) -> str:
    fams = summary["families"]
    commits = sorted({c for s in fams.values() for c in s["commits"]})
    lines = [f"# LM experiments 1, 2, 4 ({meta.get('size')}, {meta.get('device')}, {meta.get('machine')})", "",
             "Commands: " + "; ".join(f"`{c}`" for c in meta.get("commands", [])) + f". Commits: {commits}.",
             "Mean ± std over seeds (n in the seeds column).", "",
             "| family | seeds | parameters (non-emb.) | val. perplexity | T=0 / default − 1 "
             "| solver iters (Parcae: depth) start → end | positions converged (default T) | training FLOPs |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for label, s in fams.items():
        it = f"{_f(s['iters_start'])} → {_f(s['iters_end'])}" if "iters_end" in s else ""
        conv = ""
        if "default_converged_positions" in s:
            c = s["default_converged_positions"]
            conv = _f({"mean": 100 * c["mean"], "std": 100 * c["std"], "n": c["n"]}) + "%"
        t0 = f"{100 * s['t0_over_default']['mean']:+.1f}%" if s.get("t0_over_default", {}).get("n") else ""
        params = f"{s['parameters'] / 1e6:.2f}M ({s['non_embedding_parameters'] / 1e6:.2f}M)"
        lines.append(f"| {label} | {len(s['seeds'])} | {params} | {_f(s['val_ppl'])} | {t0} | {it} | {conv} "
                     f"| {s['flops']['mean']:.3g} |")  # fmt: skip
    if "flops_attractor_over_parcae" in summary:
        lines += ["", f"Training FLOPs, Attractor / Parcae: {summary['flops_attractor_over_parcae']:.3f} "
                      "(paper: 25-31% fewer, i.e. 0.69-0.75)."]  # fmt: skip
    sweeps = {k: s["iters_sweep"] for k, s in fams.items() if "iters_sweep" in s}
    if sweeps:
        ts = list(next(iter(sweeps.values())))
        lines += ["", "Perplexity against test-time iterations T (mean ± std over seeds):", "",
                  "| family | " + " | ".join(f"T={t}" for t in ts) + " |", "|---|" + "---|" * len(ts)]  # fmt: skip
        for k, sw in sweeps.items():
            lines.append(f"| {k} | " + " | ".join(_f(sw[t]) for t in ts) + " |")
    return "\n".join(lines) + "\n"


COLORS = {"gpt": "C0", "parcae": "C1", "deq": "C2", "deq-tied": "C4", "attractor": "C3"}


def plot(folder: Path, summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = load_runs(folder)
    fams = summary["families"]
    fig, axes = plt.subplots(1, 4, figsize=(21, 4.4))
    for e in entries:
        steps, losses = zip(*e["curve"], strict=True)
        axes[0].plot(steps, losses, color=COLORS.get(e["label"]), alpha=0.6, lw=1,
                     label=e["label"] if e["seed"] == min(fams[e["label"]]["seeds"]) else None)  # fmt: skip
    axes[0].set(xlabel="step", ylabel="train loss (nats/token)", title="training (every seed)")
    axes[0].legend()
    names = list(fams)
    means = [fams[n]["val_ppl"]["mean"] for n in names]
    axes[1].bar(names, means, yerr=[fams[n]["val_ppl"]["std"] for n in names], capsize=4,
                color=[COLORS.get(n, "C7") for n in names])  # fmt: skip
    for i, mean in enumerate(means):
        axes[1].text(i, mean, f"{mean:.1f}", ha="center", va="bottom")
    axes[1].set(ylabel="validation perplexity", title="equal parameters and tokens (mean ± std)")
    for n, s in fams.items():
        if "iters_sweep" in s:
            ts = [t for t in s["iters_sweep"] if t != "default"]
            axes[2].errorbar([int(t) for t in ts], [s["iters_sweep"][t]["mean"] for t in ts],
                             yerr=[s["iters_sweep"][t]["std"] for t in ts], marker="o", color=COLORS.get(n), label=n,
                             capsize=3)  # fmt: skip
    axes[2].set(xscale="symlog", yscale="log", xlabel="test-time iterations T", ylabel="validation perplexity",
                title="perplexity vs T (internalization at T=0)")  # fmt: skip
    axes[2].legend()
    for e in entries:
        if e.get("solver_curve") and e["family"] in SOLVER_FAMILIES:
            steps, nstep = zip(*e["solver_curve"], strict=True)
            axes[3].plot(steps, nstep, color=COLORS.get(e["label"]), alpha=0.7, lw=1,
                         label=e["label"] if e["seed"] == min(fams[e["label"]]["seeds"]) else None)  # fmt: skip
    axes[3].set(xlabel="step", ylabel="solver iterations (batch mean)", title="solver iterations over training")
    axes[3].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--size", default="tiny")
    p.add_argument("--steps", type=int)
    p.add_argument("--device", default="cpu")
    p.add_argument("--iters", type=int, nargs="+", default=[0, 1, 2, 4, 8, 16])
    p.add_argument("--iters-batches", type=int, default=20, help="validation batches per T")
    p.add_argument("--eval-batches", type=int, help="validation batches for the headline perplexity")
    p.add_argument("--runs", default="runs/lm_compare", help="training run folders (checkpoints)")
    p.add_argument("--out", help="results folder prefix: OUT/runs/*.json, OUT.json, OUT.md, OUT.png")
    p.add_argument("--summarize", help="only summarise the finished runs of this OUT")
    p.add_argument("overrides", nargs="*", help="hydra overrides for every run, e.g. trainer.threads=1")
    args = p.parse_args()
    out = Path(args.summarize or args.out or "runs/lm_compare_results")
    if not args.summarize:
        register_lm_configs()
        study = open_study(out, "benchmarks/lm_compare.py", sys.argv[1:], size=args.size, device=args.device,
                           steps=args.steps)  # fmt: skip

        def one(label: str, seed: int) -> dict:
            entry = run_one(label, seed, args)
            entry["machine"], entry["threads"] = study["machine"], torch.get_num_threads()
            entry["torch"] = torch.__version__
            return entry

        # seed-major: an interrupted study has every family at the first seeds
        run_seeded(out, args.seeds, args.families, one,
                   brief=lambda e: {k: v for k, v in e.items() if k not in ("curve", "solver_curve")})  # fmt: skip
    meta = read_study(out)
    summary = summarize(out)
    summary["study"] = meta
    Path(f"{out}.json").write_text(json.dumps(summary, indent=2) + "\n")
    Path(f"{out}.md").write_text(markdown(summary, meta))
    if summary["families"]:
        plot(out, summary, Path(f"{out}.png"))
    print(markdown(summary, meta))


if __name__ == "__main__":
    main()
