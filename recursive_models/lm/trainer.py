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
(``model.safetensors`` + ``meta.json`` + the tokenizer, atomic) and load without the training code.

`LMRecipe` is the shared `recursive_models.recipe.Recipe` with the LM data, model and loss, so the LM runs get
what the puzzle runs have: ``torchrun`` DDP (``trainer.batch_size`` is the global batch), ``trainer.resume=true``
from ``trainer.checkpoint_interval`` checkpoints (bit-identical on CPU), ``trainer.max_minutes`` /
``trainer.max_flops`` budgets, measured training FLOPs and a ``run`` section in ``results.json``, the CPU
preflight. A run refuses an ``out_dir`` that already holds another run's checkpoints (pass
``trainer.resume=true`` to continue it).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from omegaconf import OmegaConf
from tqdm import tqdm

from recursive_models.checkpoint import find_checkpoint, git_commit, read_meta
from recursive_models.config import check_schema
from recursive_models.evaluation import autocast_for
from recursive_models.lm.optim import apply_schedule, build_optimizer, check_recipe
from recursive_models.recipe import Recipe, TrainingError

log = logging.getLogger(__name__)

IGNORE = -100  # padding targets of `TokenDataset.iter_eval_batches`


class LMTrainingError(TrainingError):
    """Training cannot go on (a non-finite loss, a resume that does not match)."""


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


