"""Benchmark: training memory against solver depth (``max_iter``), per backward mode and for unrolled BPTT.

The paper's Figure 5 claim: with a fixed-point backward (one-step, phantom, IFT) the memory of a training
step does not depend on how many forward iterations ran, while backprop through the unrolled loop grows
linearly. For ``max_iter ∈ {2, 4, 8, 16, 32, 64}`` (``tol=0``, so every iteration runs) this measures

* the bytes autograd saves for backward (`equilibrium.profiling.SavedTensorBytes`), on any device;
* the peak allocation of forward + backward: ``torch.cuda.max_memory_allocated`` on CUDA, the torch
  profiler's allocation trace on CPU.

    python benchmarks/memory_vs_depth.py --png benchmarks/results/memory_vs_depth_cpu.png
    python benchmarks/memory_vs_depth.py --device cuda --dtype bf16 \
        --out benchmarks/results/memory_vs_depth_cuda_bf16.json --png benchmarks/results/memory_vs_depth_cuda_bf16.png

JSON goes to stdout (and ``--out``); the PNG plots saved-for-backward MiB against ``max_iter``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from equilibrium import BACKWARD_MODES, fixed_point
from equilibrium.profiling import SavedTensorBytes, peak_allocated_bytes

DEPTHS = (2, 4, 8, 16, 32, 64)
MODES = (*BACKWARD_MODES, "bptt")


def make_problem(shape: tuple[int, int, int], device: torch.device, seed: int = 0):
    """``f(z) = tanh(z Wᵀ + x Uᵀ)`` with W at spectral norm 0.9; returns (params, x, make_f)."""
    b, t, h = shape
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(h, h, generator=gen)
    w = (w * 0.9 / torch.linalg.matrix_norm(w, ord=2)).to(device).requires_grad_()
    u = (torch.randn(h, h, generator=gen) / h**0.5).to(device).requires_grad_()
    x = torch.randn(b, t, h, generator=gen).to(device)

    def make_f():
        inj = x @ u.T
        return lambda z: torch.tanh(z @ w.T + inj)

    return (w, u), x, make_f


def training_step(mode: str, depth: int, make_f, x: torch.Tensor, params, autocast) -> None:
    """Forward to ``depth`` iterations and backward once, in the given gradient mode."""
    with autocast():
        f = make_f()
        z0 = torch.zeros_like(x)
        if mode == "bptt":
            z = z0
            for _ in range(depth):
                z = f(z)
        else:
            z, _ = fixed_point(f, z0, backward=mode, method="anderson", tol=0.0, max_iter=depth)
        loss = z.float().square().mean()
    loss.backward()
    for p in params:
        p.grad = None


def measure_row(mode: str, depth: int, make_f, x: torch.Tensor, params, autocast, device: torch.device) -> dict:
    """Saved-for-backward and peak bytes of one training step (``mode``, ``depth``), also as fp32 state copies."""
    state_bytes = x.numel() * 4
    with SavedTensorBytes() as saved:
        training_step(mode, depth, make_f, x, params, autocast)
    peak, _ = peak_allocated_bytes(lambda: training_step(mode, depth, make_f, x, params, autocast), device)
    return {
        "mode": mode,
        "max_iter": depth,
        "saved_bytes": saved.bytes,
        "saved_state_copies": saved.bytes / state_bytes,
        "peak_bytes": peak,
        "peak_state_copies": peak / state_bytes,
    }


def summarize(rows: list[dict]) -> dict:
    """Per mode: is the saved memory constant over depth, and its / the peak's growth from the first to the last."""
    summary = {}
    for m in dict.fromkeys(r["mode"] for r in rows):
        rs = [r for r in rows if r["mode"] == m]
        first, last = rs[0], rs[-1]
        summary[m] = {
            "saved_bytes_constant": len({r["saved_bytes"] for r in rs}) == 1,
            "saved_growth_64_over_2": last["saved_bytes"] / first["saved_bytes"],
            "peak_growth_64_over_2": last["peak_bytes"] / max(first["peak_bytes"], 1),
        }
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="bf16 = autocast around f")
    ap.add_argument(
        "--shape", type=int, nargs=3, default=None, help="state (B, T, H); default 16 81 256 on CPU, 64 81 256 on CUDA"
    )
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    ap.add_argument("--png", type=Path, default=None, help="write the plot here")
    args = ap.parse_args()
    device = torch.device(args.device)
    shape = tuple(args.shape or ((64, 81, 256) if device.type == "cuda" else (16, 81, 256)))
    params, x, make_f = make_problem(shape, device)

    def autocast():
        if args.dtype == "bf16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    state_bytes = x.numel() * 4
    rows = []
    for mode in MODES:
        for depth in DEPTHS:
            row = measure_row(mode, depth, make_f, x, params, autocast, device)
            rows.append(row)
            print(
                f"{mode:8s} max_iter={depth:3d} saved={row['saved_bytes'] / 2**20:8.2f} MiB "
                f"peak={row['peak_bytes'] / 2**20:8.2f} MiB",
                file=sys.stderr,
                flush=True,
            )

    by_mode = {m: [r for r in rows if r["mode"] == m] for m in MODES}
    summary = summarize(rows)
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=Path(__file__).parent
        ).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        commit = "unknown"
    report = {
        "benchmark": "memory_vs_depth",
        "command": " ".join(["python", *sys.argv]),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)",
        "dtype": args.dtype,
        "state_shape": list(shape),
        "state_bytes_fp32": state_bytes,
        "torch": torch.__version__,
        "git_commit": commit,
        "peak_measure": "torch.cuda.max_memory_allocated" if device.type == "cuda" else "torch.profiler memory trace",
        "summary": summary,
        "rows": rows,
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    if args.png:
        plot(by_mode, args.png, report)


def plot(by_mode: dict, path: Path, report: dict) -> None:
    """Saved-for-backward and peak MiB against max_iter, one line per mode (Figure 5 style)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((axes[0], "saved_bytes", "saved for backward"), (axes[1], "peak_bytes", "peak allocated")):
        for mode, rs in by_mode.items():
            ax.plot([r["max_iter"] for r in rs], [r[key] / 2**20 for r in rs], marker="o", label=mode)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("max_iter (forward iterations)")
        ax.set_ylabel("MiB")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(
        f"training memory vs depth — state {tuple(report['state_shape'])}, {report['dtype']}, {report['device']}",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
