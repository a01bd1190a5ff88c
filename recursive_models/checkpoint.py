"""Checkpoints that load without the training code: ``model.safetensors`` + ``meta.json`` (+ resume state).

Layout of a run directory::

    RUN/checkpoints/step_000500/model.safetensors   # weights used for evaluation (the EMA copy when EMA is on),
                                                    # plain module keys (never torch.compile prefixes)
    RUN/checkpoints/step_000500/meta.json           # model name, size, task, builder arguments (ModelConfig),
                                                    # resolved config, step, seeds, git commit, metrics
    RUN/checkpoints/step_000500/trainer_state.pt    # raw weights, optimiser, RNG, ACT carries, data position
    RUN/checkpoints/latest                          # name of the newest complete checkpoint

A checkpoint is written into a temporary folder and renamed into place, and ``latest`` is replaced atomically
afterwards, so a run killed at any moment leaves the previous checkpoint intact.

    from recursive_models import load_checkpoint
    model, meta = load_checkpoint("runs/my-run")          # a run dir, a checkpoint dir, or its .safetensors
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from recursive_models.base import ModelConfig, RecursiveModel

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
META = "meta.json"
TRAINER_STATE = "trainer_state.pt"


def git_commit() -> str | None:
    """The commit of the checkout this package runs from (``None`` outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _write_json_atomic(path: Path, obj: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        json.dump(obj, fh, indent=2, default=str)
        fh.write("\n")
    os.replace(tmp, path)


def write_weights_folder(
    folder: Path, weights: dict[str, torch.Tensor], meta: dict, trainer_state: dict | None = None
) -> Path:
    """Write ``model.safetensors`` + ``meta.json`` (+ trainer state) as one folder, atomically.

    Everything goes into a hidden sibling first and is renamed into place (replacing an older ``folder``), so a
    crash leaves either the old folder or the new one, never a half-written one.
    """
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in weights.items()}, str(tmp / WEIGHTS))
        _write_json_atomic(tmp / META, meta)
        if trainer_state is not None:
            torch.save(trainer_state, tmp / TRAINER_STATE)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    weights: dict[str, torch.Tensor],
    meta: dict,
    trainer_state: dict | None = None,
    keep: int = 2,
) -> Path:
    """Write ``RUN/checkpoints/step_XXXXXX`` atomically and point ``latest`` at it.

    Args:
        run_dir: the run directory.
        step: optimiser step (names the folder).
        weights: the state dict to publish (e.g. the EMA weights).
        meta: JSON-serialisable description; ``format_version`` and ``step`` are added.
        trainer_state: optional resume state (saved with `torch.save`, loaded with ``weights_only=True``).
        keep: how many complete checkpoints to keep (older ones are deleted after the new one is in place).

    Returns:
        the checkpoint folder.
    """
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:07d}"
    final = write_weights_folder(
        root / name, weights, {"format_version": FORMAT_VERSION, **meta, "step": step}, trainer_state
    )
    fd, tmp_latest = tempfile.mkstemp(dir=root, prefix=".latest.")
    with os.fdopen(fd, "w") as fh:
        fh.write(name + "\n")
    os.replace(tmp_latest, root / "latest")
    done = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in done[: max(0, len(done) - keep)]:
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def find_checkpoint(path: str | os.PathLike) -> Path:
    """Resolve a run directory, a checkpoint folder or a ``model.safetensors`` file to a checkpoint folder.

    Raises:
        FileNotFoundError: with what was looked for.
    """
    p = Path(path)
    if p.is_file() and p.name == WEIGHTS:
        p = p.parent
    if (p / WEIGHTS).is_file() and (p / META).is_file():
        return p
    latest = p / "checkpoints" / "latest"
    if latest.is_file():
        ckpt = p / "checkpoints" / latest.read_text().strip()
        if (ckpt / WEIGHTS).is_file():
            return ckpt
    if not p.exists():
        raise FileNotFoundError(f"no such run or checkpoint: {p}")
    raise FileNotFoundError(
        f"{p} is neither a checkpoint folder (with {WEIGHTS} and {META}) nor a run directory with "
        f"checkpoints/latest; was the run stopped before its first checkpoint?"
    )


def read_meta(path: str | os.PathLike) -> dict:
    """The ``meta.json`` of a checkpoint (see `find_checkpoint` for ``path``)."""
    ckpt = find_checkpoint(path)
    meta = json.loads((ckpt / META).read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{ckpt / META}: format_version {meta.get('format_version')!r}, expected {FORMAT_VERSION}")
    return meta


def load_checkpoint(
    path: str | os.PathLike, device: str | torch.device = "cpu", **config_overrides
) -> tuple[RecursiveModel, dict]:
    """Rebuild the model from ``meta.json`` and load its weights; no training code or config files needed.

    Args:
        path: run directory (newest checkpoint), checkpoint folder, or its ``model.safetensors``.
        device: where to put the model.
        **config_overrides: `ModelConfig` fields to change for inference, e.g. ``halt_max_steps=32`` or
            ``solver={"max_iter": 0}`` (test-time knobs; architecture fields must match the weights).

    Returns:
        ``(model, meta)`` with the model in eval mode.
    """
    from recursive_models.registry import from_config

    ckpt = find_checkpoint(path)
    meta = read_meta(ckpt)
    cfg = dict(meta["model"])
    for k, v in config_overrides.items():
        if k == "solver":
            cfg["solver"] = {**cfg.get("solver", {}), **v}
        else:
            cfg[k] = v
    model = from_config(ModelConfig.from_dict(cfg))
    state = load_file(str(ckpt / WEIGHTS), device="cpu")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ValueError(f"{ckpt / WEIGHTS} does not match the model in meta.json: {str(e).splitlines()[1:3]}") from e
    if missing or unexpected:
        raise ValueError(
            f"{ckpt / WEIGHTS} does not match the model in meta.json: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return model.to(device).eval(), meta