class LMRecipe(Recipe):
    """The LM recipe on the shared `Recipe`: random windows of the training tokens, a registered LM, next-token loss.

    Every rank draws the same global batch of windows from one seeded generator and takes its contiguous share,
    so ``torchrun --nproc_per_node N`` trains on the same tokens as one process at the same ``batch_size``.
    """

    error = LMTrainingError
    resume_keys = ("batch_size", "seq_len", "seed")

    def check_config(self) -> None:
        """The schema, the optimiser recipe and the architecture (a typo fails before the corpus is prepared)."""
        from recursive_models.lm.registry import resolve_lm_config

        cfg, t, d = self.cfg, self.t, self.cfg.data
        check_schema(cfg)  # an appended key the schema does not know (`+trainer.stpes=10`) is refused, not ignored
        check_recipe(t)
        super().check_config()
        for name in ("batch_size", "seq_len", "eval_batch_size"):
            if getattr(t, name) < 1:
                raise ValueError(f"trainer.{name} must be >= 1, got {getattr(t, name)}")
        self.overrides = (
            OmegaConf.to_container(cfg.model.overrides, resolve=True)
            if OmegaConf.is_config(cfg)
            else dict(cfg.model.overrides)
        )
        probe = resolve_lm_config(cfg.model.name, cfg.model.size, **{"vocab_size": d.vocab_size, **self.overrides})
        if t.seq_len > probe.seq_len:
            raise ValueError(f"trainer.seq_len={t.seq_len} exceeds the model's seq_len={probe.seq_len}")

    def setup_data(self) -> None:
        """The tokenised corpus (prepared and cached once; rank 0 first) and the window generator."""
        from recursive_models.lm.data import TokenDataset, prepare_corpus

        d, t = self.cfg.data, self.t
        if t.batch_size % self.world:
            raise ValueError(f"trainer.batch_size={t.batch_size} is not divisible by the {self.world} DDP processes")

        def prepare(progress: bool) -> Path:
            return prepare_corpus(
                d.source, paths=list(d.paths) or None, archive=d.archive, vocab_size=d.vocab_size,
                val_fraction=d.val_fraction, seed=d.seed, cache_dir=d.cache_dir, progress=progress, edition=d.edition,
            )  # fmt: skip

        if self.is_main:
            self.folder = prepare(self.progress)
        if self.world > 1:
            dist.barrier()
            self.folder = prepare(False)
        self.train_ds, self.val_ds = TokenDataset(self.folder, "train"), TokenDataset(self.folder, "validation")
        self.gen = torch.Generator().manual_seed(t.seed)
        self.share = t.batch_size // self.world
        self.last: dict[str, float] = {}

    def setup_model(self) -> tuple[torch.nn.Module, Any]:  # noqa: D102
        from recursive_models.lm.registry import lm_from_config, resolve_lm_config

        cfg, t = self.cfg, self.t
        self.config = resolve_lm_config(cfg.model.name, cfg.model.size,
                                        **{**self.overrides, "vocab_size": self.train_ds.vocab_size})  # fmt: skip
        torch.manual_seed(t.seed)  # every rank the same weights (DDP also broadcasts rank 0's)
        model = lm_from_config(self.config).to(self.device)
        return model, build_optimizer(model, t)

    def find_unused_parameters(self) -> bool:  # noqa: D102
        # a fixed-point head's implicit backward can leave parameters without a gradient (e.g. the backbone under
        # initial-only injection); GPT and Parcae use every parameter, and DDP warns when the search is wasted
        return self.config.name in ("deq", "attractor")

    def checkpoint_meta(self) -> dict:  # noqa: D102
        cfg, d = self.cfg, self.cfg.data
        return {
            "kind": "lm",
            "model": self.config.to_dict(),
            "size": cfg.model.size,
            "data": {"folder": str(self.folder), "source": d.source, "vocab_size": self.train_ds.vocab_size},
            "config": OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else asdict(cfg),
            "seed": self.t.seed,
            "git_commit": git_commit(),
            "torch_version": torch.__version__,
            "parameters": self.n_params,
        }

    def describe(self) -> str:  # noqa: D102
        t = self.t
        budget = "".join(
            f", at most {v:g} {u}" for v, u in ((t.max_minutes, "min"), (t.max_flops, "FLOPs")) if v is not None
        )
        return (f"{self.config.name}-{self.cfg.model.size}: {self.n_params / 1e6:.2f}M parameters, "
                f"{self.train_ds.tokens.size:,} training tokens, {t.steps} steps x {t.batch_size} x {t.seq_len} "
                f"tokens, {self.device} {self.precision}{budget}")  # fmt: skip

    def set_lr(self, step: int, budget_spent: float) -> float:
        """The optimiser's schedule; under a budget it runs on the budget's fraction when that is ahead."""
        return apply_schedule(self.opt, max(step, budget_spent * self.t.steps) if budget_spent else step, self.t)

    def log_due(self, step: int) -> bool:  # noqa: D102
        # the first step of every interval, and the last (the LM trainer's cadence: steps 1, 11, 21, ...)
        return (step - 1) % self.t.log_interval == 0 or step == self.t.steps

    def _windows(self, generator: torch.Generator, n: int, share: bool) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.train_ds.get_batch(n, self.t.seq_len, generator=generator)  # (n, seq_len) each
        if share:  # this rank's contiguous share of the global batch
            x, y = (v[self.rank * self.share : (self.rank + 1) * self.share] for v in (x, y))
        return x.to(self.device), y.to(self.device)

    def forward_backward(self) -> float:
        """Next-token cross-entropy of this rank's windows; the step's solver / depth statistics are kept."""
        x, y = self._windows(self.gen, self.t.batch_size, share=True)
        with autocast_for(self.device, self.precision):
            out = self.ddp_model(x, y)
        loss = out["loss"]
        loss.backward()
        self.last = {k: float(v) for k, v in out.items() if k.startswith(("solver/", "loss/")) or k == "depth"}
        self.last["train/loss"] = loss.item()
        return self.last["train/loss"]

    def probe_loss(self, n: int) -> torch.Tensor:  # noqa: D102
        probe_gen = torch.Generator().manual_seed(self.t.seed + 1)  # not the training windows' generator
        x, y = self._windows(probe_gen, n, share=False)
        with autocast_for(self.device, self.precision):
            return self.model(x, y)["loss"]

    def micro_batch(self) -> int:  # noqa: D102
        return self.share

    def train_metrics(self) -> dict:
        """The last step's loss and statistics (mean over the ranks), and the tokens seen."""
        metrics = {k: v / self.world for k, v in self.all_reduce_sums(self.last).items()}
        metrics["train/tokens"] = self.step * self.t.batch_size * self.t.seq_len
        self.last_train_loss = metrics["train/loss"]
        return metrics

    def evaluate(self, final: bool) -> dict:
        """Validation loss and perplexity on the fixed windows (``eval_batches`` of them; ``None``: all)."""
        t = self.t
        return evaluate_lm(self.model, self.val_ds, batch_size=t.eval_batch_size, seq_len=t.seq_len,
                           max_batches=t.eval_batches, device=self.device, precision=self.precision)  # fmt: skip

    def rank_state(self) -> dict:  # noqa: D102
        return {"generator": self.gen.get_state()}

    def load_state(self, state: dict) -> None:  # noqa: D102
        self.gen.set_state(state["generator"][self.rank])

    def after_save(self, ckpt: Path) -> None:  # noqa: D102
        # the tokenizer travels with the weights, so the checkpoint scores without the corpus (lm/lm_eval_model.py)
        (ckpt / "tokenizer.json").write_bytes((Path(self.folder) / "tokenizer.json").read_bytes())

    def run_summary(self) -> dict:  # noqa: D102
        t = self.t
        return {"model": self.cfg.model.name, "size": self.cfg.model.size, "task": f"lm-{self.cfg.data.source}",
                "seq_len": t.seq_len, "tokens": self.step * t.batch_size * t.seq_len,
                "solver_nstep_mean": self.last.get("solver/nstep")}  # fmt: skip

    def result_extra(self) -> dict:  # noqa: D102
        return {"train/loss": getattr(self, "last_train_loss", None)}


def train(cfg: Any, callback=None) -> dict:
    """Train one LM run described by a composed `LMTrainConfig` (`LMRecipe`); final metrics and the checkpoint.

    Args:
        cfg: the composed config.
        callback: called with the step number after every optimiser step (tests use it to simulate a kill).

    Returns:
        ``val/loss``, ``val/ppl``, ``val/tokens`` of the final weights, ``train/loss`` (the last logged),
        ``parameters``, ``minutes``, ``checkpoint`` and ``run`` (the run's description); ``{}`` off DDP rank 0.

    Raises:
        LMTrainingError: the loss became non-finite, or a resume that does not match the config.
        ValueError: a bad model override, optimiser/schedule field or data option (before anything is prepared).
    """
    return LMRecipe(cfg, callback).run()
