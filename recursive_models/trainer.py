"""The puzzle recipe behind ``python -m recursive_models.train``: setup -> train -> evaluate -> save.

`PuzzleRecipe` is the shared `recursive_models.recipe.Recipe` (device, DDP, budgets, FLOPs, logging,
checkpoint/resume, preflight) with the puzzle data, model and loss. `train` runs it on a resolved
`recursive_models.config.TrainConfig` (an OmegaConf/dataclass config), so tests and notebooks call it directly::

    from hydra import compose, initialize_config_module
    from recursive_models.trainer import train
    with initialize_config_module("recursive_models.conf", version_base="1.3"):
        cfg = compose("config", overrides=["model=trm", "trainer.steps=50"])
    result = train(cfg)         # {"eval/exact_accuracy": ..., "checkpoint": ".../checkpoints/step_0000050"}

One optimiser step is one supervision step of every ACT slot (HRM/TRM's scheme): halted slots take the next
examples of the data stream, the others continue. The data stream, the ACT carries, the RNG and the optimiser
are all checkpointed, so ``trainer.resume=true`` continues a killed run exactly (bit-identical on CPU).
Multi-GPU: ``torchrun --nproc_per_node 8 -m recursive_models.train ...`` (DDP; ``trainer.batch_size`` is the
global batch; rank 0 logs and saves).

Budgets: ``trainer.max_minutes`` (training-loop wall time, evaluation excluded) and ``trainer.max_flops`` stop a
run early; the learning-rate schedule then runs on the fraction of the budget spent, so a cosine decay still ends
at the budget. Training FLOPs are measured with `torch.utils.flop_counter.FlopCounterMode` (matmuls, attention,
convolutions: forward and backward, the no-grad recursion included) on one optimiser step in every
``log_interval`` and extrapolated to the steps between (the recursion depth of ACT/solver models varies). They
are logged as ``compute/flops`` and written to ``results.json`` with the run's description (``run``).

On CPU a preflight (``trainer.preflight``) probes a few examples first: a run that would not fit in memory is
refused with the batch size that would, and a long one is announced with its estimated time per step.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from puzzles.data import EpochShuffleSampler, PuzzleDataset
from puzzles.errors import DatasetError
from recursive_models.base import Carry, RecursiveModel
from recursive_models.checkpoint import git_commit
from recursive_models.config import check_schema, model_overrides
from recursive_models.evaluation import autocast_for, evaluate
from recursive_models.layers import ReasoningModule
from recursive_models.losses import LOSS_TYPES, act_loss

# The shared recipe's helpers, re-exported: they were defined here first and are imported from here.
from recursive_models.recipe import (  # noqa: F401
    MetricsLogger,
    Recipe,
    TrainingError,
    device_name,
    peak_rss_bytes,
    resolve_device,
    resolve_precision,
)
from recursive_models.registry import build_model, from_config

log = logging.getLogger(__name__)


# ---- setup ---------------------------------------------------------------------------------------------------
def dataset_dir(task: Any) -> Path:
    """Where the task's data lives: ``task.data_dir``, or the cache folder named by the build arguments."""
    if task.data_dir:
        return Path(task.data_dir)
    return Path(task.cache_dir) / f"{task.name}-train{task.train}-test{task.test}-aug{task.aug}-seed{task.build_seed}"


def ensure_dataset(task: Any, progress: bool = True) -> Path:
    """Return the dataset folder, building it with `puzzles.build` first when it is missing from the cache.

    Raises:
        DatasetError: ``task.data_dir`` is given but is not a dataset folder.
    """
    root = dataset_dir(task)
    ok = (root / "train" / "dataset.json").is_file() and (root / "test" / "dataset.json").is_file()
    if task.data_dir:
        if not ok:
            raise DatasetError(
                f"task.data_dir={task.data_dir}: not a dataset folder (expected train/dataset.json and "
                f"test/dataset.json); build one with `python -m puzzles.build {task.name} --out {task.data_dir}`"
            )
        return root
    if not ok:
        from puzzles.build import build

        # Said once, through logging (the CLIs show recursive_models' INFO lines); a print as well doubled it.
        log.info("building dataset %s into %s (first run only, cached for later runs)", task.name, root)
        build(task.name, root, train=task.train, test=task.test, aug=task.aug, seed=task.build_seed, progress=progress)
    return root


