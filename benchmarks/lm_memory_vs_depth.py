r"""LM experiment 3: training memory against recurrence depth, Parcae (unrolled) vs Attractor (implicit).

    python benchmarks/lm_memory_vs_depth.py --out benchmarks/results/lm_memory_vs_depth_cpu.json \
        --png benchmarks/results/lm_memory_vs_depth_cpu.png
    python benchmarks/lm_memory_vs_depth.py --device cuda --size small --out ... --png ...

For each depth ``d`` in ``--depths``, one training step (forward + backward) of each variant at size ``--size``:

* ``parcae-unrolled``: ``d`` recurrent steps, backprop through all of them (``bptt_steps = d``);
* ``parcae-bptt4``: ``d`` steps, backprop through the last 4 (Parcae's training recipe);
* ``attractor``: exactly ``d`` Anderson iterations (``min_iter = max_iter = d``, ``tol = 0``), the default
  backward (the authors' Neumann-1 correction ``u = v + Jᵀv``);
* ``attractor-phantom``: the same with the phantom backward (k = 2).

Memory is the bytes autograd saves for backward (distinct storages, `equilibrium.profiling.SavedTensorBytes`) and,
on CUDA, the peak allocated bytes of the step (``torch.cuda.max_memory_allocated`` above the model and batch).
The paper's Figure 5: flat for the implicit model, linear for the unrolled one.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

from equilibrium.profiling import SavedTensorBytes
from recursive_models.lm.registry import build_lm

VARIANTS = {
    "parcae-unrolled": lambda d: ("parcae", {"bptt_steps": d}),
    "parcae-bptt4": lambda d: ("parcae", {"bptt_steps": 4}),
    "attractor": lambda d: ("attractor", {"solver": {"max_iter": d, "min_iter": d, "tol": 0.0}}),
    "attractor-phantom": lambda d: (
        "attractor",
        {"solver": {"max_iter": d, "min_iter": d, "tol": 0.0, "backward": "phantom"}},
    ),
}


def measure(name: str, depth: int, args) -> dict:
    family, over = VARIANTS[name](depth)
    torch.manual_seed(0)
    model = build_lm(family, args.size, vocab_size=args.vocab, seq_len=args.seq_len, **over).to(args.device).train()
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, args.vocab, (args.batch, args.seq_len), generator=g).to(args.device)
    out = {}
    with SavedTensorBytes() as saved:
        res = model(x, x, iters=depth)
    out["saved_mib"] = saved.bytes / 2**20
    res["loss"].backward()
    if args.device.startswith("cuda"):
        model.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        model(x, x, iters=depth)["loss"].backward()
        torch.cuda.synchronize()
        out["peak_mib"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    out["solver_nstep"] = float(res["solver/nstep"])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depths", type=int, nargs="+", default=[2, 4, 8, 16, 32, 64])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS))
    p.add_argument("--size", default="tiny")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out")
    p.add_argument("--png")
    args = p.parse_args()
    res = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__, "device": args.device,
           "size": args.size, "batch": args.batch, "seq_len": args.seq_len, "command": " ".join(sys.argv),
           "results": {}}  # fmt: skip
    for name in args.variants:
        res["results"][name] = {d: measure(name, d, args) for d in args.depths}
        print(json.dumps({name: res["results"][name]}), flush=True)
    for name, rows in res["results"].items():
        lo, hi = rows[min(rows)]["saved_mib"], rows[max(rows)]["saved_mib"]
        res.setdefault("ratio_max_over_min_depth", {})[name] = hi / lo
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        key = "peak_mib" if args.device.startswith("cuda") else "saved_mib"
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for name, rows in res["results"].items():
            ds = sorted(rows)
            ax.plot(ds, [rows[d][key] for d in ds], marker="o", label=name)
        ax.set(xscale="log", xlabel="recurrence depth / solver iterations",
               ylabel=("peak allocated" if key == "peak_mib" else "saved for backward") + " (MiB)",
               title=f"training memory vs depth ({args.size}, {args.device})")  # fmt: skip
        ax.set_xticks(args.depths, [str(d) for d in args.depths])
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)


if __name__ == "__main__":
    main()
