"""The scoring worker: validate and score one staged submission in a child process under hard limits.

`leaderboard.scoring.submit` and `verify` never unpickle or evaluate a submission in their own process. They
copy its files into a private temporary folder (`stage_submission`), run the cheap checks, and hand the copy to
a child Python started by `run_worker`, which first lowers its own limits and then runs `main`:

* an address-space cap (``RLIMIT_AS``, CPU scoring) and a resident-set cap checked by the parent (always, so
  also for CUDA, where an address-space cap would break the driver);
* a CPU-time cap (``RLIMIT_CPU``: wall limit x threads) and a wall-clock timeout from the task spec
  (``score_seconds_base + score_seconds_per_example * examples``, times the deployment's ``time_scale``);
* a cap on the size of any file it writes (``RLIMIT_FSIZE``), no core dumps, its own session (the whole
  process group is killed on a limit), its own working and temporary folder, and a minimal environment (no
  credentials of the parent; it needs and uses no network).

A worker that exceeds a limit is killed and the submission rejected with a one-line `SubmissionError`
("exceeded the scoring time limit of 370 s"); nothing is written to the board or the store, because the parent
writes only after a successful result. The worker's own output is kept for the operator's log, never shown to
the submitter; only the number of examples it has scored (a file it rewrites after each batch, read as a
clamped integer) drives the parent's one progress bar.

    from leaderboard.worker import WorkerLimits
    submit("runs/my-run", "sudoku6", name="me", worker=WorkerLimits(memory_bytes=4 << 30, time_scale=2.0))
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from leaderboard.validate import Limits, SubmissionError

log = logging.getLogger(__name__)
RESULT = "result.json"
PROGRESS = "progress"  # the worker writes the examples it has scored here; the parent shows them
# The worker's first statements: it lowers its own limits (soft and hard, so they cannot be raised again) before
# it imports torch or reads the submission. Doing it here rather than in a preexec_fn keeps the parent safe to
# use from threads (a web service).
#
# On Linux it first asks to be killed when its parent dies (PR_SET_PDEATHSIG), so a queue worker that is killed
# mid-score (`leaderboard.jobs`) leaves no orphan scoring on; the parent's pid is checked after the call, in case
# the parent died before it.
_BOOT = """import json, os, resource, sys
job = json.load(open(sys.argv[1]))
if sys.platform == "linux":
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
    if os.getppid() != job["parent"]:
        sys.exit(3)
for name, (soft, hard) in job["rlimits"].items():
    resource.setrlimit(getattr(resource, name), (soft, hard))
