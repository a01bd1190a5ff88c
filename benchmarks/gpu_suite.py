r"""One prepared GPU run (issue 19): every measurement the CPU cannot make, in parts with a wall-clock budget each.

On the GPU machine, from the repository root (its image has Python 3.12 and torch but not hydra-core, omegaconf,
gymnasium or torchdeq, and reaches no package registry, so their wheels are prepared here first)::

    python benchmarks/gpu_suite.py --prepare-wheels          # here: pure-Python wheels for the image into .whl/
    # there, one command:
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD && python3 benchmarks/gpu_suite.py --out $OUT/gpu

    python benchmarks/gpu_suite.py --dry-run --device cpu --out /tmp/gpu-dry   # every part at toy sizes, ~1 min
    python benchmarks/gpu_suite.py --out DIR --parts step_bench training --budget step_bench=200

Parts, in the order they run (``--parts`` picks some; budgets in seconds, ``--budget NAME=S`` changes one,
``--budget-scale`` all; the seconds that parts leave unused go to the last one, the training):

1. ``gpu_tests``   the ``gpu``-marked tests (pytest on the test files that have any);
2. ``solvers``     ``memory_vs_depth`` and ``equilibrium_vs_torchdeq`` on the device, fp32 and bf16;
3. ``step_bench``  one supervision step (forward + backward + AdamW) of every puzzle model at 7m and 27m, bf16
                   autocast, eager and with ``torch.compile``: samples/s, peak memory, solver iterations/residuals;
4. ``training``    a short Sudoku-Extreme training of TRM-7M and the paper's Attractor-27M at the paper's batch:
                   loss curve, samples/s and the projected wall time of a full paper run on this device;
5. ``lm``          the LM families at ``small``: training tokens/s, and memory against solver/recurrence depth;
6. ``reference``   ours / reference step time for TRM and HRM, when a checkout is reachable (environment
                   ``ATTRACTOR_REFERENCE_TRM`` / ``ATTRACTOR_REFERENCE_HRM``, or ``refs/TRM`` / ``refs/HRM`` here).

Each part runs in its own process (fresh CUDA state; a crash or a hang stays in its part) that writes its JSON
after every measurement and stops starting new ones at its budget; the suite kills it ``GRACE_S`` later if it
has not stopped, keeping what the JSON holds. Output, at most 8 files in ``--out`` (what the GPU machine hands
back): ``partN_NAME.json`` for the six parts, ``summary.md`` (device, versions, commit, per-part status and
time, headline numbers) and ``suite.log`` (everything the parts printed). The committed copy of a GPU run lives
in ``benchmarks/results/gpu/``. Statuses: ``ok`` (done), ``budget`` (stopped at its budget; partial results),
``killed`` (stopped by the suite past budget + grace), ``error`` (the message is in the JSON), ``skipped``; a
measurement that raised inside a part (an out-of-memory at 27m, say) is recorded beside the others and counted in
the part's ``errors``, and the part goes on.

Part 4's data: the GPU machine has no Sudoku-Extreme, so the suite generates a small set (`TRAIN_DATA`) with
``python -m puzzles.build`` in the background from the start; samples/s and the projection do not depend on it.
The commit is ``--commit``, else ``git rev-parse HEAD``, else ``.whl/COMMIT`` (written by ``--prepare-wheels``:
prepare after the last commit). ``--estimate JSON`` writes the CPU-based estimate of each part's GPU time that the
budgets rest on (``benchmarks/results/gpu_suite_estimate_cpu.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
for _p in (str(ROOT), str(BENCH)):  # run from a checkout without installing; benchmarks/ is a folder of scripts
    if _p not in sys.path:
        sys.path.insert(0, _p)

GRACE_S = 15  # past its budget a part gets this long to write its JSON before it is killed
WHEEL_DIR = ROOT / ".whl"
COMMIT_FILE = "COMMIT"  # written into the wheel folder by --prepare-wheels: the commit when the run was prepared
# The GPU image's Python; the wheels are resolved for it (pure-Python wheels, py3-none-any, match any platform).
IMAGE_PYTHON = "3.12"
IMAGE_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                   "manylinux1_x86_64")  # fmt: skip
#: what the GPU image lacks and the suite imports (hydra for the trainer's configs, gymnasium through `puzzles`,
#: torchdeq for equilibrium_vs_torchdeq, pydantic for the reference code of part 6); pinned to the versions this
#: project is tested with. Their other dependencies (PyYAML, packaging, numpy, cloudpickle, typing-extensions) are
#: on the image. SQLAlchemy (the leaderboard) and hypothesis (CPU tests) are not imported by the suite: not shipped.
WHEELS = {
    "hydra-core": "1.3.8",
    "omegaconf": "2.3.1",
    "antlr4-python3-runtime": "4.9.3",  # hydra/omegaconf need 4.9.*; PyPI has only its sdist: built here
    "gymnasium": "1.4.0",
    "farama-notifications": "0.0.6",
    "torchdeq": "0.1.0",
    # part 6 only: the reference TRM/HRM code's configs are pydantic models (pydantic-core is the one binary wheel)
    "pydantic": "2.13.4",
    "pydantic-core": "2.46.4",
    "annotated-types": "0.7.0",
    "typing-inspection": "0.4.2",
}
SDIST_ONLY = {"antlr4-python3-runtime"}
WHEEL_LIMIT_BYTES = 32 * 2**20  # the working tree travels to the GPU machine within 64 MiB, all of it together


@dataclass(frozen=True)
class Part:
    """One part of the suite: its number, name, default GPU budget (seconds) and what it measures."""

    number: int
    name: str
    budget_s: float
    what: str

    @property
    def filename(self) -> str:  # noqa: D102
        return f"part{self.number}_{self.name}.json"


# Budgets sum to 420 s; with the wheel install (~20 s), six process starts with CUDA initialisation (~5 s each,
# inside the budgets) and the kill grace, the one command stays under 8 minutes (the README's table gives the
# estimate behind each budget: `--estimate`). Run order: the fixed-size parts first, then the two that use
# whatever time they are given; the seconds that parts leave unused go to the last part (the training, where
# more time is more steps), so the sum of the budgets still bounds the run.
PARTS = [
    Part(1, "gpu_tests", 75, "gpu-marked tests"),
    Part(2, "solvers", 45, "memory_vs_depth + equilibrium_vs_torchdeq, fp32 and bf16"),
    Part(5, "lm", 30, "LM families at small: tokens/s, memory vs depth"),
    Part(6, "reference", 15, "ours/reference step time (TRM, HRM)"),
    Part(3, "step_bench", 150, "one supervision step of every puzzle model, 7m/27m, bf16, eager/compiled"),
    Part(4, "training", 105, "short Sudoku-Extreme training: TRM-7M, Attractor-27M"),
]
PART_BY_NAME = {p.name: p for p in PARTS}
REFERENCE_BUDGET_S = 40  # part 6 when a checkout is there: two train_step.py runs (3 + 1 steps of each side)
DRY_BUDGET_S = 90  # every part's budget in --dry-run (the toy work takes seconds; the budget only guards hangs)

# Part 4's dataset: built in the background while parts 1-3, 5 and 6 run (Sudoku-Extreme puzzles take the
# generator ~40 CPU-seconds per chunk of 50, on as many cores as there are chunks).
TRAIN_DATA = {"name": "sudoku-extreme", "train": 100, "test": 50}
DRY_TRAIN_DATA = {"name": "sudoku6", "train": 64, "test": 16}
TRAIN_RUNS = [  # (experiment config, share of the part's budget)
    ("paper_sudoku_trm_7m", 0.4),
    ("paper_sudoku_attractor_27m", 0.6),
]


# ---- recording -------------------------------------------------------------------------------------------
class Recorder:
    """A part's JSON document, rewritten atomically after every measurement, and the part's deadline."""

    def __init__(self, path: Path, part: Part, deadline: float, header: dict):
        self.path, self.part, self.deadline = path, part, deadline
        self.stopped_early = False
        self.data: dict[str, Any] = {"part": part.number, "name": part.name, "what": part.what, "status": "running",
                                     **header, "results": {}}  # fmt: skip
        self.save()

    def left(self) -> float:
        """Seconds until the deadline."""
        return self.deadline - time.time()

    def out_of_time(self, need: float = 0.0) -> bool:
        """True (and remembered) when fewer than ``need`` seconds are left: the part should stop measuring."""
        if self.left() <= need:
            self.stopped_early = True
            return True
        return False

    def failed(self) -> None:
        """Count one measurement that raised (its error is recorded beside it); the part goes on."""
        self.data["errors"] = self.data.get("errors", 0) + 1

    def save(self) -> None:  # noqa: D102
        write_json(self.path, self.data)


def write_json(path: Path, data: dict) -> None:
    """Write atomically (a killed writer leaves the previous version, never half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device) -> tuple[float, Any]:
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def peak_mib(device) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def reset_peak(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:500]


