"""Training and evaluation of the language models: one recipe for every family.

    from recursive_models.lm.trainer import train, evaluate_lm, load_lm_checkpoint
    result = train(cfg)                                   # a composed LMTrainConfig (see lm/config.py)
    model, meta = load_lm_checkpoint(result["checkpoint"])
    metrics = evaluate_lm(model, val_dataset, iters=0)    # e.g. decode the Attractor's proposal only

The recipe: random windows from the training tokens (seeded); by default the paper's optimiser, MuonAdamW (Muon
on the hidden matrices, AdamW on the embedding, vectors and the fixed-point head at ``lr · fp_lr_scale``), with a
trapezoid schedule (constant, then linear to 0 over the last half); ``optim=adamw_cosine`` gives the earlier AdamW
with warmup + cosine (both in `recursive_models.lm.optim`); gradient clipping; bf16 autocast on CUDA. Logged to
``RUN/metrics.jsonl`` under ``train/``, ``val/`` and ``solver/``. Validation perplexity is ``exp`` of the mean
next-token cross-entropy over ``eval_batches`` fixed, non-overlapping windows of the validation works (``None``:
all of them). Checkpoints are written with `recursive_models.checkpoint`
(``model.safetensors`` + ``meta.json``, atomic) and load without the training code.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from tqdm import tqdm

from recursive_models.checkpoint import find_checkpoint, git_commit, read_meta, save_checkpoint
from recursive_models.config import check_schema
from recursive_models.evaluation import autocast_for
from recursive_models.lm.optim import apply_schedule, build_optimizer, check_recipe
from recursive_models.trainer import MetricsLogger, resolve_device, resolve_precision

log = logging.getLogger(__name__)

IGNORE = -100  # padding targets of `TokenDataset.iter_eval_batches`


class LMTrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss)."""


@torch.no_grad()
def evaluate_lm(
    model: torch.nn.Module,
    dataset: Any,
    *,
    batch_size: int = 32,
    seq_len: int | None = None,
    iters: int | None = None,
    max_batches: int | None = None,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    progress: bool = False,
) -> dict:
    """Validation loss and perplexity over fixed windows of ``dataset`` (a `TokenDataset`).

    Args:
        model: a registered LM.
        dataset: the split to score.
        batch_size: windows per forward.
        seq_len: window length (default: the model's ``seq_len``).
        iters: test-time recurrence depth / solver budget (``None``: the model's own).
        max_batches: score only the first batches (the same windows every time).
        device: where to run.
        precision: ``fp32`` or ``bf16``.
        progress: a progress bar.

    Returns:
        ``val/loss`` (nats per token), ``val/ppl``, ``val/tokens`` and the mean of every ``solver/*`` / ``depth``
        statistic over the batches.
    """
    device = torch.device(device)
    seq_len = seq_len or model.config.seq_len
    was_training = model.training
    model.eval()
    nll, count, sums, n_batches = 0.0, 0, {}, 0
    total = dataset.num_eval_batches(batch_size, seq_len)
    total = total if max_batches is None else min(total, max_batches)
    bar = tqdm(total=total, desc="val", unit="batch", disable=not progress, leave=False)
    try:
        for x, y in dataset.iter_eval_batches(batch_size, seq_len):
            if n_batches == total:
                break
            x, y = x.to(device), y.to(device)
            with autocast_for(device, precision):
                out = model(x, iters=iters)
            nll += F.cross_entropy(out["logits"].float().flatten(0, 1), y.flatten(), ignore_index=IGNORE,
                                   reduction="sum").item()  # fmt: skip
            count += int((y != IGNORE).sum())
            for k, v in out.items():
                if k.startswith("solver/") or k == "depth":
                    sums[k] = sums.get(k, 0.0) + float(v)
            n_batches += 1
            bar.update(1)
    finally:
        bar.close()
        model.train(was_training)
    loss = nll / max(count, 1)
    return {"val/loss": loss, "val/ppl": math.exp(loss), "val/tokens": count,
            **{k: v / max(n_batches, 1) for k, v in sums.items()}}  # fmt: skip


def load_lm_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu", **overrides):
    """Rebuild an LM from its checkpoint (run dir, checkpoint folder or ``model.safetensors``); eval mode."""
    from safetensors.torch import load_file

    from recursive_models.lm.registry import lm_from_config

    ckpt = find_checkpoint(path)
    meta = read_meta(ckpt)
    if meta.get("kind") != "lm":
        raise ValueError(f"{ckpt} is not a language-model checkpoint (kind={meta.get('kind')!r})")
    cfg = dict(meta["model"])
    for k, v in overrides.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    model = lm_from_config(cfg)
    model.load_state_dict(load_file(str(ckpt / "model.safetensors")), strict=True)
    return model.to(device).eval(), meta


