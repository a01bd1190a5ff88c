"""Open an untrusted submission without running any of its code, and check it before anything is scored.

A submission is a checkpoint folder in the project's format (``model.safetensors`` + ``meta.json``, as written
by `recursive_models.checkpoint`), a run directory (its newest checkpoint), a lone ``.safetensors`` file with
``meta.json`` beside it, or a pickled state dict (``.pt``, ``.pth``, ``.pkl``, ``.ckpt``, ``.bin``) with
``meta.json`` beside it. Pickles are opened only with ``torch.load(weights_only=True)``, whose unpickler refuses
every global that is not a tensor or a plain container, so a pickle that would run code is rejected before it
can. Checks, in order (the first failure is the reason given):

1. files are regular files (no links) within the size limits;
2. the safetensors header: its declared length within the limit and the file, valid JSON, every tensor's byte
   range inside the file and of the size its dtype and shape need (a truncated file fails here);
3. ``meta.json``: JSON object with a ``model`` section whose fields have the right types;
4. the model name is registered (or is a leaderboard baseline), and the config builds; the parameter count,
   taken from a build on the ``meta`` device (no memory), is within the limit;
5. tensor names, shapes and dtypes equal the architecture's; values are finite.

    from leaderboard.validate import open_submission, Limits
    sub = open_submission("runs/my-run", Limits(max_parameters=50_000_000))
    model = sub.build()                  # weights loaded, eval mode

Every failure raises `SubmissionError` with a one-line reason.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import re
import struct
import warnings
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import nn

from recursive_models.base import ModelConfig, SolverConfig

PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".ckpt", ".bin")
SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_DTYPE_NAMES = {v: k for k, v in SAFETENSORS_DTYPES.items()}


class SubmissionError(ValueError):
    """A submission that cannot be scored; the message is the reason shown to the submitter."""


@dataclass(frozen=True)
class Limits:
    """What a submission may be (configurable per deployment; ``python -m leaderboard submit --max-...``)."""

    max_parameters: int = 100_000_000
    max_file_bytes: int = 1 << 30  # 1 GiB: a 100M-parameter fp32 model is 400 MB
    max_header_bytes: int = 1 << 20  # safetensors JSON header (a 27M model's is ~10 KB)
    max_meta_bytes: int = 4 << 20  # meta.json (holds the resolved training config)


@dataclass
class Submission:
    """A validated submission: its config, CPU weights and identity.

    Attributes:
        path: the weights file.
        meta: the parsed ``meta.json``.
        config: the typed model config.
        state: tensor name -> CPU tensor (checked: names, shapes, dtypes, finite).
        sha256: hash of the weights file's bytes and the model config (what "the same submission" means).
        file_bytes: size of the weights file.
        parameters: trainable parameter count of the architecture.
        file_format: ``safetensors`` or ``pickle``.
        meta_path: the ``meta.json`` read (``None`` when the description was embedded in the weights file).
    """

    path: Path
    meta: dict
    config: ModelConfig
    state: dict[str, torch.Tensor]
    sha256: str
    file_bytes: int
    parameters: int
    file_format: str
    meta_path: Path | None = None

    def build(self, device: str | torch.device = "cpu") -> nn.Module:
        """The model with the submission's weights, in eval mode."""
        model = instantiate(self.config)
        model.load_state_dict(self.state, strict=True)
        return model.to(device).eval()


# ---- config ----------------------------------------------------------------------------------------------
_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


def _check_fields(cls, d: dict, where: str) -> None:
    for f in fields(cls):
        if f.name not in d or f.name == "solver":
            continue
        ok = _TYPES.get(str(f.type))
        v = d[f.name]
        if ok is None:
            continue
        if not isinstance(v, ok) or (isinstance(v, bool) and str(f.type) != "bool"):
            raise SubmissionError(f"meta.json: {where}{f.name} must be {f.type}, got {type(v).__name__} {v!r:.40}")
        if isinstance(v, float) and not math.isfinite(v):
            raise SubmissionError(f"meta.json: {where}{f.name} must be finite, got {v}")


def parse_config(meta: dict) -> ModelConfig:
    """The typed `ModelConfig` of a ``meta.json`` (unknown keys and wrong types are rejected)."""
    model = meta.get("model")
    if not isinstance(model, dict):
        raise SubmissionError("meta.json has no 'model' section (the ModelConfig the checkpoint was built with)")
    if not isinstance(model.get("name"), str):
        raise SubmissionError("meta.json: model.name must be a string naming a registered model")
    _check_fields(ModelConfig, model, "model.")
    solver = model.get("solver", {})
    if not isinstance(solver, dict):
        raise SubmissionError("meta.json: model.solver must be an object")
    _check_fields(SolverConfig, solver, "model.solver.")
    try:
        return ModelConfig.from_dict(model)
    except (TypeError, ValueError) as e:
        raise SubmissionError(f"meta.json: {e}") from None