# ---- environment ------------------------------------------------------------------------------------------
def git_commit(explicit: str | None) -> str:
    """``--commit``, else ``git rev-parse HEAD`` (+ ``-dirty``), else the wheel folder's COMMIT file, else unknown."""
    if explicit:
        return explicit
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()  # fmt: skip
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    f = WHEEL_DIR / COMMIT_FILE
    if f.is_file():  # the device copy may have no .git: the commit the wheels were prepared at
        return f.read_text().strip() + " (from .whl/COMMIT, written by --prepare-wheels)"
    return "unknown"


def environment(device_name: str) -> dict:
    """Versions and the device, for every part's JSON and the summary."""
    import torch

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": device_name,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }
    if torch.cuda.is_available() and device_name.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name()
        env["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    with contextlib.suppress(ImportError):
        import triton

        env["triton"] = triton.__version__
    return env


def preflight() -> dict:
    """Which of the suite's third-party imports are missing (a missing one fails the parts that need it)."""
    import importlib.util

    mods = ["torch", "numpy", "numba", "hydra", "omegaconf", "gymnasium", "torchdeq", "safetensors", "tokenizers",
            "pandas", "tqdm", "yaml", "pytest", "matplotlib"]  # fmt: skip
    return {m: importlib.util.find_spec(m) is not None for m in mods}


# ---- part 1: the gpu-marked tests -------------------------------------------------------------------------
_TEST_LINE = re.compile(r"^(?P<id>\S+::\S+) (?P<outcome>PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)\b")


def part_gpu_tests(rec: Recorder, ctx: SimpleNamespace) -> None:
    """Pytest on the ``gpu`` marker over the test files that use it (on CPU the tests skip: collection is checked)."""
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py") if "mark.gpu" in p.read_text())
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-v", "-rA", "-p", "no:cacheprovider", *files]
    rec.data["results"] = {"command": " ".join(["python", *cmd[1:]]), "files": files}
    rec.save()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        out, _ = proc.communicate(timeout=max(5.0, rec.left() - 3))
        lines = out.splitlines()
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        lines = (out or "").splitlines()
        rec.stopped_early = True
    print("\n".join(lines[-60:]), flush=True)
    tests = {m["id"]: m["outcome"] for ln in lines if (m := _TEST_LINE.match(ln))}
    counts: dict[str, int] = {}
    for o in tests.values():
        counts[o.lower()] = counts.get(o.lower(), 0) + 1
    final = next((ln.strip("= ") for ln in reversed(lines) if re.search(r"\b(passed|failed|skipped|error|no tests)", ln)
                  and ln.startswith("=")), "")  # fmt: skip
    res = rec.data["results"]
    res.update(returncode=proc.returncode, counts=counts, tests=tests, pytest_summary=final)
    if proc.returncode not in (0, 1, 5):  # 1: some tests failed (a result); 2-4: pytest could not run them
        rec.failed()
    if proc.returncode not in (0, 5) or rec.stopped_early:
        res["output_tail"] = "\n".join(lines[-80:])[-6000:]
    rec.data["headline"] = final or f"pytest exited {proc.returncode}"


# ---- part 2: solver benchmarks ----------------------------------------------------------------------------
def part_solvers(rec: Recorder, ctx: SimpleNamespace) -> None:
    """``memory_vs_depth`` per (mode, depth) and ``equilibrium_vs_torchdeq`` per problem, in fp32 then bf16."""
    import memory_vs_depth as mvd
    import torch

    device = ctx.device
    res = rec.data["results"]
    shape = (2, 9, 16) if ctx.dry_run else (64, 81, 256)
    depths = (2, 4) if ctx.dry_run else mvd.DEPTHS
    for dtype in ("fp32", "bf16"):
        key = f"memory_vs_depth_{dtype}"
        entry = res[key] = {"state_shape": list(shape), "dtype": dtype, "rows": [], "status": "running",
                            "peak_measure": "torch.cuda.max_memory_allocated" if device.type == "cuda"
                            else "torch.profiler memory trace"}  # fmt: skip
        params, x, make_f = mvd.make_problem(shape, device)

        def autocast(dtype=dtype):
            return torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()

        try:
            for mode in mvd.MODES:
                for depth in depths:
                    if rec.out_of_time(5):
                        entry["status"] = "budget"
                        break
                    entry["rows"].append(mvd.measure_row(mode, depth, make_f, x, params, autocast, device))
                    rec.save()
            entry["summary"] = mvd.summarize(entry["rows"]) if entry["rows"] else {}
            entry["status"] = "ok" if entry["status"] == "running" else entry["status"]
        except Exception as e:  # one sub-benchmark failing must not lose the others
            entry.update(status="error", error=error_text(e), traceback=traceback.format_exc()[-3000:])
            rec.failed()
        rec.save()
        log(f"{key}: {entry['status']}")

    try:
        import equilibrium_vs_torchdeq as evt
        import torchdeq  # noqa: F401 -- the benchmark's other contender
    except ImportError as e:
        res["equilibrium_vs_torchdeq"] = {"status": "error", "error": error_text(e)}
        rec.failed()
        rec.save()
        return
    problems = [(k, s) for k in evt.W_KINDS for s in evt.SCALES]
    if ctx.dry_run:  # the fastest and the slowest to converge: enough to keep the call path under test
        problems = [("gaussian", 1.0), ("slow_mode", 0.1)]
    for dtype in ("fp32", "bf16"):
        key = f"equilibrium_vs_torchdeq_{dtype}"
        args = SimpleNamespace(shape=(2, 9, 16) if ctx.dry_run else (64, 81, 256), tol=evt.DEFAULT_TOL[dtype],
                               dtype=dtype, quick=ctx.dry_run, repeats=1 if ctx.dry_run else 3)  # fmt: skip
        entry = res[key] = {"state_shape": list(args.shape), "dtype": dtype, "tol_rel": args.tol,
                            "repeats": args.repeats, "results": [], "status": "running"}  # fmt: skip
        try:
            for kind, scale in problems:
                if rec.out_of_time(8):
                    entry["status"] = "budget"
                    break
                entry["results"].append(evt.run_problem(kind, scale, args, device))
                rec.save()
            if entry["results"]:
                entry["goals"] = evt.goals(entry["results"], args.tol)
            entry["status"] = "ok" if entry["status"] == "running" else entry["status"]
        except Exception as e:
            entry.update(status="error", error=error_text(e), traceback=traceback.format_exc()[-3000:])
            rec.failed()
        rec.save()
        log(f"{key}: {entry['status']}")
    heads = []
    for dtype in ("fp32", "bf16"):
        m = res.get(f"memory_vs_depth_{dtype}", {}).get("summary", {})
        if m:
            flat = all(v["saved_bytes_constant"] for k, v in m.items() if k != "bptt")
            bptt = m.get("bptt", {}).get("saved_growth_64_over_2")
            heads.append(f"{dtype}: implicit saved memory flat={flat}, bptt x{bptt:.1f}" if bptt else f"{dtype}")
        g = res.get(f"equilibrium_vs_torchdeq_{dtype}", {}).get("goals")
        if g:
            heads.append(f"{dtype}: {sum(v['met'] for v in g.values())}/{len(g)} torchdeq goals met")
    rec.data["headline"] = "; ".join(heads)


# ---- part 3: one supervision step of every puzzle model ---------------------------------------------------
#: (model, variant) pairs: every registered puzzle model, the Attractor in each of its variants
STEP_MODELS = [("trm", None), ("hrm", None), ("transformer", None), ("attractor", "paper"), ("attractor", "authors"),
               ("attractor", "backbone")]  # fmt: skip
# compiled configurations in the order they are worth the GPU's time (compiling costs tens of seconds each)
COMPILE_PRIORITY = [("trm", None, "7m"), ("attractor", "paper", "27m"), ("attractor", "paper", "7m"),
                    ("trm", None, "27m"), ("hrm", None, "27m"), ("attractor", "authors", "27m"),
                    ("attractor", "backbone", "27m"), ("transformer", None, "27m"), ("hrm", None, "7m"),
                    ("attractor", "authors", "7m"), ("attractor", "backbone", "7m"),
                    ("transformer", None, "7m")]  # fmt: skip


def step_config_name(model: str, variant: str | None, size: str, compiled: bool) -> str:
    return f"{model}{'-' + variant if variant else ''}-{size}-{'compiled' if compiled else 'eager'}"


def measure_step(model_name: str, variant: str | None, size: str, compiled: bool, ctx: SimpleNamespace) -> dict:
    """Warm-up and timed supervision steps of one model (random puzzles in the task's token ranges)."""
    import torch
    from train_step import _batches

    from recursive_models.evaluation import autocast_for
    from recursive_models.losses import act_loss
    from recursive_models.registry import build_model
    from recursive_models.trainer import compile_blocks, make_optimizer

    device, b = ctx.device, ctx.step_batch
    torch.manual_seed(0)
    over = {"variant": variant} if variant else {}
    model = build_model(model_name, size, "sudoku-extreme", **over).to(device).train()
    cfg = model.config
    n_params = sum(p.numel() for p in model.parameters())
    if compiled:
        torch._dynamo.reset()  # one compiled ReasoningModule.forward per model: stay under dynamo's recompile limit
        compile_blocks(model, **({"backend": ctx.compile_backend} if ctx.compile_backend else {}))
    hp = SimpleNamespace(lr=1e-4, weight_decay=1.0, puzzle_emb_lr=1e-4, puzzle_emb_weight_decay=1.0, beta1=0.9,
                         beta2=0.95)  # fmt: skip
    opt = make_optimizer(model, hp)
    n = ctx.step_warmup + ctx.step_timed
    data = _batches(n, b, cfg.vocab_size, cfg.seq_len, cfg.num_puzzle_identifiers, device, 0)
    carry = {"c": model.initial_carry(data[0])}
    solver: list[dict] = []

    def step(batch):
        with autocast_for(device, ctx.precision):
            carry["c"], out = model(carry["c"], batch)
            loss, _ = act_loss(out, carry["c"].data["labels"], carry["c"].halted, "stablemax")
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if "solver_nstep" in out:
            solver.append({k: out[k].detach().float() for k in ("solver_nstep", "solver_residual", "solver_hit_max")})
        return loss.detach().item()

    row: dict[str, Any] = {"model": model_name, "variant": variant, "size": size, "compiled": compiled,
                           "batch": b, "precision": ctx.precision, "parameters": n_params}  # fmt: skip
    warm = []
    for i in range(ctx.step_warmup):
        t, _ = timed(lambda i=i: step(data[i]), device)
        warm.append(round(t, 4))
    row["warmup_seconds"] = warm
    if compiled:
        row["first_step_seconds"] = warm[0] if warm else None  # compilation happens in the first calls
    reset_peak(device)
    solver.clear()
    times, losses = [], []
    for i in range(ctx.step_warmup, n):
        t, loss = timed(lambda i=i: step(data[i]), device)
        times.append(t)
        losses.append(loss)
    med = statistics.median(times)
    row.update(step_seconds=[round(t, 4) for t in times], median_step_seconds=med, samples_per_s=b / med,
               peak_memory_mib=peak_mib(device), loss_finite=all(math.isfinite(v) for v in losses))  # fmt: skip
    if solver:
        nstep = torch.cat([s["solver_nstep"] for s in solver])
        resid = torch.cat([s["solver_residual"] for s in solver])
        hit = torch.cat([s["solver_hit_max"] for s in solver])
        s = cfg.solver
        use_autocast = ctx.precision == "bf16"
        row["solver"] = {
            "method": s.method,
            "max_iter": s.max_iter,
            "tol": s.tol,
            "effective_tol": max(s.tol, s.autocast_tol) if use_autocast else s.tol,
            "nstep_mean": float(nstep.mean()),
            "nstep_max": float(nstep.max()),
            "residual_mean": float(resid.mean()),
            "residual_max": float(resid.max()),
            "hit_max_fraction": float(hit.mean()),
            # "does the tolerance get met in bf16?": the share of per-sample solves that stopped on the tolerance
            "tol_met_fraction": float(1 - hit.mean()),
        }
    return row


def part_step_bench(rec: Recorder, ctx: SimpleNamespace) -> None:
    """Every (model, size) eager first, then compiled ones in `COMPILE_PRIORITY` order while the budget lasts."""
    sizes = ("tiny",) if ctx.dry_run else ("7m", "27m")
    res = rec.data["results"]
    res.update(batch=ctx.step_batch, precision=ctx.precision, warmup=ctx.step_warmup, timed=ctx.step_timed,
               compile_backend=ctx.compile_backend or "inductor", rows={})  # fmt: skip
    plan = [(m, v, s, False) for s in sizes for m, v in STEP_MODELS]
    if ctx.dry_run:  # one compiled model keeps the compile path under test; the others would only cost CPU time
        plan.append(("trm", None, "tiny", True))
    else:
        plan += [(m, v, s, True) for m, v, s in COMPILE_PRIORITY]
    eager_cost: dict[str, float] = {}
    compile_cost = 20.0 if ctx.dry_run else 60.0  # until one is measured: a first guess of one compiled config
    for model_name, variant, size, compiled in plan:
        name = step_config_name(model_name, variant, size, compiled)
        need = compile_cost if compiled else eager_cost.get(size, 3.0)
        if rec.out_of_time(need):
            res["rows"][name] = {"skipped": f"budget ({rec.left():.0f} s left, ~{need:.0f} s needed)"}
            continue
        t0 = time.time()
        try:
            row = measure_step(model_name, variant, size, compiled, ctx)
        except Exception as e:  # e.g. out of memory at 27m: record it, free the device and go on
            row = {"error": error_text(e), "traceback": traceback.format_exc()[-2000:]}
            rec.failed()
            with contextlib.suppress(Exception):
                import torch

                torch.cuda.empty_cache()
        row["wall_seconds"] = round(time.time() - t0, 2)
        if compiled:
            compile_cost = max(compile_cost * 0.5, row["wall_seconds"] * 1.2)
        else:
            eager_cost[size] = max(eager_cost.get(size, 0.0), row["wall_seconds"] * 1.3)
        res["rows"][name] = row
        rec.save()
        log(f"{name}: {row.get('samples_per_s', row.get('error'))} samples/s, {row['wall_seconds']} s")
    done = [r for r in res["rows"].values() if "samples_per_s" in r]
    rec.data["headline"] = f"{len(done)}/{len(plan)} configurations measured"
    md = ["| model | size | compiled | samples/s | peak MiB | solver iters mean/max | residual max | tol met |",
          "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, r in res["rows"].items():
        if "samples_per_s" not in r:
            md.append(f"| {name} | | | {r.get('skipped') or r.get('error')} | | | | |")
            continue
        s = r.get("solver")
        sv = (f"{s['nstep_mean']:.1f}/{s['nstep_max']:.0f} | {s['residual_max']:.2g} | {s['tol_met_fraction']:.0%}"
              if s else " | | ")  # fmt: skip
        pk = f"{r['peak_memory_mib']:.0f}" if r["peak_memory_mib"] is not None else "n/a"
        label = r["model"] + (f"-{r['variant']}" if r["variant"] else "")
        md.append(f"| {label} | {r['size']} | {r['compiled']} | {r['samples_per_s']:.1f} | {pk} | {sv} |")
    rec.data["summary_md"] = md


# ---- part 4: short training ------------------------------------------------------------------------------
def start_dataset_build(spec: dict, folder: Path, log_path: Path) -> subprocess.Popen:
    """Build part 4's dataset in the background (``python -m puzzles.build``) while the other parts run."""
    workers = max(1, min((os.cpu_count() or 2) // 2, 8))
    cmd = [sys.executable, "-m", "puzzles.build", spec["name"], "--out", str(folder), "--train", str(spec["train"]),
           "--test", str(spec["test"]), "--aug", "0", "--seed", "0", "--workers", str(workers)]  # fmt: skip
    fh = log_path.open("w")
    return subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def part_training(rec: Recorder, ctx: SimpleNamespace) -> None:
    """`recursive_models.trainer.train` on the paper's experiment configs, stopped by ``trainer.max_minutes``."""
    from hydra import compose, initialize_config_module

    from recursive_models.config import register_configs
    from recursive_models.trainer import train

    res = rec.data["results"]
    data = Path(ctx.train_data_dir)
    spec = DRY_TRAIN_DATA if ctx.dry_run else TRAIN_DATA
    res["data"] = {**spec, "aug": 0, "augment_on_the_fly": True, "folder": str(data),
                   "note": "a small generated set (the real Sudoku-Extreme is not on the GPU machine): "
                   "samples/s and the projection do not depend on it; the loss curve is only its start"}  # fmt: skip
    failed = Path(str(data) + ".failed")  # written by the suite when the build process exits with an error
    while not (data / "build.json").is_file():  # the suite started the build before part 1
        if failed.is_file():
            raise RuntimeError(f"the dataset build failed: {failed.read_text().strip()[-500:]}")
        if rec.out_of_time(10):
            raise RuntimeError("the dataset build did not finish within the part's budget (see suite.log)")
        time.sleep(1)
    register_configs()
    base_left = rec.left()
    for exp, share in TRAIN_RUNS:
        if rec.out_of_time(10):
            res[exp] = {"skipped": "budget"}
            continue
        # each run: its share of the part, less ~15 s for building the model, the final evaluation and saving
        minutes = max(0.1, (min(share * base_left, rec.left()) - (5 if ctx.dry_run else 15)) / 60)
        out = Path(ctx.tmp) / f"run-{exp}"
        shutil.rmtree(out, ignore_errors=True)
        overrides = [f"experiment={exp}", f"task.data_dir={data}", "task.augment=true", f"trainer.out_dir={out}",
                     f"trainer.device={ctx.device.type}", f"trainer.max_minutes={minutes:.3f}",
                     f"trainer.steps={ctx.train_steps}", "trainer.eval_interval=0", "trainer.checkpoint_interval=0",
                     "trainer.progress=false", f"trainer.log_interval={ctx.train_log_interval}",
                     "trainer.eval_batch_size=256"]  # fmt: skip
        if ctx.dry_run:
            overrides += ["task=sudoku6", "size=tiny", f"trainer.batch_size={ctx.train_batch}"]
        entry: dict[str, Any] = {"overrides": overrides}
        res[exp] = entry
        t0 = time.time()
        try:
            with initialize_config_module("recursive_models.conf", version_base="1.3"):
                paper = compose("config", overrides=[f"experiment={exp}"])
                cfg = compose("config", overrides=overrides)
            result = train(cfg)
            entry.update(summarize_training(out, result, int(paper.trainer.steps)))
        except Exception as e:
            entry.update(error=error_text(e), traceback=traceback.format_exc()[-3000:])
            rec.failed()
        entry["wall_seconds"] = round(time.time() - t0, 1)
        rec.save()
        log(f"{exp}: {entry.get('samples_per_s', entry.get('error'))} samples/s")
    heads, md = [], ["| run | steps | samples/s | s/step | final loss | projected paper run (h) | peak MiB |",
                     "|---|---|---|---|---|---|---|"]  # fmt: skip
    for exp, _ in TRAIN_RUNS:
        e = res.get(exp, {})
        if "samples_per_s" in e:
            heads.append(
                f"{exp}: {e['samples_per_s']:.0f} samples/s, paper run ~{e['projected_paper_run_hours']:.1f} h"
            )
            pk = f"{e['peak_memory_mib']:.0f}" if e.get("peak_memory_mib") else "n/a"
            md.append(f"| {exp} | {e['steps']} | {e['samples_per_s']:.1f} | {e['seconds_per_step']:.3f} | "
                      f"{e['loss_curve'][-1]['loss']:.4f} | {e['projected_paper_run_hours']:.2f} | {pk} |")  # fmt: skip
        else:
            md.append(f"| {exp} | {e.get('skipped') or e.get('error')} | | | | | |")
    rec.data["headline"] = "; ".join(heads)
    rec.data["summary_md"] = md


def summarize_training(run_dir: Path, result: dict, paper_steps: int) -> dict:
    """Loss curve, steady-state step time (first logged interval excluded) and the full paper run projected."""
    rows = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    train = [r for r in rows if "train/loss" in r]
    run = result["run"]
    curve = [{"step": r["step"], "loss": r["train/loss"], "exact_accuracy": r["train/exact_accuracy"],
              "lr": r["train/lr"], **({"solver_nstep": r["solver/nstep_mean"]} if "solver/nstep_mean" in r else {})}
             for r in train]  # fmt: skip
    if len(train) >= 2:  # the first interval holds the warm-up (allocator, cuBLAS/cuDNN autotuning)
        a, z = train[0], train[-1]
        sec = 60 * (z["train/loop_minutes"] - a["train/loop_minutes"]) / max(1, z["step"] - a["step"])
    else:
        sec = 60 * run["train_minutes"] / max(1, run["steps"])
    return {
        "steps": run["steps"],
        "batch_size": run["batch_size"],
        "stopped_by": run["stopped_by"],
        "train_minutes": run["train_minutes"],
        "seconds_per_step": sec,
        "samples_per_s": run["batch_size"] / sec,
        "flops_per_sample": run.get("flops_per_sample"),
        "paper_steps": paper_steps,
        # optimiser steps only: the paper configs' periodic evaluations (10k puzzles every 6500 steps) come on top
        "projected_paper_run_hours": paper_steps * sec / 3600,
        "peak_memory_mib": run["peak_memory_bytes"] / 2**20 if run.get("peak_memory_bytes") else None,
        "precision": run["precision"],
        "device": run["device"],
        "eval_exact_accuracy": result.get("eval/exact_accuracy"),
        "eval_puzzles": result.get("eval/count"),
        "loss_curve": curve,
    }


# ---- part 5: the LM families -----------------------------------------------------------------------------
LM_FAMILIES = ("gpt", "parcae", "deq", "attractor")


def part_lm(rec: Recorder, ctx: SimpleNamespace) -> None:
    """Tokens/s of a training step per family, then `lm_memory_vs_depth.measure` per (variant, depth)."""
    import lm_memory_vs_depth as lmd
    import torch

    from recursive_models.evaluation import autocast_for
    from recursive_models.lm.config import LMTrainerSection
    from recursive_models.lm.optim import apply_schedule, build_optimizer
    from recursive_models.lm.registry import build_lm

    device = ctx.device
    size = "tiny" if ctx.dry_run else "small"
    b, s, vocab = (2, 32, 256) if ctx.dry_run else (32, 256, 4096)  # the small preset's batch and context
    res = rec.data["results"]
    res["throughput"] = {"size": size, "batch": b, "seq_len": s, "vocab": vocab, "precision": ctx.precision,
                         "optimizer": "muon_adamw", "rows": {}}  # fmt: skip
    hp = LMTrainerSection()
    for fam in LM_FAMILIES:
        if rec.out_of_time(5):
            res["throughput"]["rows"][fam] = {"skipped": "budget"}
            continue
        try:
            torch.manual_seed(0)
            model = build_lm(fam, size, vocab_size=vocab, seq_len=s).to(device).train()
            opt = build_optimizer(model, hp)
            g = torch.Generator().manual_seed(0)
            x = torch.randint(0, vocab, (b, s), generator=g).to(device)
            last: dict = {}

            def step(i, model=model, opt=opt, x=x, last=last):
                apply_schedule(opt, i, hp)
                with autocast_for(device, ctx.precision):
                    out = model(x, x)
                opt.zero_grad(set_to_none=True)
                out["loss"].backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                last.update({k: float(v) for k, v in out.items() if k.startswith("solver/")})
                return out["loss"].detach().item()

            for i in range(ctx.step_warmup):
                step(i)
            reset_peak(device)
            times = [timed(lambda i=i: step(i), device)[0] for i in range(ctx.step_timed)]
            med = statistics.median(times)
            res["throughput"]["rows"][fam] = {
                "parameters": sum(p.numel() for p in model.parameters()),
                "step_seconds": [round(t, 4) for t in times],
                "tokens_per_s": b * s / med,
                "peak_memory_mib": peak_mib(device),
                **last,
            }
            del model, opt
        except Exception as e:
            res["throughput"]["rows"][fam] = {"error": error_text(e), "traceback": traceback.format_exc()[-2000:]}
            rec.failed()
        rec.save()
    depths = (2, 4) if ctx.dry_run else (2, 4, 8, 16, 32, 64)
    margs = SimpleNamespace(size=size, batch=2 if ctx.dry_run else 8, seq_len=s, vocab=vocab, device=str(device))
    mem = res["memory_vs_depth"] = {"size": size, "batch": margs.batch, "seq_len": s, "precision": "fp32",
                                    "depths": list(depths), "rows": {}}  # fmt: skip
    for name in lmd.VARIANTS:
        rows = mem["rows"].setdefault(name, {})
        for d in depths:
            if rec.out_of_time(5):
                break
            try:
                rows[str(d)] = lmd.measure(name, d, margs)
            except Exception as e:
                rows[str(d)] = {"error": error_text(e)}
                rec.failed()
            rec.save()
    key = "peak_mib" if device.type == "cuda" else "saved_mib"
    md = ["| family | tokens/s | peak MiB |", "|---|---|---|"]
    for fam, r in res["throughput"]["rows"].items():
        pk = f"{r['peak_memory_mib']:.0f}" if r.get("peak_memory_mib") else "n/a"
        md.append(f"| {fam} | {r['tokens_per_s']:.0f} | {pk} |" if "tokens_per_s" in r else f"| {fam} | {r} | |")
    md += ["", f"memory ({key}) vs depth {list(depths)}:", ""]
    for name, rows in mem["rows"].items():
        vals = [f"{rows[str(d)][key]:.1f}" if key in rows.get(str(d), {}) else "-" for d in depths]
        md.append(f"- {name}: {', '.join(vals)}")
    rec.data["summary_md"] = md
    tp = {f: r["tokens_per_s"] for f, r in res["throughput"]["rows"].items() if "tokens_per_s" in r}
    rec.data["headline"] = ", ".join(f"{f} {v:.0f} tok/s" for f, v in tp.items())


# ---- part 6: against the reference code ------------------------------------------------------------------
def reference_checkouts() -> dict[str, Path]:
    """TRM / HRM checkouts: the variables tests/test_convert.py reads, else ``refs/TRM`` / ``refs/HRM`` here."""
    env = {"trm": os.environ.get("ATTRACTOR_REFERENCE_TRM") or os.environ.get("TRM_REFERENCE"),
           "hrm": os.environ.get("ATTRACTOR_REFERENCE_HRM")}  # fmt: skip
    found = {}
    for model, path in env.items():
        cands = [Path(path)] if path else [ROOT / "refs" / model.upper()]
        for c in cands:
            c = c if c.is_absolute() else ROOT / c
            if (c / "models").is_dir():
                found[model] = c
    return found


def part_reference(rec: Recorder, ctx: SimpleNamespace) -> None:
    """`benchmarks/train_step.py` with the reference model beside ours, one subprocess per checkout."""
    refs = reference_checkouts()
    res = rec.data["results"]
    if not refs:
        rec.data["status_reason"] = ("no reference checkout (set ATTRACTOR_REFERENCE_TRM / ATTRACTOR_REFERENCE_HRM or "
                                     "put the checkouts in refs/TRM, refs/HRM)")  # fmt: skip
        raise SkipPart(rec.data["status_reason"])
    for i, (model, path) in enumerate(sorted(refs.items())):
        share = rec.left() / (len(refs) - i)
        tmp = Path(ctx.tmp) / f"train_step_{model}.json"
        if ctx.dry_run:
            size_args = ["--size", "tiny", "--task", "sudoku6", "--batch", "4", "--steps", "1", "--warmup", "1"]
        else:
            size_args = ["--size", "7m" if model == "trm" else "27m", "--batch", str(ctx.step_batch), "--steps", "3",
                         "--warmup", "1", "--precision", ctx.precision]  # fmt: skip
        cmd = [sys.executable, str(BENCH / "train_step.py"), "--model", model, f"--reference-{model}", str(path),
               "--device", ctx.device.type, *size_args, "--out", str(tmp)]  # fmt: skip
        entry: dict[str, Any] = {"checkout": str(path), "command": " ".join(["python", *cmd[1:]])}
        res[model] = entry
        try:
            p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(5.0, share - 2))
            if p.returncode == 0 and tmp.is_file():
                out = json.loads(tmp.read_text())
                entry.update({k: out.get(k) for k in ("ratio", "ours", "reference", "numerics", "batch", "size",
                                                      "precision", "parameters")})  # fmt: skip
            else:
                entry.update(error=f"train_step.py exited {p.returncode}", output_tail=(p.stdout + p.stderr)[-3000:])
                rec.failed()
        except subprocess.TimeoutExpired:
            entry["error"] = "budget: train_step.py did not finish"
            rec.stopped_early = True
        rec.save()
    rec.data["headline"] = ", ".join(f"{m}: ours/reference {e['ratio']:.2f}" for m, e in res.items() if e.get("ratio"))


class SkipPart(Exception):
    """A part that has nothing to measure here (its reason goes into the JSON)."""


PART_FUNCS = {"gpu_tests": part_gpu_tests, "solvers": part_solvers, "step_bench": part_step_bench,
              "training": part_training, "lm": part_lm, "reference": part_reference}  # fmt: skip


# ---- one part, in its own process -------------------------------------------------------------------------
def run_part(args: argparse.Namespace) -> int:
    """The child process: run one part until it is done or its deadline, writing its JSON as it goes."""
    import torch

    part = PART_BY_NAME[args.run_part]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    header = {"dry_run": args.dry_run, "budget_s": round(args.deadline - time.time(), 1), "git_commit": args.commit,
              "environment": environment(str(device))}  # fmt: skip
    rec = Recorder(Path(args.out) / part.filename, part, args.deadline, header)

    def on_term(signum, frame):  # the suite's hard stop: leave the JSON saying so
        raise KeyboardInterrupt("killed by the suite (budget + grace)")

    signal.signal(signal.SIGTERM, on_term)
    ctx = SimpleNamespace(
        device=device,
        dry_run=args.dry_run,
        tmp=args.tmp,
        precision="bf16",
        step_batch=args.step_batch or (4 if args.dry_run else 768),
        step_warmup=1 if args.dry_run else 2,
        step_timed=2 if args.dry_run else 5,
        compile_backend="eager" if args.dry_run and device.type == "cpu" else None,
        train_steps=args.train_steps or (6 if args.dry_run else 300),
        train_batch=8,
        train_log_interval=2 if args.dry_run else 10,
        train_data_dir=args.train_data,
        build_log=args.build_log,
    )
    t0 = time.time()
    try:
        PART_FUNCS[part.name](rec, ctx)
        rec.data["status"] = "budget" if rec.stopped_early else "ok"
    except SkipPart as e:
        rec.data.update(status="skipped", status_reason=str(e))
    except KeyboardInterrupt as e:
        rec.data.update(status="killed", error=str(e))
    except Exception as e:
        rec.data.update(status="error", error=error_text(e), traceback=traceback.format_exc()[-4000:])
    rec.data["part_seconds"] = round(time.time() - t0, 1)
    rec.save()
    return 0


# ---- the suite ---------------------------------------------------------------------------------------------
def budgets(args: argparse.Namespace, parts: list[Part]) -> dict[str, float]:
    """Each selected part's budget: default (or the dry-run's), times ``--budget-scale``, or ``--budget NAME=S``."""
    out = {p.name: (DRY_BUDGET_S if args.dry_run else p.budget_s) * args.budget_scale for p in parts}
    if "reference" in out and not args.dry_run and reference_checkouts():  # 15 s is for the skip
        out["reference"] = REFERENCE_BUDGET_S * args.budget_scale
    for item in args.budget or []:
        name, _, val = item.partition("=")
        out[name] = float(val)
    return out


def run_suite(args: argparse.Namespace) -> int:
    """Run the selected parts one after another, each as a child process with its budget; write summary.md."""
    t_start = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = [p for p in PARTS if not args.parts or p.name in args.parts]
    plan = budgets(args, parts)
    commit = git_commit(args.commit)
    tmp = Path(tempfile.mkdtemp(prefix="gpu-suite-"))
    log_path = out / "suite.log"
    logf = log_path.open("w")

    # The suite's own lines go to the log and to stdout (the GPU machine returns the tail of stdout).
    def say(msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    say(f"gpu_suite: parts {[p.name for p in parts]}, budgets {plan} s, device {args.device}, dry_run={args.dry_run}")
    missing = [m for m, ok in preflight().items() if not ok]
    if missing:
        say(f"missing modules: {missing} (parts that import them will record the error)")
    build = None
    data_dir = tmp / "data"
    build_log = tmp / "build.log"
    failed = Path(str(data_dir) + ".failed")
    if any(p.name == "training" for p in parts):
        spec = DRY_TRAIN_DATA if args.dry_run else TRAIN_DATA
        build = start_dataset_build(spec, data_dir, build_log)
        say(f"building {spec['name']} (train {spec['train']}, test {spec['test']}) in the background -> {data_dir}")
    carry = 0.0
    rows = []
    try:
        for part in parts:
            budget = plan[part.name] + (carry if part is parts[-1] else 0.0)
            t0 = time.time()
            deadline = t0 + budget
            path = out / part.filename
            path.unlink(missing_ok=True)
            cmd = [sys.executable, str(Path(__file__).resolve()), "--run-part", part.name, "--out", str(out),
                   "--deadline", f"{deadline:.3f}", "--device", args.device, "--commit", commit, "--tmp", str(tmp),
                   "--train-data", str(data_dir), "--build-log", str(build_log)]  # fmt: skip
            for flag, v in (("--threads", args.threads), ("--step-batch", args.step_batch),
                            ("--train-steps", args.train_steps)):  # fmt: skip
                if v:
                    cmd += [flag, str(v)]
            if args.dry_run:
                cmd.append("--dry-run")
            say(f"part {part.number} {part.name}: budget {budget:.0f} s")
            logf.write(f"---- part {part.number} {part.name} ----\n")
            logf.flush()
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
            killed = False
            while proc.poll() is None:
                if build is not None and build.poll() not in (None, 0) and not failed.is_file():
                    failed.write_text(f"exit {build.returncode}: " + build_log.read_text()[-500:])
                if time.time() > deadline + GRACE_S:
                    killed = True
                    break
                time.sleep(0.2)
            if killed:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            wall = time.time() - t0
            data = json.loads(path.read_text()) if path.is_file() else None
            if data is None:
                data = {
                    "part": part.number,
                    "name": part.name,
                    "what": part.what,
                    "status": "error",
                    "error": f"the part's process exited {proc.returncode} without writing its JSON (see suite.log)",
                }
            if killed or data.get("status") == "running":
                data["status"] = "killed"
                data.setdefault("error", f"stopped by the suite {GRACE_S} s past its budget")
            data.update(budget_s=round(budget, 1), wall_s=round(wall, 1), returncode=proc.returncode)
            write_json(path, data)
            carry += max(0.0, budget - wall)
            rows.append(data)
            say(f"part {part.number} {part.name}: {data['status']} in {wall:.1f} s  {data.get('headline', '')}")
    finally:
        if build is not None and build.poll() is None:
            os.killpg(build.pid, signal.SIGTERM)
            build.wait()
        if build_log.is_file():
            logf.write("---- dataset build ----\n" + build_log.read_text()[-4000:] + "\n")
        logf.close()
        shutil.rmtree(tmp, ignore_errors=True)
    for leftover in out.glob("*.json.tmp"):  # a part killed mid-write: its last complete JSON is in place
        leftover.unlink()
    total = time.time() - t_start
    write_summary(out / "summary.md", rows, args, commit, total)
    print(f"total {total:.1f} s; summary: {out / 'summary.md'}", flush=True)
    return 0


def write_summary(path: Path, rows: list[dict], args: argparse.Namespace, commit: str, total: float) -> None:
    """The Markdown summary: where and what ran, then per part its status, time and headline numbers."""
    env = next((r["environment"] for r in rows if "environment" in r), {})
    lines = [
        f"# GPU suite {'(dry run) ' if args.dry_run else ''}— {env.get('gpu') or env.get('device', args.device)}",
        "",
        f"- command: `python {' '.join(sys.argv)}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"- device: {env.get('gpu') or args.device}"
        + (f" ({env['gpu_memory_gib']} GiB)" if env.get("gpu_memory_gib") else ""),
        f"- python {env.get('python')}, torch {env.get('torch')}, CUDA {env.get('cuda')}, triton {env.get('triton')}",
        f"- git commit: {commit}",
        f"- total wall time: {total:.1f} s",
        "",
        "| part | status | budget s | wall s | headline |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        why = r.get("status_reason") or r.get("error") or ""
        head = r.get("headline") or why
        status = r["status"] + (f" ({r['errors']} errors)" if r.get("errors") else "")
        lines.append(f"| {r['part']} {r['name']} | {status} | {r.get('budget_s')} | {r.get('wall_s')} | {head} |")
    for r in rows:
        if r.get("summary_md"):
            lines += ["", f"## {r['part']} {r['name']}", "", *r["summary_md"]]
    path.write_text("\n".join(lines) + "\n")


# ---- the budget estimate from CPU timings -----------------------------------------------------------------
# No GPU has been lent to this project yet, so the budgets rest on what the CPU can tell: the FLOPs of every
# measured step (counted here by torch's FlopCounterMode) and the solver iteration counts of the committed CPU
# benchmarks, turned into GPU seconds with the assumptions below (stated in the JSON beside the numbers).
GPU_ASSUMPTIONS = {
    "effective_tflops_bf16_eager": 150.0,  # ~15% of an H100/H200's dense bf16 peak: 512-wide blocks, eager kernels
    "compile_seconds_per_config": 40.0,  # Inductor's first compile of one model's block stack, forward + backward
    # a block stack whose graph was compiled before (same depth and call, another model): dynamo's trace, then
    # Inductor's FX-graph and AOTAutograd caches (on disk, on by default)
    "compile_seconds_cached": 8.0,
    "ms_per_solver_iteration": 0.5,  # launch-bound: the (64, 81, 256) test problems are ~1 GFLOP per iteration
    "process_start_seconds": 5.0,  # python + torch import + CUDA context, once per part
    "gpu_test_seconds": 15.0,  # each gpu-marked test that trains with torch.compile (a few tiny-model steps)
}


def count_step_flops(model_name: str, variant: str | None, size: str, batch: int = 2) -> tuple[float, float]:
    """FLOPs per sample and CPU seconds per sample of one supervision step (fp32, after one warm-up step)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from train_step import _batches

    from recursive_models.losses import act_loss
    from recursive_models.registry import build_model

    torch.manual_seed(0)
    model = build_model(model_name, size, "sudoku-extreme", **({"variant": variant} if variant else {})).train()
    cfg = model.config
    data = _batches(2, batch, cfg.vocab_size, cfg.seq_len, cfg.num_puzzle_identifiers, torch.device("cpu"), 0)
    carry = model.initial_carry(data[0])
    flops, seconds = 0.0, 0.0
    for i, b in enumerate(data):
        counter = FlopCounterMode(display=False)
        t0 = time.perf_counter()
        with counter if i else contextlib.nullcontext():
            carry, out = model(carry, b)
            loss, _ = act_loss(out, carry.data["labels"], carry.halted, "stablemax")
            loss.backward()
        seconds = time.perf_counter() - t0
        if i:
            flops = float(counter.get_total_flops())
        model.zero_grad(set_to_none=True)
    # the optimiser step adds ~20 FLOPs per parameter: negligible next to the recursion, left out
    return flops / batch, seconds / batch


def solver_iterations(cpu_json: Path) -> int:
    """Solver iterations equilibrium_vs_torchdeq runs per dtype, from a committed CPU run (same problems, repeats)."""
    d = json.loads(cpu_json.read_text())
    n = 0
    for r in d["results"]:
        n += sum(t["iters"] for t in r["torchdeq_tuning"])
        n += d["repeats"] * sum(v["iters"] for phase in ("forward", "train_step") for v in r[phase].values())
        n += 7 * 20  # the peak-memory runs: 7 contenders x PEAK_ITERS
        n += 4 * max(d["repeats"], 7) * 20  # the per-iteration cost runs
    return n


def estimate(out: Path) -> int:
    """Write the per-part GPU-time estimate (JSON) from FLOPs and iteration counts measured on this CPU."""
    import memory_vs_depth as mvd
    import torch

    a = GPU_ASSUMPTIONS
    tflops = a["effective_tflops_bf16_eager"] * 1e12
    rows = {}
    for size in ("7m", "27m"):
        for m, v in STEP_MODELS:
            f, sec = count_step_flops(m, v, size)
            rows[step_config_name(m, v, size, False)] = {"flops_per_sample": f, "cpu_seconds_per_sample": sec}
            log(f"{m} {v} {size}: {f / 1e9:.1f} GFLOP/sample, {sec:.2f} CPU s/sample")
    b = 768
    n_steps = 2 + 5  # warm-up + timed steps of the step benchmark
    eager = sum(r["flops_per_sample"] * b * n_steps / tflops + 1.0 for r in rows.values())  # + ~1 s model build
    budget3 = PART_BY_NAME["step_bench"].budget_s - a["process_start_seconds"]
    from recursive_models.registry import resolve_config

    left, seen, compiled_fit = budget3 - eager, set(), 0
    for m, v, size in COMPILE_PRIORITY:  # until the budget ends: a new graph pays a full compile, a seen one less
        c = resolve_config(m, size, "sudoku-extreme", **({"variant": v} if v else {}))
        graph = (m == "transformer", c.layers, c.h_layers, c.backbone_layers if v == "backbone" else 0)
        cost = a["compile_seconds_cached"] if graph in seen else a["compile_seconds_per_config"]
        cost += eager / len(rows)
        if cost > left:
            break
        left, compiled_fit = left - cost, compiled_fit + 1
        seen.add(graph)
    iters = solver_iterations(BENCH / "results" / "equilibrium_vs_torchdeq_cpu_fp32.json")
    mem_iters = 2 * sum(mvd.DEPTHS) * len(mvd.MODES)  # two steps (saved bytes, peak) per (mode, depth)
    solvers = 2 * (iters + mem_iters) * a["ms_per_solver_iteration"] / 1e3  # fp32 and bf16
    from torch.utils.flop_counter import FlopCounterMode

    from recursive_models.lm.registry import build_lm

    lm = {}
    for fam in LM_FAMILIES:
        torch.manual_seed(0)
        model = build_lm(fam, "small", vocab_size=4096, seq_len=256).train()
        x = torch.randint(0, 4096, (2, 256))
        counter = FlopCounterMode(display=False)
        with counter:
            model(x, x)["loss"].backward()
        lm[fam] = {"flops_per_token": counter.get_total_flops() / (2 * 256)}
    lm_s = sum(v["flops_per_token"] * 32 * 256 * 7 / tflops for v in lm.values())
    start = a["process_start_seconds"]
    est = {
        "gpu_tests": 4 * a["gpu_test_seconds"] + 10 + start,
        "solvers": solvers + start,
        "lm": lm_s + 24 * 0.5 + start,  # + the 24 memory-vs-depth points, ~0.5 s each (model build and two steps)
        "reference": 2.0,  # skipped without a checkout (with one: 3 + 1 steps of each implementation)
        "step_bench": budget3 - left + start,
    }
    # what the parts before it leave unused goes to the training, which runs to its budget
    slack = sum(max(0.0, PART_BY_NAME[k].budget_s - v) for k, v in est.items())
    est["training"] = PART_BY_NAME["training"].budget_s + slack
    train = {}
    for exp, share in TRAIN_RUNS:
        key = {"paper_sudoku_trm_7m": "trm-7m-eager", "paper_sudoku_attractor_27m": "attractor-paper-27m-eager"}[exp]
        sps = rows[key]["flops_per_sample"] * b / tflops
        loop = share * (est["training"] - start) - 15
        train[exp] = {
            "seconds_per_step": sps,
            "steps_in_budget": int(loop / sps),
            "paper_run_hours": 65000 * sps / 3600,
        }
    report = {
        "what": "GPU seconds per part estimated from CPU measurements (FLOPs counted on CPU, committed CPU iteration "
        "counts) and the stated assumptions; no GPU was available",
        "command": " ".join(["python", *sys.argv]),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "assumptions": a,
        "budgets_s": {p.name: p.budget_s for p in PARTS},
        "estimated_s": {k: round(v, 1) for k, v in est.items()},
        "estimated_total_s": round(sum(est.values()), 1),
        "step_bench": {"eager_all_configs_s": eager, "compiled_configs_that_fit": compiled_fit, "rows": rows},
        "training": train,
        "solver_iterations_per_dtype": iters + mem_iters,
        "lm": lm,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, report)
    print(json.dumps({k: report[k] for k in ("budgets_s", "estimated_s", "estimated_total_s", "training")}, indent=1))
    return 0


# ---- wheels for the GPU image ----------------------------------------------------------------------------
def prepare_wheels(dest: Path) -> int:
    """Download (or, for sdist-only packages, build) the pinned pure-Python wheels into ``dest`` for the image."""
    dest.mkdir(parents=True, exist_ok=True)
    plat = [a for p in IMAGE_PLATFORMS for a in ("--platform", p)]
    for name, version in WHEELS.items():
        norm = re.sub(r"[-_.]+", "_", name).lower()
        for old in dest.glob("*.whl"):  # one version of each package
            if re.sub(r"[-_.]+", "_", old.name.split("-")[0]).lower() == norm and f"-{version}-" not in old.name:
                old.unlink()
        if name in SDIST_ONLY:
            cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-binary", ":all:", "-w", str(dest),
                   f"{name}=={version}"]  # fmt: skip
        else:
            cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                   "--python-version", IMAGE_PYTHON, "--implementation", "cp", *plat, "-d", str(dest),
                   f"{name}=={version}"]  # fmt: skip
        print(" ".join(cmd[2:]), flush=True)
        if subprocess.run(cmd).returncode != 0:
            print(f"error: could not get {name}=={version} (see pip's message above)", file=sys.stderr)
            return 2
    wheels = sorted(dest.glob("*.whl"))
    for w in wheels:
        if not (w.name.endswith("-none-any.whl") or "cp312" in w.name):
            print(f"error: {w.name} is not a wheel the Python {IMAGE_PYTHON} image can install", file=sys.stderr)
            return 2
    (dest / COMMIT_FILE).write_text(git_commit(None) + "\n")
    size = sum(w.stat().st_size for w in wheels)
    print(f"{len(wheels)} wheels, {size / 2**20:.2f} MiB in {dest}: " + ", ".join(w.name for w in wheels))
    if size > WHEEL_LIMIT_BYTES:
        print(f"error: {size / 2**20:.1f} MiB of wheels is over {WHEEL_LIMIT_BYTES / 2**20:.0f} MiB", file=sys.stderr)
        return 2
    return 0


# ---- entry point ------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="folder for partN_*.json, summary.md and suite.log (created)")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--dry-run", action="store_true", help="every part at toy sizes (about a minute on CPU)")
    p.add_argument("--parts", nargs="+", choices=[q.name for q in PARTS], help="run only these parts")
    p.add_argument("--budget", action="append", metavar="NAME=SECONDS", help="one part's budget (repeatable)")
    p.add_argument("--budget-scale", type=float, default=1.0, help="multiply every default budget")
    p.add_argument("--commit", help="the git commit to record (default: git rev-parse HEAD, else .whl/COMMIT)")
    p.add_argument("--threads", type=int, help="torch CPU threads in every part")
    p.add_argument("--step-batch", type=int, help="batch of the step benchmark (default 768, the paper's)")
    p.add_argument("--train-steps", type=int, help="step cap of each short training run (default 300)")
    p.add_argument(
        "--prepare-wheels", action="store_true", help=f"put the image's missing wheels into {WHEEL_DIR.name}/"
    )
    p.add_argument("--wheel-dir", type=Path, default=WHEEL_DIR, help=argparse.SUPPRESS)
    p.add_argument("--estimate", type=Path, metavar="JSON", help="write the CPU-based GPU-time estimate and exit")
    # internal: one part in a child process
    for flag in ("--run-part", "--tmp", "--train-data", "--build-log"):
        p.add_argument(flag, help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    return p, p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    p, args = parse_args(argv)
    if args.prepare_wheels:
        return prepare_wheels(args.wheel_dir)
    if args.estimate:
        return estimate(args.estimate)
    if not args.out:
        p.error("--out is required (the folder for the results)")
    for item in args.budget or []:
        name, sep, val = item.partition("=")
        if not sep or name not in PART_BY_NAME:
            p.error(f"--budget takes NAME=SECONDS with NAME one of {list(PART_BY_NAME)}, got {item!r}")
        try:
            if float(val) <= 0:
                raise ValueError
        except ValueError:
            p.error(f"--budget {item!r}: SECONDS must be a positive number")
    if not args.budget_scale > 0:
        p.error(f"--budget-scale must be > 0, got {args.budget_scale}")
    if args.run_part:
        return run_part(args)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("error: --device cuda but CUDA is not available here; use --device cpu (--dry-run for the toy run)",
                  file=sys.stderr)  # fmt: skip
            return 2
    return run_suite(args)


if __name__ == "__main__":
    sys.exit(main())
