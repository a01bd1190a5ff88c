r"""LM experiments 1, 2 and 4: perplexity at equal parameters and tokens, test-time iterations, solver iterations.

    python benchmarks/lm_compare.py --out benchmarks/results/lm_compare_cpu.json \
        --png benchmarks/results/lm_compare_cpu.png
    python benchmarks/lm_compare.py --families gpt attractor --steps 200 trainer.batch_size=8   # quicker
    python benchmarks/lm_compare.py --size small --device cuda --out ... --png ...             # on a GPU

Trains every family with ``python -m recursive_models.lm.train``'s recipe and the same seed, data, batch and
steps (so the same training tokens), then scores each checkpoint on the same validation windows; for the
recurrent families also at test-time depth / solver budget ``T`` in ``--iters`` (paper Figure 7: ``T=0``
decodes the Attractor's proposal, runs Parcae's prelude -> coda). Prints and writes JSON; the PNG shows the
training curves, the final perplexities and perplexity against ``T``. Extra ``key=value`` arguments are hydra
overrides applied to every run.
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

from recursive_models.lm.config import register_lm_configs
from recursive_models.lm.data import TokenDataset
from recursive_models.lm.trainer import evaluate_lm, load_lm_checkpoint, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", nargs="+", default=["gpt", "parcae", "deq", "attractor"])
    p.add_argument("--size", default="tiny")
    p.add_argument("--steps", type=int)
    p.add_argument("--device", default="cpu")
    p.add_argument("--iters", type=int, nargs="+", default=[0, 1, 2, 4, 8, 16])
    p.add_argument("--iters-batches", type=int, default=20, help="validation batches per T")
    p.add_argument("--runs", default="runs/lm_compare")
    p.add_argument("--out")
    p.add_argument("--png")
    p.add_argument("--replot", help="only redraw --png from this results JSON")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    if args.replot:
        plot(json.loads(Path(args.replot).read_text()), args.png)
        return
    register_lm_configs()

    results = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
               "threads": torch.get_num_threads(), "device": args.device, "size": args.size,
               "command": " ".join(sys.argv), "families": {}}  # fmt: skip
    for fam in args.families:
        over = [f"model={fam}", f"size={args.size}", f"trainer.device={args.device}",
                f"trainer.out_dir={args.runs}/{fam}-{args.size}", *args.overrides]  # fmt: skip
        if args.steps:
            over.append(f"trainer.steps={args.steps}")
        with initialize_config_module("recursive_models.lm.conf", version_base="1.3"):
            cfg = compose("config", overrides=over)
        t0 = time.time()
        res = train(cfg)
        results["threads"] = torch.get_num_threads()  # after train(), which applies trainer.threads
        rows = [json.loads(ln) for ln in Path(cfg.trainer.out_dir, "metrics.jsonl").read_text().splitlines()]
        entry = {
            "parameters": res["parameters"],
            "val_ppl": res["val/ppl"],
            "val_loss": res["val/loss"],
            "val_tokens": res["val/tokens"],
            "train_minutes": (time.time() - t0) / 60,
            "curve": [(r["step"], r["train/loss"]) for r in rows if "train/loss" in r],
            "solver_curve": [(r["step"], r["solver/nstep"]) for r in rows if "solver/nstep" in r],
            "final_stats": {k: v for k, v in res.items() if k.startswith("solver/") or k == "depth"},
            "checkpoint": res["checkpoint"],
            "tokens_seen": cfg.trainer.steps * cfg.trainer.batch_size * cfg.trainer.seq_len,
        }
        if fam != "gpt":
            model, meta = load_lm_checkpoint(res["checkpoint"], args.device)
            val = TokenDataset(Path(meta["data"]["folder"]), "validation")
            sweep = {}
            for t in args.iters:
                m = evaluate_lm(model, val, batch_size=cfg.trainer.eval_batch_size, seq_len=cfg.trainer.seq_len,
                                iters=t, max_batches=args.iters_batches, device=args.device)  # fmt: skip
                sweep[t] = {"ppl": m["val/ppl"], **{k: v for k, v in m.items() if k.startswith("solver/")}}
            conv = evaluate_lm(model, val, batch_size=cfg.trainer.eval_batch_size, seq_len=cfg.trainer.seq_len,
                               max_batches=args.iters_batches, device=args.device)  # fmt: skip
            entry["iters_sweep"] = sweep
            entry["iters_default_ppl"] = conv["val/ppl"]
        results["families"][fam] = entry
        print(json.dumps({fam: {k: v for k, v in entry.items() if k not in ("curve", "solver_curve")}}), flush=True)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.png:
        plot(results, args.png)


COLORS = {"gpt": "C0", "parcae": "C1", "deq": "C2", "attractor": "C3"}  # one colour per family in every panel


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fams = results["families"]
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.2))
    for name, e in fams.items():
        steps, losses = zip(*e["curve"], strict=True)
        axes[0].plot(steps, losses, color=COLORS.get(name), label=f"{name} ({e['parameters'] / 1e6:.2f}M)")
    axes[0].set(xlabel="step", ylabel="train loss (nats/token)", title="training")
    axes[0].legend()
    names = list(fams)
    axes[1].bar(names, [fams[n]["val_ppl"] for n in names], color=[COLORS.get(n, "C7") for n in names])
    for i, n in enumerate(names):
        axes[1].text(i, fams[n]["val_ppl"], f"{fams[n]['val_ppl']:.1f}", ha="center", va="bottom")
    axes[1].set(ylabel="validation perplexity", title="equal parameters and tokens")
    for name, e in fams.items():
        if "iters_sweep" in e:
            sweep = {int(t): v for t, v in e["iters_sweep"].items()}  # JSON keys are strings
            ts = sorted(sweep)
            axes[2].plot(ts, [sweep[t]["ppl"] for t in ts], marker="o", color=COLORS.get(name), label=name)
    axes[2].set(xscale="symlog", yscale="log", xlabel="test-time iterations T", ylabel="validation perplexity",
                title="perplexity vs test-time iterations")  # fmt: skip
    axes[2].legend()
    for name, e in fams.items():
        if e.get("solver_curve") and name in ("deq", "attractor"):
            steps, nstep = zip(*e["solver_curve"], strict=True)
            axes[3].plot(steps, nstep, color=COLORS.get(name), label=name)
    axes[3].set(xlabel="step", ylabel="solver iterations (mean)", title="solver iterations over training")
    axes[3].legend()
    fig.suptitle(f"LM track, size {results['size']}, {results['device']} ({results['machine']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
