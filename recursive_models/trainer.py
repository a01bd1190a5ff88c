"""The training recipe behind ``python -m recursive_models.train``: setup -> train -> evaluate -> save.

Plain functions over a resolved `recursive_models.config.TrainConfig` (an OmegaConf/dataclass config), so
tests and notebooks call `train` directly::

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
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from puzzles.data import EpochShuffleSampler, PuzzleDataset
from puzzles.errors import DatasetError
from recursive_models.base import Carry, RecursiveModel
from recursive_models.checkpoint import TRAINER_STATE, find_checkpoint, git_commit, read_meta, save_checkpoint
from recursive_models.config import check_schema, model_overrides
from recursive_models.evaluation import autocast_for, evaluate
from recursive_models.layers import ReasoningModule
from recursive_models.losses import LOSS_TYPES, act_loss
from recursive_models.registry import build_model, from_config

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """A run cannot go on (NaN loss, bad resume state); the message says why."""


# ---- setup ---------------------------------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    """``auto`` -> ``cuda`` when available else ``cpu``; otherwise the named device (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"trainer.device={name} but CUDA is not available on this machine; use trainer.device=cpu")
    return dev


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` on CUDA, ``fp32`` elsewhere."""
    if name == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if name not in ("fp32", "bf16"):
        raise ValueError(f"trainer.precision must be auto, fp32 or bf16, got {name!r}")
    return name


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


class MetricsLogger:
    """Metrics to JSONL (``RUN/metrics.jsonl``) and optionally TensorBoard; silent on non-zero ranks."""

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool, resume_step: int | None):
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.tb = None
        if not enabled:
            return
        if resume_step is not None and self.path.exists():
            # Drop what a killed run logged after its last checkpoint: the resumed run logs those steps again.
            keep = [ln for ln in self.path.read_text().splitlines() if ln and json.loads(ln)["step"] <= resume_step]
            self.path.write_text("".join(ln + "\n" for ln in keep))
        elif self.path.exists():
            self.path.unlink()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise ImportError(
                    "trainer.tensorboard=true needs the tensorboard package: pip install tensorboard"
                ) from e
            self.tb = SummaryWriter(str(run_dir / "tensorboard"))

    def log(self, step: int, metrics: dict[str, Any]) -> None:  # noqa: D102
        if not self.enabled:
            return
        with self.path.open("a") as fh:
            fh.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    self.tb.add_scalar(k, v, step)

    def close(self) -> None:  # noqa: D102
        if self.tb is not None:
            self.tb.close()


# ---- distributed -------------------------------------------------------------------------------------------
def _init_distributed(device: torch.device) -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, device
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank()
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    return rank, world, device


def _all_reduce(t: torch.Tensor, world: int, op: str = "sum") -> torch.Tensor:
    if world > 1:
        dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return t


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


def _check_config(cfg: Any) -> None:
    check_schema(cfg)  # first: a key the schema does not know (`+trainer.stpes=10`) would be ignored below
    t = cfg.trainer
    if cfg.model.loss_type not in LOSS_TYPES:
        raise ValueError(f"model.loss_type must be one of {LOSS_TYPES}, got {cfg.model.loss_type!r}")
    for name in ("batch_size", "steps", "grad_accum", "eval_batch_size", "log_interval", "keep_checkpoints"):
        if getattr(t, name) < 1:
            raise ValueError(f"trainer.{name} must be >= 1, got {getattr(t, name)}")
    if t.batch_size % t.grad_accum:
        raise ValueError(f"trainer.batch_size={t.batch_size} is not divisible by trainer.grad_accum={t.grad_accum}")
    if not 0 < t.ema_rate < 1:
        raise ValueError(f"trainer.ema_rate must be in (0, 1), got {t.ema_rate}")
    for name in ("max_minutes", "max_flops"):
        if getattr(t, name) is not None and not getattr(t, name) > 0:
            raise ValueError(f"trainer.{name} must be > 0 (or null for no budget), got {getattr(t, name)}")
    if t.max_flops is not None and not t.count_flops:
        raise ValueError("trainer.max_flops needs trainer.count_flops=true")


def peak_rss_bytes() -> int | None:
    """This process's peak resident set size (``None`` where the platform has no ``resource`` module)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # bytes on macOS, KiB on Linux


def device_name(device: torch.device) -> str:
    """``cpu`` or ``cuda (NVIDIA H100 80GB HBM3)``: the device as results tables show it."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def train(cfg: DictConfig | Any, callback: Callable[[int], None] | None = None) -> dict:
    """Train, evaluate and checkpoint one run described by ``cfg``.

    Args:
        cfg: a composed `TrainConfig` (hydra `DictConfig` or the dataclass).
        callback: called with the step number after every optimiser step (tests use it to simulate a kill).

    Returns:
        the final evaluation metrics plus ``checkpoint`` (folder) and ``minutes`` (wall time of this process).

    Raises:
        TrainingError: non-finite loss, or a resume that does not match the config.
        DatasetError: missing or malformed dataset folder.
        ValueError: a bad config value, naming the field.
    """
    t0 = time.time()
    _check_config(cfg)
    t = cfg.trainer
    if t.threads:
        torch.set_num_threads(t.threads)
    device = resolve_device(t.device)
    rank, world, device = _init_distributed(device)
    precision = resolve_precision(t.precision, device)
    run_dir = Path(t.out_dir)
    is_main = rank == 0
    progress = t.progress and is_main

    # Data (rank 0 builds a missing cache; the others wait for it).
    if is_main:
        root = ensure_dataset(cfg.task, progress=progress)
    if world > 1:
        dist.barrier()
        root = ensure_dataset(cfg.task, progress=False)
    meta_task = task_meta(root)
    train_ds = PuzzleDataset(root, "train", augment=cfg.task.augment, seed=t.seed)
    stream = BatchStream(train_ds, t.batch_size, t.seed, rank, world)

    # Model and optimisation.
    torch.manual_seed(t.seed + rank)
    model = build_model(
        cfg.model.name, cfg.model.size, cfg.task.name, task_meta=meta_task, **model_overrides(cfg.model)
    )
    model.to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)  # this run's peak, not an earlier run's in the same process
    n_params = sum(p.numel() for p in model.parameters())
    opt = make_optimizer(model, t)
    ema = EMA(model, t.ema_rate) if t.ema else None
    if t.compile:
        compile_blocks(model)
    ddp_model: torch.nn.Module = model
    if world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device] if device.type == "cuda" else None,
            # the paper Attractor's step-zero embedding is a parameter that no backward mode reaches
            find_unused_parameters=any(p.requires_grad for n, p in model.named_parameters() if n.endswith("_init")),
        )

    resolved = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else asdict(cfg)
    meta = {
        "model": asdict(model.config),
        "task": {"name": cfg.task.name, "kind": meta_task["kind"], "data_dir": str(root)},
        "config": resolved,
        "seed": t.seed,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "parameters": n_params,
        "weights": "ema" if ema else "raw",
    }

    if not t.resume and (run_dir / "checkpoints" / "latest").exists():
        raise TrainingError(
            f"{run_dir} already holds checkpoints of an earlier run; pass trainer.resume=true to continue it, or "
            f"choose another trainer.out_dir"
        )
    micro = t.batch_size // world // t.grad_accum
    carries: list[Carry] | None = None
    step = 0
    resume_step = None
    # Budget accounting, checkpointed so a resumed run keeps counting: training-loop seconds and measured FLOPs.
    spent = {"seconds": 0.0, "flops": 0.0}
    if t.resume:
        try:
            ckpt = find_checkpoint(run_dir)
        except FileNotFoundError:
            ckpt = None
            if is_main:
                print(f"trainer.resume=true: no checkpoint in {run_dir} yet, starting from scratch", file=sys.stderr)
        if ckpt is not None:
            old = read_meta(ckpt)
            if old["model"] != meta["model"]:
                raise TrainingError(f"cannot resume {ckpt}: its model config differs from this run's")
            for key in ("batch_size", "grad_accum", "seed"):
                was, now = old["config"]["trainer"][key], getattr(t, key)
                if was != now:
                    raise TrainingError(f"cannot resume {ckpt}: it ran with trainer.{key}={was}, this run has {now}")
            state = torch.load(ckpt / TRAINER_STATE, map_location="cpu", weights_only=True)
            if state["world"] != world:
                raise TrainingError(f"cannot resume {ckpt}: it was written by {state['world']} processes, not {world}")
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            if ema is not None:
                ema.shadow = {k: v.to(device) for k, v in state["ema"].items()}
            stream.load_state_dict(state["stream"][rank])
            carries = _carry_from(state["carries"][rank], device)
            torch.set_rng_state(state["rng"][rank]["cpu"])
            if device.type == "cuda" and state["rng"][rank].get("cuda") is not None:
                torch.cuda.set_rng_state(state["rng"][rank]["cuda"], device)
            step = resume_step = int(state["step"])
            spent = {"seconds": float(state.get("train_seconds", 0.0)), "flops": float(state.get("train_flops", 0.0))}
            if is_main:
                print(f"resuming {run_dir} from step {step}", file=sys.stderr)

    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    logger = MetricsLogger(run_dir, is_main, t.tensorboard, resume_step)

    def checkpoint(step: int, eval_metrics: dict | None = None) -> Path | None:
        # Every rank contributes its data position, carries and RNG; rank 0 writes.
        local = {
            "stream": stream.state_dict(),
            "carries": _carry_state(carries) if carries is not None else None,
            "rng": {
                "cpu": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            },
        }
        gathered = [local]
        if world > 1:
            gathered = [None] * world
            dist.all_gather_object(gathered, local)
        if not is_main:
            return None
        trainer_state = {
            "step": step,
            "world": world,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "ema": ema.shadow if ema else None,
            "stream": [g["stream"] for g in gathered],
            "carries": [g["carries"] for g in gathered],
            "rng": [g["rng"] for g in gathered],
            "train_seconds": spent["seconds"],
            "train_flops": spent["flops"],
        }
        weights = ema.weights(model) if ema else model.state_dict()
        return save_checkpoint(
            run_dir, step, weights, {**meta, "metrics": eval_metrics or {}}, trainer_state, keep=t.keep_checkpoints
        )

    ema_model: RecursiveModel | None = None

    def run_eval(step: int, final: bool) -> dict:
        nonlocal ema_model
        eval_model = model
        if ema is not None:
            if ema_model is None:
                # One module for the averaged weights; its throwaway init must not move the training RNG.
                with torch.random.fork_rng(devices=[]):
                    ema_model = from_config(model.config).to(device)
            ema_model.load_state_dict(ema.weights(model))
            eval_model = ema_model
        metrics = evaluate(
            eval_model,
            root,
            device=device,
            precision=precision,
            batch_size=t.eval_batch_size,
            limit=None if final else t.eval_limit,
            progress=progress,
            seed=t.seed,
        )
        logger.log(step, metrics)
        return metrics

    if is_main:
        budget = "".join(
            f", at most {v:g} {u}" for v, u in ((t.max_minutes, "min"), (t.max_flops, "FLOPs")) if v is not None
        )
        print(
            f"{cfg.model.name}-{cfg.model.size} ({n_params / 1e6:.2f}M params) on {cfg.task.name} [{root}], "
            f"{device} {precision}, batch {t.batch_size}, {t.steps} steps{budget} -> {run_dir}",
            file=sys.stderr,
        )

    def budget_spent() -> float:
        # The fraction of the tightest budget used (0 without budgets).
        fractions = [0.0]
        if t.max_minutes is not None:
            fractions.append(spent["seconds"] / (60 * t.max_minutes))
        if t.max_flops is not None:
            fractions.append(spent["flops"] / t.max_flops)
        return max(fractions)

    flops_per_step: float | None = None  # the latest measurement, extrapolated until the next one
    last_nstep: float | None = None
    stopped_by = "steps"
    bar = tqdm(total=t.steps, initial=step, desc="train", unit="step", disable=not progress, dynamic_ncols=True)
    sums: dict[str, float] = {}
    solver_sums = np.zeros(3)  # solver evaluations, final residual, fraction of solves at max_iter
    last_eval: dict = {}
    try:
        while step < t.steps:
            if budget_spent() >= 1.0:
                stopped_by = "minutes" if t.max_minutes and spent["seconds"] >= 60 * t.max_minutes else "flops"
                break
            t_step = time.time()
            batch = {k: v.to(device, non_blocking=True) for k, v in stream.next().items()}
            if carries is None:
                carries = [
                    model.initial_carry({k: v[i * micro : (i + 1) * micro] for k, v in batch.items()})
                    for i in range(t.grad_accum)
                ]
            factor = lr_factor(step, t.lr_warmup_steps, t.steps, t.lr_min_ratio, budget_spent())
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * factor
            ddp_model.train()
            loss_total = 0.0
            measure = t.count_flops and (flops_per_step is None or step % t.log_interval == 0)
            counter = FlopCounterMode(display=False) if measure else None
            with counter if counter is not None else contextlib.nullcontext():
                for i in range(t.grad_accum):
                    mb = {k: v[i * micro : (i + 1) * micro] for k, v in batch.items()}
                    with autocast_for(device, precision):
                        carries[i], out = ddp_model(carries[i], mb)
                    loss, s = act_loss(out, carries[i].data["labels"], carries[i].halted, cfg.model.loss_type)
                    (loss / t.grad_accum).backward()
                    loss_total += loss.item() / t.grad_accum
                    for k, v in s.items():
                        sums[k] = sums.get(k, 0.0) + float(v)
                    if "solver_nstep" in out:
                        solver_sums += (
                            out["solver_nstep"].float().mean().item(),
                            out["solver_residual"].float().mean().item(),
                            out["solver_hit_max"].float().mean().item() if "solver_hit_max" in out else 0.0,
                        )
            if counter is not None:
                # FLOPs of this rank's micro-batches; the ranks run the same shapes, so the step is world x that.
                flops_per_step = float(counter.get_total_flops()) * world
            if not math.isfinite(loss_total):
                raise TrainingError(
                    f"loss is {loss_total} at step {step + 1}; lower trainer.lr, try trainer.precision=fp32, or "
                    f"check the data (run dir: {run_dir})"
                )
            if t.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update(model)
            step += 1
            spent["flops"] += flops_per_step or 0.0
            if device.type == "cuda":
                torch.cuda.synchronize(device)  # the step's wall time, not its launch time
            elapsed = time.time() - t_step
            if world > 1:  # every rank must stop at the same step: take the slowest rank's clock
                elapsed = float(_all_reduce(torch.tensor([elapsed], device=device), world, op="max")[0])
            spent["seconds"] += elapsed
            sums["loss"] = sums.get("loss", 0.0) + loss_total
            sums["_steps"] = sums.get("_steps", 0.0) + 1
            bar.update(1)
            if step % t.log_interval == 0 or step == t.steps:
                totals = torch.tensor([sums.get(k, 0.0) for k in sorted(sums)], dtype=torch.float64, device=device)
                totals = dict(zip(sorted(sums), _all_reduce(totals, world).tolist(), strict=True))
                n_steps = totals["_steps"] / world
                halted = max(totals.get("count", 0.0), 1.0)
                metrics = {
                    "train/loss": totals["loss"] / world / n_steps,
                    "train/lm_loss": totals.get("lm_loss", 0.0) / (n_steps * t.batch_size),
                    "train/q_halt_loss": totals.get("q_halt_loss", 0.0) / (n_steps * t.batch_size),
                    "train/accuracy": totals.get("accuracy", 0.0) / halted,
                    "train/exact_accuracy": totals.get("exact_accuracy", 0.0) / halted,
                    "train/q_halt_accuracy": totals.get("q_halt_accuracy", 0.0) / halted,
                    "train/lr": opt.param_groups[0]["lr"],
                    "train/minutes": (time.time() - t0) / 60,
                    "train/loop_minutes": spent["seconds"] / 60,
                    "train/samples": step * t.batch_size,
                    "act/halted_per_step": totals.get("count", 0.0) / n_steps / t.batch_size,
                    "act/steps_mean": float(torch.cat([c.steps for c in carries]).float().mean()),
                }
                if "q_continue_loss" in totals and cfg.model.name == "hrm":
                    metrics["train/q_continue_loss"] = totals["q_continue_loss"] / (n_steps * t.batch_size)
                if t.count_flops:
                    metrics["compute/flops"] = spent["flops"]
                    metrics["compute/flops_per_sample"] = (flops_per_step or 0.0) / t.batch_size
                if solver_sums.any():
                    metrics["solver/nstep_mean"] = solver_sums[0] / (n_steps * t.grad_accum)
                    last_nstep = metrics["solver/nstep_mean"]
                    metrics["solver/residual_mean"] = solver_sums[1] / (n_steps * t.grad_accum)
                    metrics["solver/hit_max_fraction"] = solver_sums[2] / (n_steps * t.grad_accum)
                logger.log(step, metrics)
                bar.set_postfix(loss=f"{metrics['train/loss']:.3f}", exact=f"{metrics['train/exact_accuracy']:.3f}")
                sums, solver_sums = {}, np.zeros(3)
            if t.eval_interval and step % t.eval_interval == 0 and step < t.steps and is_main:
                last_eval = run_eval(step, final=False)
                tqdm.write(f"step {step}: eval exact accuracy {last_eval['eval/exact_accuracy']:.4f}", file=sys.stderr)
            if t.checkpoint_interval and step % t.checkpoint_interval == 0 and step < t.steps:
                checkpoint(step, last_eval)
            if callback is not None:
                callback(step)
    finally:
        bar.close()

    result: dict = {}
    if is_main:
        result = run_eval(step, final=True)
    ckpt = checkpoint(step, result)
    logger.close()
    if world > 1:
        dist.barrier()
    if is_main:
        run = {
            "model": cfg.model.name,
            "size": cfg.model.size,
            "task": cfg.task.name,
            "device": device_name(device),
            "precision": precision,
            "seed": t.seed,
            "world": world,
            "steps": step,
            "batch_size": t.batch_size,
            "samples": step * t.batch_size,
            "train_minutes": spent["seconds"] / 60,
            "train_flops": spent["flops"] if t.count_flops else None,
            "flops_per_sample": spent["flops"] / max(step * t.batch_size, 1) if t.count_flops else None,
            "stopped_by": stopped_by,
            "max_minutes": t.max_minutes,
            "max_flops": t.max_flops,
            "solver_nstep_mean": last_nstep,
            # Peak memory: the CUDA allocator's high-water mark, or the process's peak resident set on CPU (the
            # whole process, so a fresh process per run gives the run's own peak).
            "peak_memory_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
            "peak_rss_bytes": peak_rss_bytes(),
        }
        result = {
            **result,
            "checkpoint": str(ckpt),
            "minutes": (time.time() - t0) / 60,
            "parameters": n_params,
            "run": run,
        }
        (run_dir / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
