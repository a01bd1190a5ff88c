"""Score a validated submission on a task, keep a copy of it, and re-score it to verify a board entry.

    from leaderboard.scoring import submit, verify
    result = submit("runs/my-run", "sudoku6", name="alice", db="leaderboard.db")
    print(result.score_id, result.row["exact_accuracy"])
    report = verify(result.score_id, db="leaderboard.db")     # re-scores the stored copy; report.ok

Scoring runs `recursive_models.evaluation.evaluate` under the task spec's settings (fp32, fixed batch size,
every supervision step of the submission's ``halt_max_steps``, the submission's own solver settings within the
spec's limits), with deterministic algorithms and fixed seeds, so the same checkpoint scores the same numbers
again. Throughput (examples per second on the scoring device) is recorded but, being a timing, is not compared
by `verify`.

Scoring happens in a separate worker process under hard limits (`leaderboard.worker`): the submission's files
are first copied, without following links, into a private temporary folder, the checks that need no unpickling
run here (`leaderboard.validate.inspect_submission`), and the worker loads and scores the copy under an
address-space/RSS cap, a CPU-time cap and a wall-clock timeout from the task spec. A worker stopped at a limit
is a one-line rejection; the board and the store are written only after a successful result.

Accepted submissions are copied into a content-addressed store (``<db>.files/<sha256>/`` beside an SQLite
file, or ``$LEADERBOARD_STORE``), written to a temporary folder and renamed into place, so ``verify`` can re-score
exactly what was scored.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from leaderboard.db import Board, metrics_json
from leaderboard.tasks import TaskSpec, get_task, prepare_test_data
from leaderboard.validate import Limits, Submission, SubmissionError, inspect_submission, stage_submission
from leaderboard.worker import WorkerLimits, run_worker

STORE_ENV = "LEADERBOARD_STORE"
#: metrics compared by verify: exact equality for counts/accuracies, a relative tolerance for float diagnostics
VERIFIED = (
    "exact_accuracy",
    "exact_accuracy_se",
    "cell_accuracy",
    "valid_path_rate",
    "halt_steps_mean",
    "solver_iters_mean",
    "count",
    "steps",
)


@dataclass
class SubmitResult:
    """What `submit` did: the score row id, whether it is new, and the row itself."""

    score_id: int
    created: bool
    row: dict


def check_compatible(sub: Submission, spec: TaskSpec, vocab_size: int, seq_len: int) -> None:
    """The submission fits the task's data (vocabulary, length) and stays within the spec's test-time compute."""
    c = sub.config
    if c.vocab_size != vocab_size or c.seq_len != seq_len:
        raise SubmissionError(
            f"the model is for vocab {c.vocab_size} / sequence length {c.seq_len}, but {spec.key} has "
            f"{vocab_size} / {seq_len}: was it trained on another task?"
        )
    if not 1 <= c.halt_max_steps <= spec.max_steps:
        raise SubmissionError(f"halt_max_steps={c.halt_max_steps}: {spec.key} allows 1 to {spec.max_steps} steps")
    if c.name == "attractor" and c.solver.max_iter > spec.max_solver_iter:
        raise SubmissionError(
            f"solver.max_iter={c.solver.max_iter}: {spec.key} allows at most {spec.max_solver_iter} iterations"
        )


def network_evals(config, steps: int, solver_iters_mean: float | None) -> float:
    """Test-time compute of one example: supervision steps × network evaluations per step.

    A network evaluation is one call of a block stack (the shared ``net``, or HRM's ``L``/``H`` module). Per
    supervision step: TRM runs ``h_cycles`` rounds of ``l_cycles`` latent updates and one answer update; HRM
    ``h_cycles`` high-level cycles of ``l_cycles`` low-level updates and one high-level update; a Transformer one
    pass; the Attractor's solve costs its measured solver iterations (the mean over examples and steps), each
    of which evaluates the round ``f`` of two calls (``paper`` and ``backbone``; ``backbone`` adds its proposal
    backbone once), while ``authors`` solves the latent of each of its ``h_cycles`` rounds, one call per
    iteration, then runs ``phantom_steps`` calls and one answer update (each round counted at the measured
    iterations). The Attractor's count is therefore measured, the others' fixed by the config.
    """
    it = float(solver_iters_mean or 0.0)
    if config.name == "trm":
        per_step = config.h_cycles * (config.l_cycles + 1)
    elif config.name == "hrm":
        per_step = config.h_cycles * (config.l_cycles + 1)
    elif config.name == "attractor":
        variant = config.variant or "paper"
        if variant == "authors":
            per_step = config.h_cycles * (it + config.solver.phantom_steps + 1)
        else:
            per_step = 2 * it + (1 if variant == "backbone" else 0)
    else:
        per_step = 1
    return float(steps * per_step)


def split_of(data_id: str) -> str:
    """``generated`` for the task's generated test split, ``real`` for test files given with ``--data``."""
    return "generated" if data_id.startswith("generated:") else "real"


def _data_shape(data_dir: Path) -> tuple[int, int, int]:
    """``(vocab_size, seq_len, examples)`` of a test split."""
    meta = json.loads((Path(data_dir) / "test" / "dataset.json").read_text())
    n = len(np.load(Path(data_dir) / "test" / "all__inputs.npy", mmap_mode="r"))
    return int(meta["vocab_size"]), int(meta["seq_len"]), n


def score(
    sub: Submission,
    spec: TaskSpec,
    data_dir: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    limit: int | None = None,
    progress: bool = True,
    on_progress: Callable[[int], None] | None = None,
) -> dict:
    """Evaluate ``sub`` under ``spec``; returns the ``scores`` columns (without ids, data id and time).

    ``on_progress`` is called with the examples scored so far after each batch (see `evaluate`).
    """
    from recursive_models.checkpoint import git_commit
    from recursive_models.evaluation import evaluate

    check_compatible(sub, spec, *_data_shape(Path(data_dir))[:2])
    device = torch.device(device)
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be at least 1, got {limit}")
    det_before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        torch.manual_seed(spec.bootstrap_seed)
        model = sub.build(device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        m = evaluate(
            model,
            data_dir,
            device=device,
            precision=spec.precision,
            batch_size=spec.batch_size,
            limit=limit,
            halt_max_steps=sub.config.halt_max_steps,
            progress=progress,
            seed=spec.bootstrap_seed,
            on_progress=on_progress,
        )
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
    finally:
        torch.use_deterministic_algorithms(det_before)
    m["leaderboard/examples_per_s"] = m["eval/count"] / max(seconds, 1e-9)
    m["leaderboard/parameters"] = sub.parameters
    full = limit is None or bool(m["eval/reportable"])
    return {
        "task": spec.name,
        "task_version": spec.version,
        "task_fingerprint": spec.fingerprint,
        "limit_n": 0 if full else int(m["eval/count"]),
        "reportable": full,
        "exact_accuracy": m["eval/exact_accuracy"],
        "exact_accuracy_se": m["eval/exact_accuracy_se"],
        "cell_accuracy": m["eval/cell_accuracy"],
        "valid_path_rate": m.get("eval/valid_path_fraction"),
        "halt_steps_mean": m["act/halt_steps_mean"],
        "solver_iters_mean": m.get("solver/nstep_mean"),
        "examples_per_s": m["leaderboard/examples_per_s"],
        "count": int(m["eval/count"]),
        "steps": int(m["eval/steps"]),
        "metrics_json": metrics_json(m),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)",
        "torch_version": torch.__version__,
        "code_version": git_commit(),
        "duration_s": seconds,
        "network_evals_per_example": network_evals(sub.config, int(m["eval/steps"]), m.get("solver/nstep_mean")),
    }


def store_dir(board: Board, store: str | os.PathLike | None = None) -> Path | None:
    """Where submissions are kept: ``store``, ``$LEADERBOARD_STORE``, or ``<sqlite file>.files``."""
    return board_folder(board, store, STORE_ENV, ".files")


def board_folder(board: Board, given: str | os.PathLike | None, env: str, suffix: str) -> Path | None:
    """A folder that belongs to a board: ``given``, else ``$env``, else ``<sqlite file><suffix>``.

    None for a database server with neither.
    """
    if given is not None:
        return Path(given)
    if os.environ.get(env):
        return Path(os.environ[env])
    if board.sqlite:
        return Path(board.url.removeprefix("sqlite:///") + suffix)
    return None


def keep_copy(staged: Path, sha256: str, root: Path) -> Path:
    """Copy a staged submission folder into ``root/<sha256>/`` atomically (a no-op when already there)."""
    final = root / sha256
    if final.is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{sha256[:12]}."))
    try:
        for f in staged.iterdir():
            shutil.copyfile(f, tmp / f.name)
        try:
            os.replace(tmp, final)
        except OSError:  # a concurrent submitter of the same file got there first
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def submission_record(sub: Submission) -> dict:
    """What the board keeps of a validated submission (the worker sends it back to the parent)."""
    return {
        "sha256": sub.sha256,
        "model": sub.config.name,
        "size": sub.config.size,
        "parameters": sub.parameters,
        "file_bytes": sub.file_bytes,
        "file_format": sub.file_format,
        "meta_json": metrics_json(sub.meta),
    }


def score_staged(
    staged: Path,
    spec: TaskSpec,
    data_dir: Path,
    workdir: Path,
    *,
    device: str | torch.device = "cpu",
    limit: int | None = None,
    limits: Limits | None = None,
    worker: WorkerLimits | None = None,
    progress: bool = False,
) -> tuple[dict, dict]:
    """Load and score a staged submission in a limited worker: ``(score row, submission record)``.

    With ``progress``, one bar counts the examples the worker has scored (none for a single example).

    Raises:
        SubmissionError: rejected by a check in the worker or stopped at one of its limits.
    """
    limits, worker = limits or Limits(), worker or WorkerLimits()
    n_test = _data_shape(data_dir)[2]
    examples = n_test if limit is None else min(limit, n_test)
    wall = worker.wall_seconds or spec.score_seconds(examples) * worker.time_scale
    job = {"path": str(staged), "task": spec.to_dict(), "data_dir": str(Path(data_dir).resolve()),
           "device": str(device), "limit": limit, "limits": asdict(limits)}  # fmt: skip
    bar = tqdm(total=examples, desc="score", unit="ex", disable=not progress or examples < 2, leave=False)
    try:
        result = run_worker(job, workdir, wall, worker, on_progress=lambda done: _advance(bar, done))
        _advance(bar, int(result["row"]["count"]))
    finally:
        bar.close()
    return result["row"], result["submission"]


def _advance(bar: tqdm, done: int) -> None:
    """Move ``bar`` to ``done``, the worker's own claim: clamped to the bar's total, never backwards."""
    step = min(done, bar.total) - bar.n
    if step > 0:  # redraw only on news: the parent polls every 50 ms
        bar.update(step)


@contextmanager
def _shown_as(staged: Path, path: str | os.PathLike):
    """Rejections name the submitter's folder, not the private copy."""
    try:
        yield
    except SubmissionError as e:
        folder = Path(path) if Path(path).is_dir() else Path(path).parent
        raise SubmissionError(str(e).replace(str(staged), str(folder))) from None


def submit(
    path: str | os.PathLike,
    task: str,
    *,
    name: str,
    db: str | os.PathLike | Board | None = None,
    data: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    limit: int | None = None,
    limits: Limits | None = None,
    worker: WorkerLimits | None = None,
    kind: str = "measured",
    store: str | os.PathLike | None = None,
    progress: bool = True,
    train_examples: int | None = None,
    train_augmentations: int | None = None,
) -> SubmitResult:
    """Validate, score (in a limited worker) and record a submission (see the module docstring).

    ``train_examples`` and ``train_augmentations`` are what the submitter declares about the training set (shown
    on the board as declared, so readers can compare like with like); the first submission of a file sets them.

    Raises:
        SubmissionError: the submission was rejected (nothing is written).
        TaskError: unknown task or bad ``data``.
    """
    name = name.strip()
    if not name or len(name) > 200:
        raise SubmissionError("--name must be 1 to 200 characters")
    check_declared(train_examples, train_augmentations)
    spec = get_task(task)
    if limit is not None and limit < 1:
        raise SubmissionError(f"--limit must be at least 1, got {limit}")
    board = db if isinstance(db, Board) else Board(db)
    limits = limits or Limits()
    with tempfile.TemporaryDirectory(prefix="leaderboard-score-") as tmp:
        work = Path(tmp)
        staged = stage_submission(path, work / "submission", limits)
        with _shown_as(staged, path):
            pre = inspect_submission(staged, limits, task=spec)  # no unpickling; before any test data is built
        board.check_fingerprint(spec.name, spec.version, spec.fingerprint)
        data_dir, data_id = prepare_test_data(spec, data, progress=progress)
        n_test = _data_shape(data_dir)[2]
        limit_key = 0 if limit is None or limit >= n_test else limit  # a limit covering the split is a full run
        existing = board.find_score(pre.sha256, spec.name, spec.version, data_id, limit_key) if pre.config else None
        if existing is not None:
            return SubmitResult(int(existing["id"]), False, existing)
        if progress:
            print(f"scoring {path} on {spec.key} in a worker process...", flush=True)
        with _shown_as(staged, path):
            row, record = score_staged(staged, spec, data_dir, work, device=device, limit=limit, limits=limits,
                                       worker=worker, progress=progress)  # fmt: skip
        row["data"], row["split"] = data_id, split_of(data_id)
        root = store_dir(board, store)
        if root is not None:
            keep_copy(staged, record["sha256"], root)
        declared = {"train_examples": train_examples, "train_augmentations": train_augmentations}
        score_id, created = board.add({**record, "name": name, "kind": kind, **declared}, row)
    return SubmitResult(score_id, created, board.get(score_id))


#: the largest declared training-set size and augmentation count accepted (bounds on what a stranger may send)
MAX_DECLARED = 10**12


def check_declared(train_examples: int | None, train_augmentations: int | None) -> None:
    """The declared training-set size and augmentations are None or integers in ``[0, MAX_DECLARED]``."""
    for flag, v in (("train_examples", train_examples), ("train_augmentations", train_augmentations)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_DECLARED):
            raise SubmissionError(f"{flag} must be an integer from 0 to {MAX_DECLARED:,}, got {ascii(v)[:40]}")


@dataclass
class VerifyReport:
    """Stored against re-scored metrics of one board entry."""

    score_id: int
    ok: bool
    compared: dict  # metric -> (stored, now)
    mismatches: list[str]


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(a)))