from leaderboard.worker import main
sys.exit(main(sys.argv[1:]))
"""


@dataclass(frozen=True)
class WorkerLimits:
    """Hard limits of one scoring worker (configurable per deployment; ``submit --worker-...`` on the CLI).

    Attributes:
        memory_bytes: the worker's address space (CPU scoring) and resident set (always).
        time_scale: multiplies the task spec's wall-clock limit (a slower scoring machine: > 1).
        wall_seconds: replaces the spec's wall-clock limit when set.
        threads: torch threads in the worker (0: as many as the calling process uses).
        cpu_seconds: the CPU-time cap (default: the wall-clock limit times ``threads``, plus 5 s).
        output_bytes: the largest file the worker may write.
        poll_seconds: how often the parent checks the worker's time and memory.
    """

    memory_bytes: int = 8 << 30
    time_scale: float = 1.0
    wall_seconds: float | None = None
    threads: int = 0
    cpu_seconds: float | None = None
    output_bytes: int = 64 << 20
    poll_seconds: float = 0.05

    def __post_init__(self):
        if self.memory_bytes < 64 << 20:
            raise ValueError(f"worker memory_bytes must be at least 64 MiB, got {self.memory_bytes}")
        if not self.time_scale > 0 or (self.wall_seconds is not None and not self.wall_seconds > 0):
            raise ValueError("worker time_scale and wall_seconds must be positive")


def _rss_bytes(pid: int) -> int:
    """Resident set of ``pid`` (0 when it is gone or /proc is unavailable)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            parts = fh.read().rsplit(b")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.0f} MiB"


def run_worker(
    job: dict,
    workdir: Path,
    wall_seconds: float,
    limits: WorkerLimits,
    *,
    on_progress: Callable[[int], None] | None = None,
) -> dict:
    """Run ``job`` (see `main`) in a limited child process in ``workdir``; its result, or `SubmissionError`.

    Args:
        job: what to score (``path``, ``task`` (a `TaskSpec.to_dict`), ``data_dir``, ``device``, ``limit``,
            ``limits``).
        workdir: a private folder for the job file, the worker's output and its temporary files.
        wall_seconds: the wall-clock limit (already scaled).
        limits: the worker's limits.
        on_progress: called from the parent's polling loop with the examples the worker reports scored.
    """
    import torch

    threads = limits.threads or torch.get_num_threads()
    cpu_seconds = int(limits.cpu_seconds or wall_seconds * threads + 5)
    job = {**job, "threads": threads, "parent": os.getpid()}
    cuda = str(job.get("device", "cpu")).startswith("cuda")
    root = str(Path(__file__).resolve().parent.parent)  # the folder holding the leaderboard package
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir), "TMPDIR": str(workdir),
           "PYTHONPATH": root, "OMP_NUM_THREADS": str(threads), "PYTHONDONTWRITEBYTECODE": "1",
           "LANG": "C.UTF-8"}  # fmt: skip
    for k in ("CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH"):
        if k in os.environ:
            env[k] = os.environ[k]

    rlimits = {"RLIMIT_CPU": (cpu_seconds, cpu_seconds + 5), "RLIMIT_FSIZE": (limits.output_bytes,) * 2,
               "RLIMIT_CORE": (0, 0)}  # fmt: skip
    if not cuda:  # CUDA reserves far more address space than it uses; the parent's RSS check covers it
        rlimits["RLIMIT_AS"] = (limits.memory_bytes,) * 2
    job["rlimits"] = rlimits
    (workdir / "job.json").write_text(json.dumps(job))

    out = open(workdir / "worker.log", "wb")
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-P", "-c", _BOOT, str(workdir / "job.json")],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        out.close()
    reason, cpu = None, 0.0
    while proc.poll() is None:
        cpu = max(cpu, _cpu_seconds(proc.pid))
        if time.monotonic() - t0 > wall_seconds:
            reason = f"exceeded the scoring time limit of {wall_seconds:.0f} s"
        elif _rss_bytes(proc.pid) > limits.memory_bytes:
            reason = f"exceeded the scoring memory limit of {_mib(limits.memory_bytes)}"
        if reason:
            _kill(proc)
            break
        if on_progress is not None:
            on_progress(_reported_progress(workdir / PROGRESS))
        time.sleep(limits.poll_seconds)
    code = proc.wait()
    result_file = workdir / RESULT
    result = json.loads(result_file.read_text()) if reason is None and result_file.is_file() else None
    if result is None or not result.get("ok"):
        tail = (workdir / "worker.log").read_bytes()[-4000:].decode("utf-8", "replace")
        if reason is None and result is not None:
            if result.get("kind") == "memory":
                reason = f"exceeded the scoring memory limit of {_mib(limits.memory_bytes)}"
            else:
                reason = result.get("error") or "rejected"
        elif reason is None and (code == -signal.SIGXCPU or (code == -signal.SIGKILL and cpu >= cpu_seconds - 1)):
            reason = f"exceeded the scoring CPU-time limit of {cpu_seconds} s"
        elif reason is None and code == -signal.SIGXFSZ:
            reason = f"exceeded the scoring output limit of {_mib(limits.output_bytes)}"
        elif reason is None and "MemoryError" in tail:
            reason = f"exceeded the scoring memory limit of {_mib(limits.memory_bytes)}"
        elif reason is None:
            reason = f"the scoring worker stopped unexpectedly (exit code {code}); nothing was recorded"
        log.warning("scoring worker for %s: %s; its output ends:\n%s", job.get("path"), reason, tail)
        raise SubmissionError(reason)
    return result


def _reported_progress(path: Path) -> int:
    """The count the worker last wrote to ``path``: 0 while there is none.

    The worker is not trusted: anything but a small non-negative integer reads as 0.
    """
    try:
        text = path.read_bytes()[:20]
        return max(0, int(text)) if text.strip().isdigit() else 0
    except (OSError, ValueError):
        return 0


def _write_progress(path: Path, done: int) -> None:
    """Tell the parent how many examples are scored (best effort: a failed write only stalls its bar)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(str(int(done)))
        os.replace(tmp, path)  # the parent never reads half a number
    except OSError:
        pass


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main(argv: list[str]) -> int:
    """Worker entry point: score the job in ``argv[0]`` and write ``result.json`` beside it (atomically)."""
    import torch

    from leaderboard.scoring import score, submission_record
    from leaderboard.tasks import TaskSpec
    from leaderboard.validate import is_allocation_failure, open_submission

    job_file = Path(argv[0])
    job = json.loads(job_file.read_text())
    torch.set_num_threads(int(job["threads"]))
    try:
        spec = TaskSpec.from_dict(job["task"])
        sub = open_submission(job["path"], Limits(**job["limits"]), task=spec)
        report = lambda done: _write_progress(job_file.parent / PROGRESS, done)  # noqa: E731
        row = score(sub, spec, job["data_dir"], device=job["device"], limit=job["limit"], progress=False,
                    on_progress=report)  # fmt: skip
        result = {"ok": True, "row": row, "submission": submission_record(sub)}
    except SubmissionError as e:
        result = {"ok": False, "kind": "rejected", "error": str(e)}
    except (MemoryError, RuntimeError) as e:  # RuntimeError: torch's allocator failing under the address-space cap
        if not is_allocation_failure(e):
            raise
        result = {"ok": False, "kind": "memory"}
    tmp = job_file.parent / (RESULT + ".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, job_file.parent / RESULT)
    return 0
