"""The training recipe both trainers share: setup -> train -> evaluate -> save, written once.

`Recipe` owns what every run needs: device, precision and DDP setup; the optimiser step (schedule, gradient
clipping, zeroing); wall-time and FLOP budgets, with training FLOPs measured by
`torch.utils.flop_counter.FlopCounterMode`; metrics logging; checkpoints and an exact ``trainer.resume=true``;
a CPU preflight that says what a run needs before it starts; and ``results.json``. A recipe subclass gives only
the data, the model and the loss (`recursive_models.trainer.PuzzleRecipe`,
`recursive_models.lm.trainer.LMRecipe`)::

    class MyRecipe(Recipe):
        def setup_data(self): ...                 # datasets, batch streams (self.rank / self.world known)
        def setup_model(self): ...                # -> (model, optimizer), on self.device
        def forward_backward(self) -> float: ...  # one optimiser step's forward + backward; returns the loss
        def train_metrics(self) -> dict: ...      # what a log step writes (the base adds lr, time, FLOPs)
        def evaluate(self, final: bool) -> dict: ...
        def checkpoint_meta(self) -> dict: ...
    result = MyRecipe(cfg).run()                  # {**final metrics, "checkpoint": ..., "run": {...}}

The step loop is `Recipe.train`; one iteration is `Recipe.train_step` (budget accounting, FLOP measurement,
clipping) followed by `Recipe.after_step` (logging, evaluation, checkpoints, the test callback). Checkpoints hold
the model, the optimiser, every rank's RNG and data position (`Recipe.rank_state`) and the budget spent, so a
killed run resumes bit-identically on CPU. The ``trainer`` section must provide the fields read here: device,
precision, threads, steps, seed, out_dir, resume, progress, log_interval, eval_interval, checkpoint_interval,
keep_checkpoints, max_minutes, max_flops, count_flops, grad_clip, preflight.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from recursive_models.checkpoint import TRAINER_STATE, find_checkpoint, read_meta, save_checkpoint


class TrainingError(RuntimeError):
    """A run cannot go on (NaN loss, bad resume state, a run too big for this machine); the message says why."""


# ---- devices, precision, processes -----------------------------------------------------------------------------
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


def init_distributed(device: torch.device) -> tuple[int, int, torch.device]:
    """``(rank, world, device)``: joins the ``torchrun`` process group when ``WORLD_SIZE`` > 1 (NCCL / gloo)."""
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


def all_reduce(t: torch.Tensor, world: int, op: str = "sum") -> torch.Tensor:
    """In-place sum (or ``max``) over the DDP processes; the tensor itself when there is one process."""
    if world > 1:
        dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return t


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


# ---- memory of this machine (the CPU preflight) ----------------------------------------------------------------
def current_rss_bytes() -> int | None:
    """This process's resident set now (Linux ``/proc``; ``None`` elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def available_memory_bytes() -> int | None:
    """Memory this process may still take: ``MemAvailable``, capped by a cgroup limit; ``None`` if unknown."""
    avail = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            limit, usage = (Path(f).read_text().strip() for f in (limit_file, usage_file))
            if limit.isdigit() and int(limit) < 1 << 60:
                room = int(limit) - int(usage)
                avail = room if avail is None else min(avail, room)
            break
        except OSError:
            continue
    return avail


