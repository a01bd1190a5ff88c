r"""LM experiment 5 over seeds: Attractor LM ablations (proposal injection, solver start, backward mode).

    python benchmarks/lm_ablations.py --seeds 0 1 2 --out benchmarks/results/lm_ablations_cpu trainer.threads=1
    python benchmarks/lm_ablations.py --only injection --seeds 0 --steps 200 --out /tmp/abl   # one group, quicker
    python benchmarks/lm_ablations.py --summarize benchmarks/results/lm_ablations_cpu       # tables and plot only

Each variant changes one option of the default Attractor LM (the authors' map: additive injection, the solver
started at the proposal, the Neumann-1 backward) and trains with the recipe, seed and tokens of
``python -m recursive_models.lm.train model=attractor``. Per (variant, seed), written to
``OUT/runs/<variant>-s<seed>.json`` as soon as it finishes (a rerun skips finished runs): validation perplexity,
mean solver iterations and the fraction of positions converged at evaluation, bytes saved for backward by one
training step, and the median training step time. The default variant is trained once per seed and shared by
the groups. ``OUT.json`` / ``OUT.md`` / ``OUT.png``: mean ± std over seeds per variant.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_module
from seeded_study import load_runs, mean_std, open_study, read_study, run_seeded

from equilibrium.profiling import SavedTensorBytes
from recursive_models.checkpoint import git_commit
from recursive_models.lm.config import register_lm_configs
from recursive_models.lm.trainer import evaluate_lm, load_lm_checkpoint, train

#: variant -> overrides of the default Attractor LM (the default itself is "default")
VARIANTS = {
    "default": {},
    "injection-initial": {"injection": "initial"},
    "injection-concat": {"injection": "concat"},
    "init-zero": {"solver_init": "zero"},
    "init-gaussian": {"solver_init": "gaussian"},
    "backward-onestep": {"solver": {"backward": "onestep"}},
    "backward-phantom": {"solver": {"backward": "phantom", "phantom_steps": 3}},
    "backward-ift": {"solver": {"backward": "ift"}},
}
GROUPS = {
    "injection": {"additive (default)": "default", "initial only": "injection-initial", "concat": "injection-concat"},
    "init": {"proposal (default)": "default", "zero": "init-zero", "gaussian": "init-gaussian"},
    "backward": {"neumann-1 (default)": "default", "onestep u=v": "backward-onestep", "phantom k=3": "backward-phantom",
                 "ift": "backward-ift"},
}  # fmt: skip


def _flatten(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += _flatten(v, f"{prefix}{k}.")
        else:
            out.append(f"+model.overrides.{prefix}{k}={v}")
    return out


def run_one(variant: str, seed: int, args: argparse.Namespace) -> dict:
    """Train and measure one (variant, seed)."""
    over = ["model=attractor", f"size={args.size}", f"trainer.device={args.device}", f"trainer.seed={seed}",
            f"trainer.out_dir={args.runs}/{variant}-s{seed}", "trainer.progress=false",
            *_flatten(VARIANTS[variant]), *args.overrides]  # fmt: skip
    if args.steps:
        over.append(f"trainer.steps={args.steps}")
    with initialize_config_module("recursive_models.lm.conf", version_base="1.3"):
        cfg = compose("config", overrides=over)
    times: list[float] = []
    last = [time.perf_counter()]

    def tick(step: int) -> None:
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    commit = git_commit()
    r = train(cfg, callback=tick)
    model, meta = load_lm_checkpoint(r["checkpoint"], args.device)
    model.train()
    x = torch.randint(0, model.config.vocab_size, (cfg.trainer.batch_size, cfg.trainer.seq_len),
                      generator=torch.Generator().manual_seed(0)).to(args.device)  # fmt: skip
    with SavedTensorBytes() as saved:
        out = model(x, x)
    out["loss"].backward()
    steady = sorted(times[len(times) // 10 :])  # skip warm-up; the median is robust to load spikes
    from recursive_models.lm.data import TokenDataset

    val = TokenDataset(Path(meta["data"]["folder"]), "validation")
    t0 = evaluate_lm(model, val, batch_size=cfg.trainer.eval_batch_size, seq_len=cfg.trainer.seq_len, iters=0,
                     max_batches=args.iters_batches, device=args.device)  # fmt: skip
    return {
        "variant": variant, "seed": seed, "overrides": over, "commit": commit, "parameters": r["parameters"],
        "val_ppl": r["val/ppl"], "t0_ppl": t0["val/ppl"], "solver_nstep": r.get("solver/nstep"),
        "converged_positions": r.get("solver/converged_positions"), "saved_mib": saved.bytes / 2**20,
        "step_s_median": steady[len(steady) // 2] if steady else None, "checkpoint": r["checkpoint"],
    }  # fmt: skip


def summarize(folder: Path) -> dict:
    entries = load_runs(folder)
    by: dict[str, list[dict]] = {}
    for e in entries:
        by.setdefault(e["variant"], []).append(e)
    variants = {
        v: {"seeds": sorted(e["seed"] for e in es), "commits": sorted({e["commit"] for e in es}),
            **{k: mean_std([e[k] for e in es]) for k in ("val_ppl", "t0_ppl", "solver_nstep", "converged_positions",
                                                      "saved_mib", "step_s_median")}}
        for v, es in by.items()
    }  # fmt: skip
    return {"variants": variants, "groups": GROUPS, "n_runs": len(entries)}


def markdown(summary: dict, meta: dict) -> str:
    lines = [f"# Attractor LM ablations ({meta.get('size')}, {meta.get('device')}, {meta.get('machine')})", "",
             "Commands: " + "; ".join(f"`{c}`" for c in meta.get("commands", [])) + ". Mean ± std over seeds.", "",
             "| group | variant | seeds | val. perplexity | T=0 perplexity | iterations | positions converged "
             "| saved for backward | step time |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    v = summary["variants"]
    for group, members in GROUPS.items():
        for label, key in members.items():
            if key not in v:
                continue
            s = v[key]

            def f(ms: dict, d: int = 1, scale: float = 1.0) -> str:
                if not ms["n"]:
                    return ""
                if ms["n"] == 1:
                    return f"{scale * ms['mean']:.{d}f}"
                return f"{scale * ms['mean']:.{d}f} ± {scale * ms['std']:.{d}f}"

            lines.append(f"| {group} | {label} | {len(s['seeds'])} | {f(s['val_ppl'])} | {f(s['t0_ppl'])} "
                         f"| {f(s['solver_nstep'])} | {f(s['converged_positions'], 0, 100)}% | "
                         f"{f(s['saved_mib'])} MiB | {f(s['step_s_median'], 2)} s |")  # fmt: skip
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> None:
    """One bar panel per ablation group: perplexity (mean ± std over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    v = summary["variants"]
    fig, axes = plt.subplots(1, len(GROUPS), figsize=(5 * len(GROUPS), 4.2), squeeze=False)
    for ax, (group, members) in zip(axes[0], GROUPS.items(), strict=True):
        names = [n for n, k in members.items() if k in v]
        vals = [v[members[n]]["val_ppl"]["mean"] for n in names]
        errs = [v[members[n]]["val_ppl"]["std"] for n in names]
        ax.bar(names, vals, yerr=errs, capsize=4, color=[f"C{i}" for i in range(len(names))])
        ax.set_yscale("log")  # a failed variant would flatten the others on a linear axis
        ax.set(title=group, ylabel="validation perplexity (log)")
        ax.tick_params(axis="x", labelrotation=15)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=list(GROUPS), default=list(GROUPS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int)
    p.add_argument("--size", default="tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--iters-batches", type=int, default=20, help="validation batches for the T=0 perplexity")
    p.add_argument("--runs", default="runs/lm_ablations")
    p.add_argument("--out", help="results prefix: OUT/runs/*.json, OUT.json, OUT.md, OUT.png")
    p.add_argument("--summarize", help="only summarise the finished runs of this OUT")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    out = Path(args.summarize or args.out or "runs/lm_ablations_results")
    if not args.summarize:
        register_lm_configs()
        open_study(out, "benchmarks/lm_ablations.py", sys.argv[1:], size=args.size, device=args.device,
                   steps=args.steps)  # fmt: skip
        wanted = list(dict.fromkeys(k for g in args.only for k in GROUPS[g].values()))
        run_seeded(out, args.seeds, wanted, lambda variant, seed: run_one(variant, seed, args))
    meta = read_study(out)
    summary = summarize(out)
    summary["study"] = meta
    Path(f"{out}.json").write_text(json.dumps(summary, indent=2) + "\n")
    Path(f"{out}.md").write_text(markdown(summary, meta))
    if summary["variants"]:
        plot(summary, Path(f"{out}.png"))
    print(markdown(summary, meta))


if __name__ == "__main__":
    main()