def task_meta(root: Path) -> dict:
    """Model-relevant metadata of a dataset folder (vocabulary, sequence length, identifiers, kind)."""
    ds = PuzzleDataset(root, "train")
    m = ds.metadata
    return {
        "vocab_size": int(m["vocab_size"]),
        "seq_len": int(m["seq_len"]),
        "num_puzzle_identifiers": int(m["num_puzzle_identifiers"]),
        "kind": ds.kind,
    }


class BatchStream:
    """Endless, resumable stream of training batches.

    Epochs of `EpochShuffleSampler` order are concatenated (no example is dropped at an epoch boundary); an
    item's augmentation is a function of ``(seed, epoch, index)``, so the stream is fully determined by its
    position ``(epoch, offset)``, which is all a checkpoint needs to store. Under DDP every rank reads its own
    contiguous share of each global batch.
    """

    def __init__(self, ds: PuzzleDataset, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        if batch_size % world:
            raise ValueError(f"trainer.batch_size={batch_size} is not divisible by the {world} DDP processes")
        self.ds, self.batch_size, self.rank, self.world = ds, batch_size, rank, world
        self.sampler = EpochShuffleSampler(ds, seed)
        self.epoch, self.offset = 0, 0
        self._order: list[int] | None = None

    def _order_of(self, epoch: int) -> list[int]:
        self.ds.set_epoch(epoch)
        return list(self.sampler)

    def state_dict(self) -> dict:  # noqa: D102
        return {"epoch": self.epoch, "offset": self.offset}

    def load_state_dict(self, state: dict) -> None:  # noqa: D102
        self.epoch, self.offset, self._order = int(state["epoch"]), int(state["offset"]), None

    def next(self) -> dict[str, torch.Tensor]:
        """The next global batch's share of this rank."""
        picks: list[tuple[int, int]] = []  # (epoch, index)
        while len(picks) < self.batch_size:
            if self._order is None:
                self._order = self._order_of(self.epoch)
            take = self._order[self.offset : self.offset + self.batch_size - len(picks)]
            picks += [(self.epoch, i) for i in take]
            self.offset += len(take)
            if self.offset >= len(self._order):
                self.epoch, self.offset, self._order = self.epoch + 1, 0, None
        share = self.batch_size // self.world
        items = []
        for epoch, i in picks[self.rank * share : (self.rank + 1) * share]:
            self.ds.epoch = epoch
            items.append(self.ds[i])
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}


class EMA:
    """Exponential moving average of a model's floating-point parameters and buffers (TRM: rate 0.999)."""

    def __init__(self, model: torch.nn.Module, rate: float):
        self.rate = rate
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:  # noqa: D102
        state = model.state_dict()
        keys = list(self.shadow)
        torch._foreach_lerp_([self.shadow[k] for k in keys], [state[k].detach() for k in keys], 1.0 - self.rate)

    def weights(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The model's state dict with the averaged tensors swapped in."""
        return {k: self.shadow.get(k, v) for k, v in model.state_dict().items()}


def lr_factor(step: int, warmup: int, total: int, min_ratio: float, budget_spent: float = 0.0) -> float:
    """Linear warmup to 1, then cosine down to ``min_ratio`` (constant when ``min_ratio == 1``, as TRM).

    ``budget_spent`` (0..1, the fraction of a wall-time or FLOP budget used) advances the cosine when it is
    ahead of the step count, so a budgeted run decays by the time its budget ends.
    """
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, max((step - warmup) / max(1, total - warmup), budget_spent))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def compile_blocks(model: torch.nn.Module, **compile_kwargs: Any) -> int:
    """``torch.compile`` every `ReasoningModule` of ``model`` in place; returns how many were compiled.

    Only the block stacks are compiled: the ACT/solver control flow stays eager (its data-dependent stopping would
    break the graph anyway) and the state-dict keys stay plain (no ``_orig_mod.`` prefixes). ``compile_kwargs`` go
    to `torch.compile` (e.g. ``backend="eager"`` for a cheap check of the capture on CPU).
    """
    blocks = [m for m in model.modules() if isinstance(m, ReasoningModule)]
    for m in blocks:
        m.compile(**compile_kwargs)
    return len(blocks)


