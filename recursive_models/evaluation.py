"""Evaluation on a test split: the paper's exact accuracy (every cell right) and the diagnostics around it.

Every example runs ``halt_max_steps`` supervision steps (as HRM/TRM evaluate, so a batch halts together); the
answer after the last step is scored. Also reported: the answer at the step where the Q head first says halt
(``exact_accuracy_act``) and that step (``act/halt_steps_mean``), cell accuracy, the solver's iterations and
residuals per supervision step (Attractor models), and for mazes the fraction of predictions that are valid
shortest paths (which may differ from the reference label when several shortest paths exist).

The standard error of the exact accuracy is a bootstrap over examples; for a mean of 0/1 outcomes the bootstrap
distribution is exactly Binomial(n, p) / n, so it is drawn in closed form (1000 resamples, seeded).

    from recursive_models.evaluation import evaluate
    metrics = evaluate(model, "data/sudoku6-train1000-test500-aug0-seed0", device="cpu")
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable

import numpy as np
import torch
from tqdm import tqdm

from puzzles.data import IGNORE_LABEL_ID, PuzzleDataset
from recursive_models.base import RecursiveModel

EVAL_VERSION = 1  # bump when the definition of a reported number changes


def autocast_for(device: torch.device, precision: str):
    """The autocast context of a precision name (``fp32``: none; ``bf16``: bfloat16 autocast)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ValueError(f"unknown precision {precision!r}; choose 'fp32' or 'bf16'")


def bootstrap_se(correct: np.ndarray, resamples: int = 1000, seed: int = 0) -> float:
    """Bootstrap standard error of the mean of a 0/1 array (drawn exactly as Binomial(n, p) / n)."""
    n = len(correct)
    if n == 0:
        return float("nan")
    p = float(np.mean(correct))
    rng = np.random.default_rng(seed)
    return float(np.std(rng.binomial(n, p, size=resamples) / n, ddof=1))