def release_free_heap() -> None:
    """Hand the heap's free memory back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    Without it memory freed by earlier work (a dataset build, an earlier probe) stays resident and is reused, so a
    probe's resident-set growth hides what the probe allocated.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class RSSPeak:
    """Context manager sampling this process's resident set every ``interval`` seconds: ``.start``, ``.peak``.

    The heap's free memory is released first (`release_free_heap`), so the growth counts what the block allocates.
    """

    def __init__(self, interval: float = 0.002):
        release_free_heap()
        self.interval = interval
        self.start = self.peak = current_rss_bytes() or 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, current_rss_bytes() or 0)

    def __enter__(self) -> RSSPeak:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss_bytes() or 0)


class SavedBytes:
    """Context manager adding up the bytes autograd saves for backward (``.bytes``), parameters excluded.

    Every saved storage is live at once when the forward ends, so this is a lower bound on a forward+backward's
    memory that, unlike the resident set, does not depend on what the allocator kept from earlier work: a heap
    warmed by a dataset build or an earlier probe hands freed memory back out and hides the growth.
    """

    def __init__(self, model: torch.nn.Module):
        self.bytes = 0
        self._seen = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in self._seen and storage.device.type != "meta":
            self._seen.add(storage.data_ptr())
            self.bytes += storage.nbytes()
        return t

    def __enter__(self) -> SavedBytes:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._hooks.__exit__(*exc)


# ---- logging --------------------------------------------------------------------------------------------------
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


def check_budgets(t: Any) -> None:
    """One-line `ValueError` for a bad budget or loop field of a ``trainer`` section."""
    for name in ("steps", "log_interval", "keep_checkpoints"):
        if getattr(t, name) < 1:
            raise ValueError(f"trainer.{name} must be >= 1, got {getattr(t, name)}")
    for name in ("eval_interval", "checkpoint_interval"):
        if getattr(t, name) < 0:
            raise ValueError(f"trainer.{name} must be >= 0 (0: never), got {getattr(t, name)}")
    for name in ("max_minutes", "max_flops"):
        if getattr(t, name) is not None and not getattr(t, name) > 0:
            raise ValueError(f"trainer.{name} must be > 0 (or null for no budget), got {getattr(t, name)}")
    if t.max_flops is not None and not t.count_flops:
        raise ValueError("trainer.max_flops needs trainer.count_flops=true")


# ---- the recipe -----------------------------------------------------------------------------------------------
class Recipe:
    """One training run: ``run()`` = `setup` -> `train` -> `evaluate` -> `save` -> results.json.

    Subclasses implement the hooks marked "subclass" below; everything else is shared.
    """

    #: the exception a failed run raises (subclasses narrow it)
    error: type[Exception] = TrainingError
    #: trainer fields a resumed run must share with the checkpoint it continues
    resume_keys: tuple[str, ...] = ("batch_size", "seed")
    #: examples in the smaller of the two preflight probes, at most (the second has twice as many)
    probe_examples: int = 8

    def __init__(self, cfg: Any, callback: Callable[[int], None] | None = None):
        self.cfg, self.t, self.callback = cfg, cfg.trainer, callback
        self.t0 = time.time()
        self.step, self.resume_step = 0, None
        # Budget accounting, checkpointed so a resumed run keeps counting: training-loop seconds, measured FLOPs.
        self.spent = {"seconds": 0.0, "flops": 0.0}
        self.flops_per_step: float | None = None  # the latest measurement, extrapolated until the next one
        self.stopped_by = "steps"
        self.lr, self.grad_norm = 0.0, math.nan
        self.last_eval: dict = {}
        self.preflight_estimate: dict | None = None  # what the CPU preflight predicted (in results.json)

    # ---- subclass hooks ----------------------------------------------------------------------------------------
    def check_config(self) -> None:
        """Validate the config before anything is prepared (subclass; call ``super()`` for the budgets)."""
        check_budgets(self.t)

    def setup_data(self) -> None:  # pragma: no cover - abstract
        """Prepare datasets and batch streams (subclass)."""
        raise NotImplementedError

    def setup_model(self) -> tuple[torch.nn.Module, Any]:  # pragma: no cover - abstract
        """The model on ``self.device`` and its optimiser (subclass)."""
        raise NotImplementedError

    def set_lr(self, step: int, budget_spent: float) -> float:  # pragma: no cover - abstract
        """Apply the schedule for optimiser step ``step`` (0-based); return the lr to log (subclass)."""
        raise NotImplementedError

    def forward_backward(self) -> float:  # pragma: no cover - abstract
        """Forward and backward of one optimiser step's batch through ``self.ddp_model``; the loss (subclass)."""
        raise NotImplementedError

    def probe_loss(self, n: int) -> torch.Tensor:  # pragma: no cover - abstract
        """The loss of ``n`` examples, for the preflight; must not move any data stream (subclass)."""
        raise NotImplementedError

    def train_metrics(self) -> dict:  # pragma: no cover - abstract
        """The training metrics of a log step, reduced over ranks (subclass)."""
        raise NotImplementedError

    def evaluate(self, final: bool) -> dict:  # pragma: no cover - abstract
        """Evaluation metrics of the current weights (subclass; called on rank 0 only)."""
        raise NotImplementedError

    def checkpoint_meta(self) -> dict:  # pragma: no cover - abstract
        """The ``meta.json`` description of every checkpoint (subclass)."""
        raise NotImplementedError

    def describe(self) -> str:
        """The one line printed when a run starts."""
        return f"{self.n_params / 1e6:.2f}M params, {self.device} {self.precision}, {self.t.steps} steps"

    def micro_batch(self) -> int:
        """Examples per forward (the preflight extrapolates to it)."""
        return self.t.batch_size // self.world

    def forwards_per_step(self) -> int:
        """Forwards per optimiser step (gradient accumulation)."""
        return 1

    def log_due(self, step: int) -> bool:
        """Whether step ``step`` (1-based, just finished) writes a log line."""
        return step % self.t.log_interval == 0 or step == self.t.steps

    def postfix(self, metrics: dict) -> dict:
        """What the progress bar shows after a log step."""
        return {"loss": f"{metrics['train/loss']:.3f}"}

    def after_optimizer_step(self) -> None:
        """Called after every optimiser step (e.g. an EMA update)."""

    def weights(self) -> dict[str, torch.Tensor]:
        """The state dict a checkpoint publishes."""
        return self.model.state_dict()

    def rank_state(self) -> dict:
        """This rank's resume state besides its RNG (data position, carries); saved per rank."""
        return {}

    def shared_state(self) -> dict:
        """Resume state held once (e.g. EMA weights)."""
        return {}

    def load_state(self, state: dict) -> None:
        """Restore `rank_state` (``state[key][self.rank]``) and `shared_state` from a checkpoint."""

    def after_save(self, ckpt: Path) -> None:
        """Called on rank 0 after each checkpoint is written (e.g. to add files beside the weights)."""

    def find_unused_parameters(self) -> bool:
        """DDP's ``find_unused_parameters``: a parameter no backward reaches needs it."""
        return False

    def run_summary(self) -> dict:
        """Fields of ``results.json``'s ``run`` section beyond the shared ones (model, size, task...)."""
        return {}

    def result_extra(self) -> dict:
        """Fields of ``results.json`` beyond the final metrics and the shared ones."""
        return {}

    # ---- the four steps --------------------------------------------------------------------------------------
    def run(self) -> dict:
        """Set up, train, evaluate, save; the final metrics, ``checkpoint`` and ``run`` ({} off rank 0)."""
        self.setup()
        self.train()
        final = self.log_eval(final=True) if self.is_main else {}
        ckpt = self.save(final)
        return self.finish(final, ckpt)

    def setup(self) -> None:
        """Config checks, device and processes, data, model, optimiser, DDP, resume, logger, preflight."""
        self.check_config()
        t = self.t
        if t.threads:
            torch.set_num_threads(t.threads)
        self.rank, self.world, self.device = init_distributed(resolve_device(t.device))
        self.precision = resolve_precision(t.precision, self.device)
        self.is_main = self.rank == 0
        self.progress = t.progress and self.is_main
        self.run_dir = Path(t.out_dir)
        self.setup_data()
        self.model, self.opt = self.setup_model()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)  # this run's peak, not an earlier run's in the process
        self.n_params = sum(p.numel() for p in self.model.parameters())
        self.meta = self.checkpoint_meta()
        self.resume()
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.logger = MetricsLogger(self.run_dir, self.is_main, getattr(t, "tensorboard", False), self.resume_step)
        if self.is_main:
            print(f"{self.describe()} -> {self.run_dir}", file=sys.stderr)
        if t.preflight and self.device.type == "cpu" and self.world == 1 and self.step < t.steps:
            self.preflight()  # on the bare module: a backward outside DDP's forward would confuse its reducer
        self.ddp_model = self.model
        if self.world > 1:
            self.ddp_model = torch.nn.parallel.DistributedDataParallel(
                self.model,
                device_ids=[self.device] if self.device.type == "cuda" else None,
                find_unused_parameters=self.find_unused_parameters(),
            )

    def train(self) -> None:
        """The step loop, until ``trainer.steps`` or a budget ends it."""
        t = self.t
        bar = tqdm(total=t.steps, initial=self.step, desc="train", unit="step", disable=not self.progress,
                   dynamic_ncols=True)  # fmt: skip
        try:
            while self.step < t.steps:
                if self.budget_spent() >= 1.0:
                    over = t.max_minutes and self.spent["seconds"] >= 60 * t.max_minutes
                    self.stopped_by = "minutes" if over else "flops"
                    break
                self.train_step()
                bar.update(1)
                self.after_step(bar)
        finally:
            bar.close()

    def log_eval(self, final: bool) -> dict:
        """`evaluate` the current weights (rank 0) and log the metrics at the current step."""
        metrics = self.evaluate(final)
        self.logger.log(self.step, metrics)
        return metrics

    def save(self, metrics: dict | None = None) -> Path | None:
        """Write a checkpoint at the current step (every rank gives its state; rank 0 writes; returns its folder)."""
        local = {"rng": self._rng_state(), **self.rank_state()}
        gathered = [local]
        if self.world > 1:
            gathered = [None] * self.world
            dist.all_gather_object(gathered, local)
        if not self.is_main:
            return None
        trainer_state = {
            "step": self.step,
            "world": self.world,
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            **self.shared_state(),
            **{k: [g[k] for g in gathered] for k in local},
            "train_seconds": self.spent["seconds"],
            "train_flops": self.spent["flops"],
        }
        ckpt = save_checkpoint(self.run_dir, self.step, self.weights(), {**self.meta, "metrics": metrics or {}},
                               trainer_state, keep=self.t.keep_checkpoints)  # fmt: skip
        self.after_save(ckpt)
        return ckpt

    # ---- pieces of the steps ---------------------------------------------------------------------------------
    def train_step(self) -> None:
        """One optimiser step: schedule, forward/backward (FLOPs measured), clip, step, budget accounting."""
        t = self.t
        t_step = time.time()
        self.lr = self.set_lr(self.step, self.budget_spent())
        self.ddp_model.train()
        measure = t.count_flops and (self.flops_per_step is None or self.step % t.log_interval == 0)
        counter = FlopCounterMode(display=False) if measure else None
        with counter if counter is not None else contextlib.nullcontext():
            loss = self.forward_backward()
        if counter is not None:
            # FLOPs of this rank's share; the ranks run the same shapes, so the step is world x that.
            self.flops_per_step = float(counter.get_total_flops()) * self.world
        if not math.isfinite(loss):
            raise self.error(
                f"loss is {loss} at step {self.step + 1}; lower trainer.lr, try trainer.precision=fp32, or check "
                f"the data (run dir: {self.run_dir})"
            )
        # max_norm=inf only measures the norm: the gradients are multiplied by exactly 1.0
        self.grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip or math.inf))
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.after_optimizer_step()
        self.step += 1
        self.spent["flops"] += self.flops_per_step or 0.0
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the step's wall time, not its launch time
        elapsed = time.time() - t_step
        if self.world > 1:  # every rank must stop at the same step: take the slowest rank's clock
            elapsed = float(all_reduce(torch.tensor([elapsed], device=self.device), self.world, op="max")[0])
        self.spent["seconds"] += elapsed

    def after_step(self, bar: tqdm) -> None:
        """Logging, interval evaluation and checkpoints, then the callback."""
        t, step = self.t, self.step
        if self.log_due(step):
            metrics = {
                **self.train_metrics(),
                "train/lr": self.lr,
                "train/grad_norm": self.grad_norm,
                "train/minutes": (time.time() - self.t0) / 60,
                "train/loop_minutes": self.spent["seconds"] / 60,
                "train/samples": step * t.batch_size,
            }
            if t.count_flops:
                metrics["compute/flops"] = self.spent["flops"]
                metrics["compute/flops_per_sample"] = (self.flops_per_step or 0.0) / t.batch_size
            self.logger.log(step, metrics)
            bar.set_postfix(self.postfix(metrics))
        if t.eval_interval and step % t.eval_interval == 0 and step < t.steps and self.is_main:
            self.last_eval = self.log_eval(final=False)
        if t.checkpoint_interval and step % t.checkpoint_interval == 0 and step < t.steps:
            self.save(self.last_eval)
        if self.callback is not None:
            self.callback(step)

    def budget_spent(self) -> float:
        """The fraction of the tightest budget used (0 without budgets)."""
        t = self.t
        fractions = [0.0]
        if t.max_minutes is not None:
            fractions.append(self.spent["seconds"] / (60 * t.max_minutes))
        if t.max_flops is not None:
            fractions.append(self.spent["flops"] / t.max_flops)
        return max(fractions)

    def all_reduce_sums(self, sums: dict[str, float]) -> dict[str, float]:
        """Sum a dict of floats over the ranks (float64)."""
        keys = sorted(sums)
        totals = torch.tensor([sums[k] for k in keys], dtype=torch.float64, device=self.device)
        return dict(zip(keys, all_reduce(totals, self.world).tolist(), strict=True))

    def _rng_state(self) -> dict:
        return {
            "cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
        }

    def resume(self) -> None:
        """Continue from ``RUN/checkpoints/latest`` when ``trainer.resume=true``; refuse to mix two runs."""
        t = self.t
        if not t.resume and (self.run_dir / "checkpoints" / "latest").exists():
            raise self.error(
                f"{self.run_dir} already holds checkpoints of an earlier run; pass trainer.resume=true to continue "
                f"it, or choose another trainer.out_dir"
            )
        if not t.resume:
            return
        try:
            ckpt = find_checkpoint(self.run_dir)
        except FileNotFoundError:
            if self.is_main:
                print(f"trainer.resume=true: no checkpoint in {self.run_dir} yet, starting from scratch",
                      file=sys.stderr)  # fmt: skip
            return
        old = read_meta(ckpt)
        if old["model"] != self.meta["model"]:
            raise self.error(f"cannot resume {ckpt}: its model config differs from this run's")
        for key in self.resume_keys:
            was, now = old["config"]["trainer"][key], getattr(t, key)
            if was != now:
                raise self.error(f"cannot resume {ckpt}: it ran with trainer.{key}={was}, this run has {now}")
        state = torch.load(ckpt / TRAINER_STATE, map_location="cpu", weights_only=True)
        if state["world"] != self.world:
            raise self.error(f"cannot resume {ckpt}: it was written by {state['world']} processes, not {self.world}")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.load_state(state)
        rng = state["rng"][self.rank]
        torch.set_rng_state(rng["cpu"])
        if self.device.type == "cuda" and rng.get("cuda") is not None:
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.step = self.resume_step = int(state["step"])
        self.spent = {"seconds": float(state.get("train_seconds", 0.0)), "flops": float(state.get("train_flops", 0.0))}
        if self.is_main:
            print(f"resuming {self.run_dir} from step {self.step}", file=sys.stderr)

    def preflight(self) -> None:
        """Say what a CPU run needs before its first step, and refuse one that would not fit in memory.

        Two forward+backward probes of ``n`` and ``2n`` examples (RNG forked, gradients dropped after) give the
        per-example time and memory; extrapolated to the micro-batch they give the step's time and the run's peak
        (plus the optimiser state, 2 x the parameters). Memory is the larger of two measures: the resident set's
        growth (the heap's free memory released first, `RSSPeak`) and the bytes saved for backward plus the
        gradients (`SavedBytes`: allocator-independent, a lower bound). A run estimated above 90% of the memory this
        process may take is refused with a batch size that would fit (at 70%: on the 27M models the estimate ran
        6-8% below the measured peak, README "CPU preflight"); a run estimated at over a minute per step or over an
        hour in total is announced with its estimate.
        """
        micro, t = self.micro_batch(), self.t
        n = max(1, min(self.probe_examples, micro // 16))
        if micro < 2 * n:
            return
        secs, grown, saved = [], [], []  # per probe: seconds, resident bytes grown, bytes saved for backward
        rss0 = current_rss_bytes()
        with torch.random.fork_rng(devices=[]):
            for k in (n, 2 * n):
                with RSSPeak() as mem:
                    start = time.perf_counter()
                    with SavedBytes(self.model) as kept:
                        loss = self.probe_loss(k)
                    loss.backward()
                    secs.append(time.perf_counter() - start)
                del loss
                self.model.zero_grad(set_to_none=True)
                grown.append(max(mem.peak - mem.start, 0))
                saved.append(kept.bytes)
        per_example_s = max((secs[1] - secs[0]) / n, secs[1] / (2 * n) / 4)  # a floor: fixed costs can hide the slope
        step_s = (secs[1] + per_example_s * (micro - 2 * n)) * self.forwards_per_step()
        remaining = (t.steps - self.step) * step_s
        need = avail = None
        saved_slope = max(saved[1] - saved[0], 0) / n
        if rss0 is not None:
            # Two estimates of the memory above what the process holds now, the larger taken: the resident set's
            # growth (transients included, but hidden by memory the heap kept from earlier work), and the bytes
            # saved for backward plus the gradients (allocator-independent, a lower bound).
            param_b = sum(p.numel() * p.element_size() for p in self.model.parameters())
            rss_slope = max(grown[1] - grown[0], 0) / n
            by_rss = grown[1] + rss_slope * (micro - 2 * n)
            by_saved = saved[1] + saved_slope * (micro - 2 * n) + param_b
            per_example_b = rss_slope if by_rss >= by_saved else saved_slope
            extra = max(by_rss, by_saved) + 2 * param_b  # + the optimiser state (two moments)
            need = rss0 + extra
            avail = available_memory_bytes()
        self.preflight_estimate = {"examples": 2 * n, "step_seconds": step_s, "peak_rss_bytes": need,
                                   "available_bytes": avail, "saved_bytes_per_example": saved_slope}  # fmt: skip
        if need is not None and avail is not None and extra > 0.9 * avail:
            # What a micro-batch's examples may take; 0.7, not 0.9: the estimate ran 6-8% low on the 27M models
            room = 0.7 * avail - (extra - per_example_b * micro)
            unit = self.world * self.forwards_per_step()
            fit = int(room / per_example_b) * unit // unit * unit if per_example_b > 0 and room > 0 else 0
            advice = (f"or trainer.batch_size={min(fit, t.batch_size - unit)} to try it on CPU" if fit >= unit
                      else "the model and its optimiser alone do not fit on this machine's CPU")  # fmt: skip
            raise self.error(
                f"GPU-sized: trainer.batch_size={t.batch_size} needs about {need / 1e9:.1f} GB here "
                f"({per_example_b / 1e6:.1f} MB per example, estimated from {2 * n} examples) and about "
                f"{step_s:.0f} s/step, but {(rss0 + avail) / 1e9:.1f} GB is available; pass trainer.device=cuda, "
                f"{advice} (trainer.preflight=false skips this check)"
            )
        if step_s > 60 or remaining > 3600:
            mem = f" and about {need / 1e9:.1f} GB" if need is not None else ""
            print(
                f"estimated from {2 * n} examples: about {step_s:.1f} s/step{mem} here, {t.steps - self.step} steps "
                f"take about {remaining / 3600:.1f} h; trainer.device=cuda or a smaller trainer.batch_size is faster",
                file=sys.stderr,
            )

    def finish(self, final: dict, ckpt: Path | None) -> dict:
        """Close the logger, wait for every rank, and (rank 0) write and return ``results.json``."""
        self.logger.close()
        if self.world > 1:
            dist.barrier()
        if not self.is_main:
            return {}
        t, step = self.t, self.step
        run = {
            **self.run_summary(),
            "device": device_name(self.device),
            "precision": self.precision,
            "seed": t.seed,
            "world": self.world,
            "steps": step,
            "batch_size": t.batch_size,
            "samples": step * t.batch_size,
            "train_minutes": self.spent["seconds"] / 60,
            "train_flops": self.spent["flops"] if t.count_flops else None,
            "flops_per_sample": self.spent["flops"] / max(step * t.batch_size, 1) if t.count_flops else None,
            "stopped_by": self.stopped_by,
            "max_minutes": t.max_minutes,
            "max_flops": t.max_flops,
            # Peak memory: the CUDA allocator's high-water mark, or the process's peak resident set on CPU (the
            # whole process, so a fresh process per run gives the run's own peak).
            "peak_memory_bytes": torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda" else None,
            "peak_rss_bytes": peak_rss_bytes(),
            "preflight": self.preflight_estimate,
        }
        result = {**final, **self.result_extra(), "checkpoint": str(ckpt), "minutes": (time.time() - self.t0) / 60,
                  "parameters": self.n_params, "run": run}  # fmt: skip
        (self.run_dir / "results.json").write_text(json.dumps(result, indent=2) + "\n")
        return result