def train(cfg: Any, callback=None) -> dict:
    """Train one LM run described by a composed `LMTrainConfig`; returns final metrics and the checkpoint.

    Raises:
        LMTrainingError: the loss became non-finite.
        ValueError: a bad model override, optimiser/schedule field or data option (before anything is prepared).
    """
    from recursive_models.lm.data import TokenDataset, prepare_corpus
    from recursive_models.lm.registry import lm_from_config, resolve_lm_config

    t0 = time.time()
    check_schema(cfg)  # an appended key the schema does not know (`+trainer.stpes=10`) is refused, not ignored
    t, d = cfg.trainer, cfg.data
    check_recipe(t)
    if t.threads:
        torch.set_num_threads(t.threads)
    overrides = (
        OmegaConf.to_container(cfg.model.overrides, resolve=True)
        if OmegaConf.is_config(cfg)
        else dict(cfg.model.overrides)
    )
    # Resolve the architecture first: a typo in an override fails before the corpus is prepared.
    probe = resolve_lm_config(cfg.model.name, cfg.model.size, **{"vocab_size": d.vocab_size, **overrides})
    if t.seq_len > probe.seq_len:
        raise ValueError(f"trainer.seq_len={t.seq_len} exceeds the model's seq_len={probe.seq_len}")
    device = resolve_device(t.device)
    precision = resolve_precision(t.precision, device)
    folder = prepare_corpus(
        d.source, paths=list(d.paths) or None, archive=d.archive, vocab_size=d.vocab_size,
        val_fraction=d.val_fraction, seed=d.seed, cache_dir=d.cache_dir, progress=t.progress, edition=d.edition,
    )  # fmt: skip
    train_ds, val_ds = TokenDataset(folder, "train"), TokenDataset(folder, "validation")
    config = resolve_lm_config(cfg.model.name, cfg.model.size, **{**overrides, "vocab_size": train_ds.vocab_size})

    torch.manual_seed(t.seed)
    model = lm_from_config(config).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    opt = build_optimizer(model, t)
    gen = torch.Generator().manual_seed(t.seed)
    run_dir = Path(t.out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    logger = MetricsLogger(run_dir, True, False, None)
    print(f"{config.name}-{cfg.model.size}: {n_params / 1e6:.2f}M parameters, {train_ds.tokens.size:,} training tokens,"
          f" {t.steps} steps x {t.batch_size} x {t.seq_len} tokens", file=sys.stderr)  # fmt: skip

    def run_eval(step: int) -> dict:
        m = evaluate_lm(model, val_ds, batch_size=t.eval_batch_size, seq_len=t.seq_len, max_batches=t.eval_batches,
                        device=device, precision=precision)  # fmt: skip
        logger.log(step, m)
        return m

    model.train()
    bar = tqdm(range(t.steps), desc="train", unit="step", disable=not t.progress, dynamic_ncols=True)
    history = []
    for step in bar:
        lr = apply_schedule(opt, step, t)
        x, y = train_ds.get_batch(t.batch_size, t.seq_len, generator=gen)
        x, y = x.to(device), y.to(device)
        with autocast_for(device, precision):
            out = model(x, y)
        loss = out["loss"]
        if not torch.isfinite(loss):
            raise LMTrainingError(f"non-finite loss {loss.item()} at step {step}; lower trainer.lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip or float("inf"))
        opt.step()
        if step % t.log_interval == 0 or step == t.steps - 1:
            m = {"train/loss": loss.item(), "train/lr": lr, "train/grad_norm": float(gnorm)}
            m.update({k: float(v) for k, v in out.items() if k.startswith(("solver/", "loss/")) or k == "depth"})
            logger.log(step + 1, m)
            history.append({"step": step + 1, **m})
            bar.set_postfix(loss=f"{m['train/loss']:.3f}")
        if t.eval_interval and (step + 1) % t.eval_interval == 0 and step + 1 < t.steps:
            run_eval(step + 1)
        if callback is not None:
            callback(step + 1)
    bar.close()
    final = run_eval(t.steps)
    minutes = (time.time() - t0) / 60
    meta = {
        "kind": "lm",
        "model": config.to_dict(),
        "size": cfg.model.size,
        "data": {"folder": str(folder), "source": d.source, "vocab_size": train_ds.vocab_size},
        "config": OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else asdict(cfg),
        "seed": t.seed,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "parameters": n_params,
        "metrics": final,
    }
    ckpt = save_checkpoint(run_dir, t.steps, model.state_dict(), meta)
    # the tokenizer travels with the weights, so the checkpoint scores without the corpus (lm/lm_eval_model.py)
    (ckpt / "tokenizer.json").write_bytes((Path(folder) / "tokenizer.json").read_bytes())
    result = {**final, "parameters": n_params, "minutes": minutes, "checkpoint": str(ckpt),
              "train/loss": history[-1]["train/loss"] if history else None}  # fmt: skip
    (run_dir / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    logger.close()
    return result
