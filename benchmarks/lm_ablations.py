r"""LM experiment 5: Attractor LM ablations (proposal injection, solver initialisation, backward mode).

    python benchmarks/lm_ablations.py --out benchmarks/results/lm_ablations_cpu.json \
        --png benchmarks/results/lm_ablations_cpu.png
    python benchmarks/lm_ablations.py --steps 200 --only injection      # one group, shorter runs

Each variant changes one option of the default Attractor LM (additive injection, proposal init, one-step backward)
and trains with the same recipe, seed and tokens as ``python -m recursive_models.lm.train model=attractor``.
Reported per variant: validation perplexity, mean solver iterations and the fraction of positions converged at
evaluation, bytes saved for backward by one training step, and the mean training step time.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_module

from equilibrium.profiling import SavedTensorBytes
from recursive_models.lm.config import register_lm_configs
from recursive_models.lm.trainer import train

GROUPS = {
    "injection": {"additive": {}, "initial": {"injection": "initial"}, "concat": {"injection": "concat"}},
    "init": {"proposal": {}, "zero": {"solver_init": "zero"}, "gaussian": {"solver_init": "gaussian"}},
    "backward": {"onestep": {}, "phantom": {"solver": {"backward": "phantom"}}, "ift": {"solver": {"backward": "ift"}}},
}


def _flatten(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += _flatten(v, f"{prefix}{k}.")
        else:
            out.append(f"+model.overrides.{prefix}{k}={v}")
    return out


def plot(res: dict, path: str) -> None:
    """One bar panel per ablation group: perplexity, labelled with mean iterations and saved memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = res["groups"]
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 4.2), squeeze=False)
    for ax, (group, variants) in zip(axes[0], groups.items(), strict=True):
        names = list(variants)
        vals = [variants[n]["val_ppl"] for n in names]
        ax.bar(names, vals, color=[f"C{i}" for i in range(len(names))])
        for i, n in enumerate(names):
            v = variants[n]
            label = f"{vals[i]:.1f}\n{v['solver_nstep']:.1f} it\n{v['saved_mib']:.0f} MiB"
            ax.text(i, vals[i], label, ha="center", va="bottom", fontsize=8)
        ax.set_yscale("log")  # one failed variant (perplexity ~500) would flatten the others on a linear axis
        ax.set_ylim(min(vals) * 0.5, max(vals) * 1.6)
        ax.set(title=group, ylabel="validation perplexity (log)")
    fig.suptitle(f"Attractor LM ablations ({res['size']}, {res['device']}): perplexity, iterations, saved memory")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=list(GROUPS), default=list(GROUPS))
    p.add_argument("--steps", type=int)
    p.add_argument("--size", default="tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--runs", default="runs/lm_ablations")
    p.add_argument("--out")
    p.add_argument("--png")
    p.add_argument("--replot", help="only redraw --png from this results JSON")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    if args.replot:
        plot(json.loads(Path(args.replot).read_text()), args.png)
        return
    register_lm_configs()
    res = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__, "device": args.device,
           "size": args.size, "command": " ".join(sys.argv), "groups": {}}  # fmt: skip
    done: dict[str, dict] = {}  # the default variant appears in every group: train it once
    for group in args.only:
        for variant, over in GROUPS[group].items():
            key = json.dumps(over, sort_keys=True)
            if key not in done:
                cfg_over = ["model=attractor", f"size={args.size}", f"trainer.device={args.device}",
                            f"trainer.out_dir={args.runs}/{group}-{variant}", *_flatten(over),
                            *args.overrides]  # fmt: skip
                if args.steps:
                    cfg_over.append(f"trainer.steps={args.steps}")
                with initialize_config_module("recursive_models.lm.conf", version_base="1.3"):
                    cfg = compose("config", overrides=cfg_over)
                times = []
                last = [time.perf_counter()]

                def tick(step: int, times=times, last=last) -> None:
                    now = time.perf_counter()
                    times.append(now - last[0])
                    last[0] = now

                r = train(cfg, callback=tick)
                from recursive_models.lm.trainer import load_lm_checkpoint

                model, _ = load_lm_checkpoint(r["checkpoint"], args.device)
                model.train()
                x = torch.randint(0, model.config.vocab_size, (cfg.trainer.batch_size, cfg.trainer.seq_len),
                                  generator=torch.Generator().manual_seed(0)).to(args.device)  # fmt: skip
                with SavedTensorBytes() as saved:
                    out = model(x, x)
                out["loss"].backward()
                steady = sorted(times[len(times) // 10 :])  # skip warm-up; median is robust to load spikes
                done[key] = {
                    "val_ppl": r["val/ppl"],
                    "solver_nstep": r.get("solver/nstep"),
                    "converged_frac": r.get("solver/converged_frac"),
                    "saved_mib": saved.bytes / 2**20,
                    "step_s_median": steady[len(steady) // 2] if steady else None,
                    "parameters": r["parameters"],
                }
            res["groups"].setdefault(group, {})[variant] = done[key]
            print(json.dumps({group: {variant: done[key]}}), flush=True)
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.png:
        plot(res, args.png)


if __name__ == "__main__":
    main()