def instantiate(config: ModelConfig) -> nn.Module:
    """Build a registered model or a leaderboard baseline from its config (fresh weights)."""
    from leaderboard.baselines import BASELINES
    from recursive_models.registry import MODELS, _ensure_loaded, from_config

    _ensure_loaded()
    if config.name in BASELINES:
        return BASELINES[config.name](config)
    if config.name not in MODELS:
        raise SubmissionError(
            f"unknown model {config.name!r}; registered models: {sorted(MODELS)}, baselines: {sorted(BASELINES)}"
        )
    return from_config(config)


def expected_tensors(config: ModelConfig) -> tuple[dict[str, tuple[tuple[int, ...], torch.dtype]], int]:
    """Names, shapes and dtypes of the architecture's state dict, and its parameter count, without allocating."""
    try:
        with torch.device("meta"):
            model = instantiate(config)
    except SubmissionError:
        raise
    except Exception as e:  # an untrusted config that does not build (e.g. heads not dividing the width)
        raise SubmissionError(f"the model config does not build: {type(e).__name__}: {e}") from None
    spec = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
    return spec, sum(p.numel() for p in model.parameters())


# ---- files -----------------------------------------------------------------------------------------------
def _regular_file(p: Path, limit: int, what: str) -> int:
    if p.is_symlink() or not p.is_file():
        raise SubmissionError(f"{p}: {what} must be a regular file (links are not accepted)")
    size = p.stat().st_size
    if size > limit:
        raise SubmissionError(f"{p}: {what} is {size:,} bytes, over the limit of {limit:,}")
    return size


def find_files(path: str | os.PathLike) -> tuple[Path, Path | None]:
    """The weights file and ``meta.json`` (``None`` when absent) of a submission path."""
    p = Path(path)
    if not p.exists():
        raise SubmissionError(f"no such file or folder: {p}")
    if p.is_dir():
        latest = p / "checkpoints" / "latest"
        if latest.is_file() and not (p / "meta.json").exists():
            name = latest.read_text().strip()
            if not re.fullmatch(r"step_\d+", name):
                raise SubmissionError(f"{latest}: names {name[:40]!r}, not a checkpoint folder step_NNNNNNN")
            p = p / "checkpoints" / name
        candidates = [p / "model.safetensors", *sorted(q for q in p.iterdir() if q.suffix in PICKLE_SUFFIXES)]
        weights = next((q for q in candidates if q.exists()), None)
        if weights is None:
            raise SubmissionError(
                f"{p}: no model.safetensors (or pickled state dict) in the folder; submit a checkpoint folder, a run "
                "directory, or the weights file"
            )
    else:
        weights = p
    if weights.suffix != ".safetensors" and weights.suffix not in PICKLE_SUFFIXES:
        raise SubmissionError(f"{weights}: unsupported file type {weights.suffix!r}; use .safetensors")
    meta = weights.parent / "meta.json"
    return weights, meta if meta.exists() else None


