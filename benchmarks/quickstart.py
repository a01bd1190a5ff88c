"""Quickstart results per model: train each model's default CPU run and report accuracy, minutes and machine.

Runs ``python -m recursive_models.train model=M trainer.out_dir=OUT/M`` for every model (one after another, so
timings do not share the CPU) and prints one JSON document; ``--collect`` only reads finished run directories.

    python benchmarks/quickstart.py --out runs/quickstart > benchmarks/results/quickstart_cpu.json
    python benchmarks/quickstart.py --out runs/quickstart --collect          # summarise existing runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch


def machine() -> dict:
    """CPU model, core count and library versions of this machine."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def summarize(run_dir: Path) -> dict:
    """The headline numbers of one finished run directory."""
    res = json.loads((run_dir / "results.json").read_text())
    cfg = _hydra_config(run_dir)
    return {
        "model": cfg["model"]["name"],
        "size": cfg["model"]["size"],
        "task": cfg["task"]["name"],
        "steps": cfg["trainer"]["steps"],
        "batch_size": cfg["trainer"]["batch_size"],
        "parameters": res["parameters"],
        "minutes": round(res["minutes"], 2),
        "exact_accuracy": res["eval/exact_accuracy"],
        "exact_accuracy_se": res["eval/exact_accuracy_se"],
        "cell_accuracy": res["eval/cell_accuracy"],
        "exact_accuracy_act": res["eval/exact_accuracy_act"],
        "halt_steps_mean": res["act/halt_steps_mean"],
        "solver_nstep_mean": res.get("solver/nstep_mean"),
        "test_puzzles": res["eval/count"],
        "run_dir": str(run_dir),
    }


def _hydra_config(run_dir: Path) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "config.yaml"), resolve=False)


def main(argv: list[str] | None = None) -> int:
    """Run (or collect) the quickstart of every model and print JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/quickstart", help="parent folder of the run directories")
    p.add_argument("--models", nargs="+", default=["attractor", "trm", "hrm", "transformer"])
    p.add_argument("--collect", action="store_true", help="do not train; summarise OUT/MODEL run directories")
    p.add_argument("overrides", nargs="*", help="extra hydra overrides for every run")
    args = p.parse_args(argv)
    out = Path(args.out)
    rows = []
    for m in args.models:
        run = out / m
        cmd = [sys.executable, "-m", "recursive_models.train", f"model={m}", f"trainer.out_dir={run}"]
        cmd += ["trainer.progress=false", *args.overrides]
        if not args.collect:
            t0 = time.time()
            subprocess.run(cmd, check=True)
            print(f"{m}: {(time.time() - t0) / 60:.1f} min", file=sys.stderr)
        rows.append({**summarize(run), "command": "python -m recursive_models.train " + " ".join(cmd[3:])})
    print(json.dumps({"machine": machine(), "runs": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