@torch.no_grad()
def evaluate(
    model: RecursiveModel,
    data_dir: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    batch_size: int = 512,
    limit: int | None = None,
    halt_max_steps: int | None = None,
    progress: bool = True,
    seed: int = 0,
    on_progress: Callable[[int], None] | None = None,
) -> dict:
    """Score ``model`` on the test split of ``data_dir``.

    Args:
        model: any registered model (evaluated in eval mode; its mode is restored afterwards).
        data_dir: dataset folder with a ``test/`` split.
        device: where to run.
        precision: ``fp32`` or ``bf16`` (autocast).
        batch_size: examples per forward.
        limit: score only the first ``limit`` test examples; the result is then marked ``reportable: False``.
        halt_max_steps: supervision steps at test time (default: the model's ``halt_max_steps``).
        progress: show a progress bar.
        seed: seed of the bootstrap.
        on_progress: called with the number of examples scored so far after each batch (the leaderboard's
            worker process reports its progress to the parent through it).

    Returns:
        flat metrics: ``eval/exact_accuracy``, ``eval/exact_accuracy_se``, ``eval/cell_accuracy``,
        ``eval/exact_accuracy_act``, ``act/halt_steps_mean``, ``eval/count``, ``eval/steps``, ``solver/...``
        (Attractor), ``eval/valid_path_fraction`` (mazes), ``eval/reportable``, ``eval/version``.
    """
    device = torch.device(device)
    ds = PuzzleDataset(data_dir, "test", sample="example", augment=False)
    n = len(ds) if limit is None else min(limit, len(ds))
    if n == 0:
        raise ValueError(f"{data_dir}: the test split is empty")
    steps = halt_max_steps or model.config.halt_max_steps
    if steps < 1:
        raise ValueError(f"halt_max_steps must be >= 1, got {steps}")
    inputs_all = torch.from_numpy(np.asarray(ds.data.inputs[:n]).astype(np.int64))
    labels_np = np.asarray(ds.data.labels[:n]).astype(np.int64)
    if ds.ignore_label_id is not None:
        labels_np[labels_np == ds.ignore_label_id] = IGNORE_LABEL_ID
    labels_all = torch.from_numpy(labels_np)
    pid = np.asarray(ds.data.puzzle_identifiers)
    example_puzzle = np.searchsorted(np.asarray(ds.data.puzzle_indices), np.arange(n), side="right") - 1
    pids_all = torch.from_numpy(pid[example_puzzle].astype(np.int64))

    was_training = model.training
    model.eval()
    exact, exact_act, cell_correct, cell_count, halt_at = [], [], 0, 0, []
    # per supervision step k: sums over examples of solver evaluations, final residual, solves that hit max_iter
    solver_sums = torch.zeros(steps, 3, dtype=torch.float64)
    solver_rows = 0
    preds_all = []
    bar = tqdm(total=n, desc="eval", unit="ex", disable=not progress, leave=False)
    try:
        for s in range(0, n, batch_size):
            batch = {
                "inputs": inputs_all[s : s + batch_size].to(device),
                "labels": labels_all[s : s + batch_size].to(device),
                "puzzle_identifiers": pids_all[s : s + batch_size].to(device),
            }
            b = batch["inputs"].shape[0]
            carry = model.initial_carry(batch)
            halt_step = torch.full((b,), steps, dtype=torch.int64, device=device)
            pred_act = None
            for k in range(steps):
                with autocast_for(device, precision):
                    carry, out = model(carry, batch)
                pred = out["logits"].argmax(-1)
                active = halt_step == steps  # not halted at an earlier step: its ACT answer is this step's
                pred_act = pred if pred_act is None else torch.where(active[:, None], pred, pred_act)
                halt_step = torch.where(active & (out["q_halt_logits"] > 0), k + 1, halt_step)
                if "solver_nstep" in out:
                    solver_sums[k, 0] += out["solver_nstep"].double().sum().item()
                    solver_sums[k, 1] += out["solver_residual"].double().sum().item()
                    solver_sums[k, 2] += out["solver_hit_max"].double().sum().item() if "solver_hit_max" in out else 0.0
                    solver_rows += b if k == 0 else 0
            labels = batch["labels"]
            mask = labels != IGNORE_LABEL_ID
            ok = (pred == labels) | ~mask
            exact.append(ok.all(-1).cpu())
            exact_act.append(((pred_act == labels) | ~mask).all(-1).cpu())
            cell_correct += ((pred == labels) & mask).sum().item()
            cell_count += mask.sum().item()
            halt_at.append(halt_step.cpu())
            preds_all.append(pred.cpu())
            bar.update(b)
            if on_progress is not None:
                on_progress(s + b)
    finally:
        bar.close()
        model.train(was_training)

    exact_np = torch.cat(exact).numpy()
    metrics = {
        "eval/exact_accuracy": float(exact_np.mean()),
        "eval/exact_accuracy_se": bootstrap_se(exact_np, seed=seed),
        "eval/cell_accuracy": cell_correct / max(cell_count, 1),
        "eval/exact_accuracy_act": float(torch.cat(exact_act).float().mean()),
        "act/halt_steps_mean": float(torch.cat(halt_at).float().mean()),
        "eval/count": n,
        "eval/steps": steps,
        "eval/reportable": limit is None or n == len(ds),
        "eval/version": EVAL_VERSION,
    }
    if solver_rows:
        per_step = (solver_sums / solver_rows).tolist()
        metrics["solver/nstep_mean"] = float(solver_sums[:, 0].sum() / (solver_rows * steps))
        metrics["solver/residual_mean"] = float(solver_sums[:, 1].sum() / (solver_rows * steps))
        metrics["solver/hit_max_fraction"] = float(solver_sums[:, 2].sum() / (solver_rows * steps))
        metrics["solver/nstep_by_step"] = [r[0] for r in per_step]
        metrics["solver/residual_by_step"] = [r[1] for r in per_step]
        metrics["solver/hit_max_by_step"] = [r[2] for r in per_step]
    if ds.kind == "maze":
        from puzzles.maze import check_predictions

        preds = torch.cat(preds_all).numpy()
        _, valid = check_predictions(inputs_all.numpy(), preds)
        metrics["eval/valid_path_fraction"] = float(np.mean(valid))
    for k, v in metrics.items():
        if isinstance(v, float) and math.isnan(v):
            metrics[k] = None
    return metrics