def make_optimizer(model: RecursiveModel, t: Any) -> torch.optim.Optimizer:
    """AdamW with the puzzle-identifier embedding in its own group (its own lr and weight decay)."""
    emb = model.encoder.puzzle_emb
    emb_params = [] if emb is None else list(emb.parameters())
    emb_ids = {id(p) for p in emb_params}
    rest = [p for p in model.parameters() if id(p) not in emb_ids]
    groups = [{"params": rest, "lr": t.lr, "weight_decay": t.weight_decay, "base_lr": t.lr}]
    if emb_params:
        groups.append(
            {
                "params": emb_params,
                "lr": t.puzzle_emb_lr,
                "weight_decay": t.puzzle_emb_weight_decay,
                "base_lr": t.puzzle_emb_lr,
            }
        )
    return torch.optim.AdamW(groups, betas=(t.beta1, t.beta2), eps=1e-8)


# ---- the recipe ----------------------------------------------------------------------------------------------
def _carry_state(carries: list[Carry]) -> list[dict]:
    return [{"state": list(c.state), "steps": c.steps, "halted": c.halted, "data": c.data} for c in carries]


def _carry_from(states: list[dict], device: torch.device) -> list[Carry]:
    return [
        Carry(
            tuple(s.to(device) for s in d["state"]),
            d["steps"].to(device),
            d["halted"].to(device),
            {k: v.to(device) for k, v in d["data"].items()},
        )
        for d in states
    ]