def verify(
    score_id: int,
    *,
    db: str | os.PathLike | Board | None = None,
    path: str | os.PathLike | None = None,
    data: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    store: str | os.PathLike | None = None,
    limits: Limits | None = None,
    worker: WorkerLimits | None = None,
    progress: bool = True,
) -> VerifyReport:
    """Re-score a board entry from its stored copy (or ``path``) and compare every deterministic metric.

    Raises:
        SubmissionError: no such entry, no copy to re-score, or the file's hash differs from the entry's.
    """
    board = db if isinstance(db, Board) else Board(db)
    row = board.get(score_id)
    if row is None:
        raise SubmissionError(f"no score with id {score_id}")
    if path is None:
        root = store_dir(board, store)
        path = root / row["sha256"] if root is not None else None
        if path is None or not Path(path).is_dir():
            raise SubmissionError(f"no stored copy of submission {row['sha256'][:12]}; pass --path to the checkpoint")
    spec = get_task(f"{row['task']}@{row['task_version']}")
    if spec.fingerprint != row["task_fingerprint"]:
        raise SubmissionError(f"{spec.key}'s spec changed since this entry was scored; it cannot be re-scored")
    if row["data"].startswith("generated:"):
        data_dir, data_id = prepare_test_data(spec, None, progress=progress)
    else:
        if data is None:
            raise SubmissionError(f"entry {score_id} was scored on user data {row['data']}; pass --data to it")
        data_dir, data_id = prepare_test_data(spec, data, progress=progress)
    if data_id != row["data"]:
        raise SubmissionError(f"the test data is {data_id}, but the entry was scored on {row['data']}")
    with tempfile.TemporaryDirectory(prefix="leaderboard-verify-") as tmp:
        staged = stage_submission(path, Path(tmp) / "submission", limits)
        with _shown_as(staged, path):
            pre = inspect_submission(staged, limits, task=spec)
            if pre.config is not None and pre.sha256 != row["sha256"]:
                raise SubmissionError(
                    f"{path} is not the scored submission (hash {pre.sha256[:12]}, entry {row['sha256'][:12]})"
                )
            now, record = score_staged(staged, spec, data_dir, Path(tmp), device=device, limit=row["limit_n"] or None,
                                  limits=limits, worker=worker, progress=progress)  # fmt: skip
    if record["sha256"] != row["sha256"]:  # a pickle that carries its own description: known only now
        raise SubmissionError(f"{path} is not the scored submission (hash {record['sha256'][:12]}, entry "
                              f"{row['sha256'][:12]})")  # fmt: skip
    compared = {k: (row[k], now[k]) for k in VERIFIED}
    mismatches = [f"{k}: stored {a!r}, now {b!r}" for k, (a, b) in compared.items() if not _same(a, b)]
    return VerifyReport(score_id, not mismatches, compared, mismatches)