def read_safetensors_header(path: Path, file_bytes: int, limits: Limits) -> dict:
    """Parse and bounds-check a safetensors header without reading any tensor data."""
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise SubmissionError(f"{path}: truncated safetensors file ({file_bytes} bytes, no header)")
        (n,) = struct.unpack("<Q", head)
        if n > limits.max_header_bytes:
            raise SubmissionError(
                f"{path}: safetensors header declares {n:,} bytes, over the limit of {limits.max_header_bytes:,}"
            )
        if 8 + n > file_bytes:
            raise SubmissionError(f"{path}: truncated safetensors file (header of {n:,} bytes, file of {file_bytes:,})")
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SubmissionError(f"{path}: the safetensors header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise SubmissionError(f"{path}: the safetensors header is not a JSON object")
    data_bytes = file_bytes - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
            itemsize = SAFETENSORS_DTYPES[dtype].itemsize
            numel = math.prod(int(s) for s in shape)
        except (KeyError, TypeError, ValueError):
            raise SubmissionError(f"{path}: malformed header entry for tensor {name!r:.80}") from None
        if not (0 <= begin <= end <= data_bytes):
            raise SubmissionError(
                f"{path}: truncated or corrupt: tensor {name!r:.80} spans bytes {begin}-{end} but the data section has "
                f"{data_bytes:,}"
            )
        if end - begin != numel * itemsize:
            raise SubmissionError(
                f"{path}: tensor {name!r:.80} has {end - begin} bytes, its shape needs {numel * itemsize}"
            )
    return header


def _load_pickle(path: Path) -> tuple[dict, dict | None]:
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols it may not parse; refusal is the answer
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SubmissionError(
            f"{path}: refused: the pickle does not load with torch.load(weights_only=True) (it would need code to "
            f"run: {first[:200]}); submit model.safetensors instead"
        ) from None
    meta = None
    if isinstance(obj, dict) and isinstance(obj.get("meta"), dict):
        meta = obj["meta"]
    for key in ("state_dict", "model", "ema"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
        raise SubmissionError(f"{path}: the pickle is not a state dict (a dict of tensor name -> tensor)")
    return obj, meta


def open_submission(path: str | os.PathLike, limits: Limits | None = None) -> Submission:
    """Find, read and validate a submission (see the module docstring); raises `SubmissionError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    limits = limits or Limits()
    weights, meta_path = find_files(path)
    file_bytes = _regular_file(weights, limits.max_file_bytes, "the weights file")
    meta = None
    if weights.suffix == ".safetensors":
        fmt = "safetensors"
        header = read_safetensors_header(weights, file_bytes, limits)
        embedded = (header.get("__metadata__") or {}).get("attractor_suite_meta")
        if meta_path is None and isinstance(embedded, str):
            try:
                meta = json.loads(embedded)
            except json.JSONDecodeError:
                raise SubmissionError(f"{weights}: the embedded attractor_suite_meta is not valid JSON") from None
    else:
        fmt, header = "pickle", None
    meta_from_file = meta is None and meta_path is not None
    if meta_from_file:
        _regular_file(meta_path, limits.max_meta_bytes, "meta.json")
        try:
            meta = json.loads(meta_path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SubmissionError(f"{meta_path}: not valid JSON ({e})") from None
    pickled_meta = None
    if fmt == "pickle":
        state, pickled_meta = _load_pickle(weights)
        meta = meta if meta is not None else pickled_meta
    if not isinstance(meta, dict):
        raise SubmissionError(
            f"{weights}: no model description; put the checkpoint's meta.json beside the weights file"
        )
    if meta.get("format_version", 1) != 1:
        raise SubmissionError(f"meta.json: format_version {meta.get('format_version')!r} is not supported (1 is)")
    config = parse_config(meta)
    expected, parameters = expected_tensors(config)
    if parameters > limits.max_parameters:
        raise SubmissionError(f"{config.name}: {parameters:,} parameters, over the limit of {limits.max_parameters:,}")

    if fmt == "safetensors":
        got = {
            k: (tuple(int(s) for s in v["shape"]), SAFETENSORS_DTYPES[v["dtype"]])
            for k, v in header.items()
            if k != "__metadata__"
        }
    else:
        got = {k: (tuple(v.shape), v.dtype) for k, v in state.items()}
    missing, unexpected = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing or unexpected:
        raise SubmissionError(
            f"tensor names do not match the {config.name} architecture in meta.json: missing {missing[:4]}"
            f"{' ...' if len(missing) > 4 else ''}, unexpected {unexpected[:4]}{' ...' if len(unexpected) > 4 else ''}"
        )
    for k, (shape, dtype) in expected.items():
        if got[k][0] != shape:
            raise SubmissionError(f"tensor {k!r}: shape {list(got[k][0])}, the architecture needs {list(shape)}")
        if got[k][1] != dtype:
            raise SubmissionError(
                f"tensor {k!r}: dtype {_DTYPE_NAMES.get(got[k][1], got[k][1])}, the architecture needs "
                f"{_DTYPE_NAMES.get(dtype, dtype)} (submit the weights in their training dtype)"
            )
    if fmt == "safetensors":
        try:
            state = load_file(str(weights), device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise SubmissionError(f"{weights}: could not read the tensors ({e})") from None
    for k, v in state.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            bad = int((~torch.isfinite(v)).sum())
            raise SubmissionError(f"tensor {k!r} has {bad} non-finite values (NaN or Inf)")

    h = hashlib.sha256()
    with open(weights, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    h.update(json.dumps(meta["model"], sort_keys=True).encode())
    used_meta = meta_path if meta_from_file else None
    return Submission(weights, meta, config, state, h.hexdigest(), file_bytes, parameters, fmt, used_meta)
