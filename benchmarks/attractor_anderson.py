r"""`equilibrium`'s Anderson against the authors' own (``_anderson_solve`` in their ``trm_deq.py``), side by side.

    python benchmarks/attractor_anderson.py RUN_DIR --authors /tmp/refs/Attractor \
        --out benchmarks/results/attractor_anderson_cpu.json
    python benchmarks/attractor_anderson.py RUN_DIR --authors /tmp/refs/Attractor --bf16-floor   # + the bf16 floor

``RUN_DIR`` is a trained Attractor checkpoint (any variant; trained weights, since a random network is no
contraction). For each supervision step ``k`` of a batch of test puzzles, the model's carry is advanced to step
``k`` and the latent map ``z -> net(z, y + x)`` (the authors' inner solve) is solved from the carried ``z`` by

* ``theirs``: their ``_anderson_solve``, imported from the checkout named by ``--authors``;
* ``ours-authors``: `recursive_models.models.attractor.authors_anderson` (must equal theirs: checked);
* ``equilibrium``: `equilibrium.solve(method="anderson")` with per-sample stopping;

to the same relative tolerance and budget, on the same weights, in one process, CPU. Reported per solver: f
evaluations, final relative residual (max and mean over the batch), whether the tolerance was met, and the wall
time (median of ``--repeats`` runs, interleaved so machine noise hits all solvers alike). ``--bf16-floor`` also
runs the paper's full ``(y, z)`` map under bf16 autocast with no tolerance and reports the smallest relative
residual reached: the floor under which a tolerance cannot be met in bf16.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attractor_study import git_commit  # benchmarks/ is a folder of scripts, not a package
from quickstart import machine

from equilibrium import solve
from puzzles.data import PuzzleDataset
from recursive_models import load_checkpoint
from recursive_models.models.attractor import authors_anderson


def test_batch(data_dir: str, n: int) -> dict[str, torch.Tensor]:
    """The first ``n`` test examples as a model batch."""
    ds = PuzzleDataset(data_dir, "test", sample="example", augment=False)
    n = min(n, len(ds))
    return {
        "inputs": torch.from_numpy(np.asarray(ds.data.inputs[:n]).astype(np.int64)),
        "labels": torch.from_numpy(np.asarray(ds.data.labels[:n]).astype(np.int64)),
        "puzzle_identifiers": torch.zeros(n, dtype=torch.int64),
    }


def rel_residual(f, z: torch.Tensor) -> torch.Tensor:
    """Per-sample ``‖f(z) - z‖ / ‖f(z)‖``."""
    fz = f(z)
    return ((fz - z).flatten(1).norm(dim=1) / fz.flatten(1).norm(dim=1).clamp_min(1e-9)).float()


def compare_at(k: int, f, z0: torch.Tensor, theirs_solve, args: argparse.Namespace) -> list[dict]:
    """The three solvers on ``z = f(z)`` from ``z0`` (supervision step ``k``), timed interleaved."""
    opts = {"max_iter": args.max_iter, "tol": args.tol, "m": args.m}
    solvers = {
        "theirs": lambda: theirs_solve(f, z0, min_iter=0, beta=1.0, **opts),
        "ours-authors": lambda: authors_anderson(f, z0, min_iter=0, beta=1.0, **opts),
        "equilibrium": lambda: solve(f, z0, method="anderson", stop_mode="rel", **opts),
    }
    times: dict[str, list[float]] = {name: [] for name in solvers}
    outs = {}
    for _ in range(args.repeats):
        for name, run in solvers.items():
            t0 = time.perf_counter()
            outs[name] = run()
            times[name].append(time.perf_counter() - t0)
    assert torch.equal(outs["theirs"][0], outs["ours-authors"][0]), "authors_anderson differs from theirs"
    rows = []
    for name, (z_star, info) in outs.items():
        res = rel_residual(f, z_star)
        if name == "equilibrium":
            nstep = float(info.nstep.max())
        elif name == "theirs":
            nstep = float(info["iters"])
        else:
            nstep = float(info["solver_nstep"][0])
        r = {
            "supervision_step": k,
            "solver": name,
            "f_evals": nstep,
            "rel_residual_max": float(res.max()),
            "rel_residual_mean": float(res.mean()),
            "met_tol": bool(res.max() < args.tol),
            "returned_norm_over_start": float(z_star.flatten(1).norm(dim=1).mean() / z0.flatten(1).norm(dim=1).mean()),
            "seconds_median": statistics.median(times[name]),
        }
        rows.append(r)
        print(
            f"step {k} {name:13s} evals {r['f_evals']:4.0f}  residual max {r['rel_residual_max']:.2e} "
            f"mean {r['rel_residual_mean']:.2e}  |z*|/|z0| {r['returned_norm_over_start']:.2e}  "
            f"{1e3 * r['seconds_median']:.1f} ms",
            flush=True,
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a trained attractor run (or checkpoint) folder")
    p.add_argument("--authors", required=True, help="checkout of jacobfa/Attractor")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("--max-iter", type=int, default=30)
    p.add_argument("--m", type=int, default=5)
    p.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8], help="supervision steps to solve at")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--bf16-floor", action="store_true")
    p.add_argument("--out")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from recursive_models.reference import load_authors

    theirs_solve = load_authors(args.authors).anderson
    model, meta = load_checkpoint(args.run)
    model.eval()
    batch = test_batch(meta["task"]["data_dir"], args.batch)
    rope = model.encoder.rope()
    net = model.net if hasattr(model, "net") else model.attractor
    carry = model.initial_carry(batch)
    rows = []
    with torch.no_grad():
        x = model.encoder(batch["inputs"], batch["puzzle_identifiers"])
        for k in range(1, max(args.steps) + 1):
            if k in args.steps:
                y, z0 = carry.state
                if k == 1:  # the state before step 1 is the initial one (the carry holds placeholders)
                    y, z0 = model.init_state(x.shape[0], x.device)
                ctx = y + x

                def f(z, ctx=ctx):
                    return net(z, ctx, rope)

                rows += compare_at(k, f, z0, theirs_solve, args)
            carry, _ = model(carry, batch)
    ratios = {}
    for k in args.steps:
        by = {r["solver"]: r for r in rows if r["supervision_step"] == k}
        eq, th = by["equilibrium"], by["theirs"]
        ratios[k] = {
            "time_equilibrium_over_theirs": eq["seconds_median"] / th["seconds_median"],
            "time_per_eval_equilibrium_over_theirs": (eq["seconds_median"] / eq["f_evals"])
            / (th["seconds_median"] / th["f_evals"]),
            "evals_equilibrium_minus_theirs": eq["f_evals"] - th["f_evals"],
            "theirs_met_tol": th["met_tol"],
            "equilibrium_met_tol": eq["met_tol"],
        }
    doc = {
        "run": str(args.run),
        "model": meta["model"]["name"],
        "variant": meta["model"].get("variant") or "backbone",
        "batch": x.shape[0],
        "tol": args.tol,
        "max_iter": args.max_iter,
        "m": args.m,
        "threads": args.threads,
        "rows": rows,
        "ratios": ratios,
        "commit": git_commit(),
        "machine": machine(),
        "command": "python " + " ".join(sys.argv),
    }
    if args.bf16_floor:
        doc["bf16_floor"] = bf16_floor(model, batch, x, rope)
        print("bf16 floor:", doc["bf16_floor"])
    print(json.dumps(ratios, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=1))


def bf16_floor(model, batch, x, rope, iters: int = 60) -> dict:
    """Smallest relative residual the paper's ``(y, z)`` map reaches under bf16 autocast, vs fp32 (CPU)."""
    net = model.net if hasattr(model, "net") else model.attractor
    y0, z0 = model.init_state(x.shape[0], x.device)

    def f(st):
        y, z = st
        z = net(z, y + x, rope).float()
        return net(y, z, rope).float(), z

    out = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        ctx = torch.autocast("cpu", dtype=dtype) if dtype else torch.autocast("cpu", enabled=False)
        with ctx:
            _, stats = solve(f, (y0, z0), method="anderson", max_iter=iters, tol=1e-12, return_trace=True)
        trace = stats.rel_trace  # (B, n_iter)
        best = trace.min(dim=1).values
        out[name] = {"min_rel_residual_median": float(best.median()), "min_rel_residual_p90": float(best.quantile(0.9))}
    return out


if __name__ == "__main__":
    main()
