"""Evaluation CLI: ``python -m recursive_models.evaluate RUN_DIR_OR_CHECKPOINT [options]`` -> JSON on stdout.

    python -m recursive_models.evaluate runs/my-run                       # newest checkpoint, its own test split
    python -m recursive_models.evaluate runs/my-run --steps 32            # more supervision steps at test time
    python -m recursive_models.evaluate runs/my-run solver.max_iter=0     # decode the backbone's proposal only
    python -m recursive_models.evaluate runs/my-run solver.tol=1e-5 solver.max_iter=50 --data data/other

Reports the paper's exact accuracy with a bootstrap standard error, cell accuracy, the ACT-halting accuracy and
step, solver iterations and residuals, and for mazes the valid-shortest-path fraction (see
`recursive_models.evaluation`). ``--limit N`` scores a prefix and marks the result as not reportable.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _parse_solver(items: list[str]) -> dict:
    from recursive_models.base import SolverConfig  # torch: only once the arguments have parsed

    known = {f: type(getattr(SolverConfig(), f)) for f in SolverConfig.__dataclass_fields__}
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("solver."):
            raise ValueError(f"expected solver.FIELD=VALUE, got {item!r}")
        name = key.removeprefix("solver.")
        if name not in known:
            raise ValueError(f"unknown solver option {name!r}; known: {sorted(known)}")
        out[name] = known[name](value)
    return out


def main(argv: list[str] | None = None) -> int:
    """Evaluate a checkpoint and print its metrics as JSON."""
    p = argparse.ArgumentParser(prog="python -m recursive_models.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="run directory, checkpoint folder, or model.safetensors")
    p.add_argument("solver", nargs="*", help="test-time solver options, e.g. solver.max_iter=0 solver.tol=1e-5")
    p.add_argument("--data", help="dataset folder (default: the one the run trained on)")
    p.add_argument("--steps", type=int, help="supervision steps at test time (default: the model's halt_max_steps)")
    p.add_argument("--limit", type=int, help="score only the first N test examples (not reportable)")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)

    import torch

    from puzzles.errors import PuzzleError
    from recursive_models.checkpoint import find_checkpoint, load_checkpoint
    from recursive_models.evaluation import evaluate
    from recursive_models.trainer import resolve_device, resolve_precision

    try:
        solver = _parse_solver(args.solver)
        device = resolve_device(args.device)
        precision = resolve_precision(args.precision, device)
        ckpt = find_checkpoint(args.checkpoint)
        model, meta = load_checkpoint(ckpt, device, **({"solver": solver} if solver else {}))
        data = args.data or meta["task"]["data_dir"]
        if not Path(data, "test", "dataset.json").is_file():
            raise FileNotFoundError(f"no test split at {data} (pass --data DATASET_DIR)")
        metrics = evaluate(
            model,
            data,
            device=device,
            precision=precision,
            batch_size=args.batch_size,
            limit=args.limit,
            halt_max_steps=args.steps,
            progress=not args.quiet,
            seed=args.seed,
        )
    except (PuzzleError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result = {
        "checkpoint": str(ckpt),
        "model": meta["model"]["name"],
        "size": meta["model"]["size"],
        "task": meta["task"]["name"],
        "data": str(data),
        "step": meta["step"],
        "git_commit": meta.get("git_commit"),
        "device": str(device),
        "precision": precision,
        "solver": {**meta["model"]["solver"], **solver} if meta["model"]["name"] == "attractor" else None,
        "torch_version": torch.__version__,
        "metrics": metrics,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