class PuzzleRecipe(Recipe):
    """The puzzle recipe on the shared `Recipe`: a `BatchStream`, a registered `RecursiveModel`, the ACT loss.

    Adds to the base: the ACT carries (one per gradient-accumulation slice, checkpointed per rank), the EMA of
    the weights (evaluated and published), and the puzzle-identifier embedding's own optimiser group.
    """

    error = TrainingError
    resume_keys = ("batch_size", "grad_accum", "seed")

    def check_config(self) -> None:  # noqa: D102
        cfg, t = self.cfg, self.t
        check_schema(cfg)  # first: a key the schema does not know (`+trainer.stpes=10`) would be ignored below
        if cfg.model.loss_type not in LOSS_TYPES:
            raise ValueError(f"model.loss_type must be one of {LOSS_TYPES}, got {cfg.model.loss_type!r}")
        for name in ("batch_size", "grad_accum", "eval_batch_size"):
            if getattr(t, name) < 1:
                raise ValueError(f"trainer.{name} must be >= 1, got {getattr(t, name)}")
        super().check_config()
        if t.batch_size % t.grad_accum:
            raise ValueError(f"trainer.batch_size={t.batch_size} is not divisible by trainer.grad_accum={t.grad_accum}")
        if not 0 < t.ema_rate < 1:
            raise ValueError(f"trainer.ema_rate must be in (0, 1), got {t.ema_rate}")

    def setup_data(self) -> None:
        """The dataset folder (rank 0 builds a missing cache; the others wait for it) and the batch stream."""
        task, t = self.cfg.task, self.t
        if self.is_main:
            self.root = ensure_dataset(task, progress=self.progress)
        if self.world > 1:
            dist.barrier()
            self.root = ensure_dataset(task, progress=False)
        self.task_meta = task_meta(self.root)
        train_ds = PuzzleDataset(self.root, "train", augment=task.augment, seed=t.seed)
        self.stream = BatchStream(train_ds, t.batch_size, t.seed, self.rank, self.world)
        self.micro = t.batch_size // self.world // t.grad_accum
        self.carries: list[Carry] | None = None
        self.sums: dict[str, float] = {}
        self.solver_sums = np.zeros(3)  # solver evaluations, final residual, fraction of solves at max_iter
        self.last_nstep: float | None = None
        self.ema_model: RecursiveModel | None = None

    def setup_model(self) -> tuple[RecursiveModel, torch.optim.Optimizer]:  # noqa: D102
        cfg, t = self.cfg, self.t
        torch.manual_seed(t.seed + self.rank)
        model = build_model(
            cfg.model.name, cfg.model.size, cfg.task.name, task_meta=self.task_meta, **model_overrides(cfg.model)
        )
        model.to(self.device)
        opt = make_optimizer(model, t)
        self.ema = EMA(model, t.ema_rate) if t.ema else None
        if t.compile:
            compile_blocks(model)
        return model, opt

    def find_unused_parameters(self) -> bool:  # noqa: D102
        # the paper Attractor's step-zero embedding is a parameter that no backward mode reaches
        return any(p.requires_grad for n, p in self.model.named_parameters() if n.endswith("_init"))

    def checkpoint_meta(self) -> dict:  # noqa: D102
        cfg = self.cfg
        resolved = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else asdict(cfg)
        return {
            "model": asdict(self.model.config),
            "task": {"name": cfg.task.name, "kind": self.task_meta["kind"], "data_dir": str(self.root)},
            "config": resolved,
            "seed": self.t.seed,
            "git_commit": git_commit(),
            "torch_version": torch.__version__,
            "parameters": self.n_params,
            "weights": "ema" if self.ema else "raw",
        }

    def describe(self) -> str:  # noqa: D102
        cfg, t = self.cfg, self.t
        budget = "".join(
            f", at most {v:g} {u}" for v, u in ((t.max_minutes, "min"), (t.max_flops, "FLOPs")) if v is not None
        )
        return (
            f"{cfg.model.name}-{cfg.model.size} ({self.n_params / 1e6:.2f}M params) on {cfg.task.name} [{self.root}], "
            f"{self.device} {self.precision}, batch {t.batch_size}, {t.steps} steps{budget}"
        )

    def micro_batch(self) -> int:  # noqa: D102
        return self.micro

    def forwards_per_step(self) -> int:  # noqa: D102
        return self.t.grad_accum

    def set_lr(self, step: int, budget_spent: float) -> float:  # noqa: D102
        t = self.t
        factor = lr_factor(step, t.lr_warmup_steps, t.steps, t.lr_min_ratio, budget_spent)
        for g in self.opt.param_groups:
            g["lr"] = g["base_lr"] * factor
        return self.opt.param_groups[0]["lr"]

    def forward_backward(self) -> float:
        """One supervision step of every ACT slot, over ``grad_accum`` micro-batches; the mean loss."""
        t, micro = self.t, self.micro
        batch = {k: v.to(self.device, non_blocking=True) for k, v in self.stream.next().items()}
        if self.carries is None:
            self.carries = [
                self.model.initial_carry({k: v[i * micro : (i + 1) * micro] for k, v in batch.items()})
                for i in range(t.grad_accum)
            ]
        loss_total = 0.0
        for i in range(t.grad_accum):
            mb = {k: v[i * micro : (i + 1) * micro] for k, v in batch.items()}
            with autocast_for(self.device, self.precision):
                self.carries[i], out = self.ddp_model(self.carries[i], mb)
            loss, s = act_loss(out, self.carries[i].data["labels"], self.carries[i].halted, self.cfg.model.loss_type)
            (loss / t.grad_accum).backward()
            loss_total += loss.item() / t.grad_accum
            for k, v in s.items():
                self.sums[k] = self.sums.get(k, 0.0) + float(v)
            if "solver_nstep" in out:
                self.solver_sums += (
                    out["solver_nstep"].float().mean().item(),
                    out["solver_residual"].float().mean().item(),
                    out["solver_hit_max"].float().mean().item() if "solver_hit_max" in out else 0.0,
                )
        if math.isfinite(loss_total):
            self.sums["loss"] = self.sums.get("loss", 0.0) + loss_total
            self.sums["_steps"] = self.sums.get("_steps", 0.0) + 1
        return loss_total

    def probe_loss(self, n: int) -> torch.Tensor:
        """The ACT loss of the stream's next ``n`` examples; the stream is put back where it was."""
        position = self.stream.state_dict()
        batch = {k: v[:n].to(self.device) for k, v in self.stream.next().items()}
        self.stream.load_state_dict(position)
        carry = self.model.initial_carry(batch)
        with autocast_for(self.device, self.precision):
            carry, out = self.model(carry, batch)
        return act_loss(out, carry.data["labels"], carry.halted, self.cfg.model.loss_type)[0]

    def after_optimizer_step(self) -> None:  # noqa: D102
        if self.ema is not None:
            self.ema.update(self.model)

    def train_metrics(self) -> dict:
        """Means over the steps since the last log line, over every rank (ACT statistics per halted puzzle)."""
        t, world = self.t, self.world
        totals = self.all_reduce_sums(self.sums)
        n_steps = totals["_steps"] / world
        halted = max(totals.get("count", 0.0), 1.0)
        per_sample = n_steps * t.batch_size
        metrics = {
            "train/loss": totals["loss"] / world / n_steps,
            "train/lm_loss": totals.get("lm_loss", 0.0) / per_sample,
            "train/q_halt_loss": totals.get("q_halt_loss", 0.0) / per_sample,
            "train/accuracy": totals.get("accuracy", 0.0) / halted,
            "train/exact_accuracy": totals.get("exact_accuracy", 0.0) / halted,
            "train/q_halt_accuracy": totals.get("q_halt_accuracy", 0.0) / halted,
            "act/halted_per_step": totals.get("count", 0.0) / per_sample,
            "act/steps_mean": float(torch.cat([c.steps for c in self.carries]).float().mean()),
        }
        if "q_continue_loss" in totals and self.cfg.model.name == "hrm":
            metrics["train/q_continue_loss"] = totals["q_continue_loss"] / per_sample
        if self.solver_sums.any():
            per_forward = n_steps * t.grad_accum
            metrics["solver/nstep_mean"] = self.last_nstep = self.solver_sums[0] / per_forward
            metrics["solver/residual_mean"] = self.solver_sums[1] / per_forward
            metrics["solver/hit_max_fraction"] = self.solver_sums[2] / per_forward
        self.sums, self.solver_sums = {}, np.zeros(3)
        return metrics

    def postfix(self, metrics: dict) -> dict:  # noqa: D102
        return {"loss": f"{metrics['train/loss']:.3f}", "exact": f"{metrics['train/exact_accuracy']:.3f}"}

    def evaluate(self, final: bool) -> dict:
        """Test-split metrics of the EMA weights (or the raw ones); a subset between steps, all of it at the end."""
        t = self.t
        eval_model = self.model
        if self.ema is not None:
            if self.ema_model is None:
                # One module for the averaged weights; its throwaway init must not move the training RNG.
                with torch.random.fork_rng(devices=[]):
                    self.ema_model = from_config(self.model.config).to(self.device)
            self.ema_model.load_state_dict(self.ema.weights(self.model))
            eval_model = self.ema_model
        metrics = evaluate(eval_model, self.root, device=self.device, precision=self.precision,
                           batch_size=t.eval_batch_size, limit=None if final else t.eval_limit,
                           progress=self.progress, seed=t.seed)  # fmt: skip
        if not final:
            tqdm.write(f"step {self.step}: eval exact accuracy {metrics['eval/exact_accuracy']:.4f}", file=sys.stderr)
        return metrics

    def weights(self) -> dict[str, torch.Tensor]:  # noqa: D102
        return self.ema.weights(self.model) if self.ema else self.model.state_dict()

    def rank_state(self) -> dict:  # noqa: D102
        carries = _carry_state(self.carries) if self.carries is not None else None
        return {"stream": self.stream.state_dict(), "carries": carries}

    def shared_state(self) -> dict:  # noqa: D102
        return {"ema": self.ema.shadow if self.ema else None}

    def load_state(self, state: dict) -> None:  # noqa: D102
        if self.ema is not None:
            self.ema.shadow = {k: v.to(self.device) for k, v in state["ema"].items()}
        self.stream.load_state_dict(state["stream"][self.rank])
        self.carries = _carry_from(state["carries"][self.rank], self.device)

    def run_summary(self) -> dict:  # noqa: D102
        cfg = self.cfg
        return {"model": cfg.model.name, "size": cfg.model.size, "task": cfg.task.name,
                "solver_nstep_mean": self.last_nstep}  # fmt: skip


def train(cfg: DictConfig | Any, callback: Callable[[int], None] | None = None) -> dict:
    """Train, evaluate and checkpoint one run described by ``cfg`` (`PuzzleRecipe`).

    Args:
        cfg: a composed `TrainConfig` (hydra `DictConfig` or the dataclass).
        callback: called with the step number after every optimiser step (tests use it to simulate a kill).

    Returns:
        the final evaluation metrics plus ``checkpoint`` (folder), ``minutes`` (wall time of this process),
        ``parameters`` and ``run`` (the run's description); ``{}`` on DDP ranks other than 0.

    Raises:
        TrainingError: non-finite loss, a resume that does not match the config, a run too big for this machine.
        DatasetError: missing or malformed dataset folder.
        ValueError: a bad config value, naming the field.
    """
    return PuzzleRecipe(cfg, callback).run()
