"""Open an untrusted submission without running any of its code, and check it before anything is scored.

A submission is a checkpoint folder in the project's format (``model.safetensors`` + ``meta.json``, as written
by `recursive_models.checkpoint`), a run directory (its newest checkpoint), a lone ``.safetensors`` file with
``meta.json`` beside it, or a pickled state dict (``.pt``, ``.pth``, ``.pkl``, ``.ckpt``, ``.bin``) with
``meta.json`` beside it. Pickles are opened only with ``torch.load(weights_only=True)``, whose unpickler refuses
every global that is not a tensor or a plain container, so a pickle that would run code is rejected before it
can. Checks, in order (the first failure is the reason given):

1. files: every path component inside the submission is opened without following links (``O_NOFOLLOW``
   through directory handles), must be a regular file or folder (no links, FIFOs or devices), within the size
   limits; folders are listed only up to a bound; nothing outside the submission is read, and no file's
   contents are echoed in an error;
2. the safetensors header: declared length within the limit and the file, valid JSON without duplicate keys or
   deep nesting, every tensor of a known dtype with non-negative integer dims, byte ranges that tile the data
   section exactly (no overlap, no holes, no trailing bytes, as the format requires); a torch zip's members
   are bounded by their *uncompressed* sizes before anything is unpickled;
3. ``meta.json``: JSON object with a ``model`` section whose fields have the right types and allowed values;
4. bounds: every field that sizes memory or compute lies in the task's `ConfigBounds` (vocabulary and sequence
   length equal the task's), then the parameter count, *computed arithmetically from the config* before any
   module exists, is within the deployment's limit; only then is the model built (on the ``meta`` device);
5. tensor names, shapes and dtypes equal the architecture's; values are finite.

    from leaderboard.validate import open_submission, Limits
    sub = open_submission("runs/my-run", Limits(max_parameters=50_000_000), task=get_task("sudoku6"))
    model = sub.build()                  # weights loaded, eval mode

`inspect_submission` runs steps 1-5 without reading tensor data or unpickling (what the parent process of the
leaderboard does before it hands the submission to a resource-limited scoring worker); `open_submission` also
loads the tensors. Every failure raises `SubmissionError` with a one-line reason.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import stat
import struct
import sys
import warnings
import zipfile
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
#: allowed values of the config's string fields (the builders check them too; this answers before building)
_CHOICES = {
    "mixer": ("attention", "mlp"),
    "pos_encodings": ("rope", "learned", "none"),
    "norm": ("post", "pre"),
    "solver.method": ("anderson", "picard", "authors"),
    "solver.stop_mode": ("rel", "abs"),
    "solver.backward": ("onestep", "phantom", "ift"),
}


class SubmissionError(ValueError):
    """A submission that cannot be scored; the message is the reason shown to the submitter."""


@dataclass(frozen=True)
class Limits:
    """What a submission's files may be (configurable per deployment; ``python -m leaderboard submit --max-...``)."""

    max_parameters: int = 100_000_000
    max_file_bytes: int = 1 << 30  # 1 GiB: a 100M-parameter fp32 model is 400 MB
    max_header_bytes: int = 1 << 20  # safetensors JSON header (a 27M model's is ~10 KB)
    max_meta_bytes: int = 4 << 20  # meta.json (holds the resolved training config)
    max_tensors: int = 10_000  # a 27M model has ~100
    max_folder_entries: int = 1_000  # entries listed in a submission folder
    max_zip_members: int = 10_000  # members of a torch.save zip
    max_pickle_bytes: int = 64 << 20  # the pickle stream of a torch.save zip or a plain pickle's file
    max_json_depth: int = 32  # nesting of meta.json and the safetensors header


@dataclass
class Submission:
    """A validated submission: its config, CPU weights and identity.

    Attributes:
        path: the weights file.
        meta: the parsed ``meta.json``.
        config: the typed model config; ``None`` after `inspect_submission` of a pickle that carries its
            description inside (only unpickling, in the scoring worker, can read it).
        state: tensor name -> CPU tensor (checked: names, shapes, dtypes, finite); empty after
            `inspect_submission`.
        sha256: hash of the weights file's bytes and the model config (what "the same submission" means).
        file_bytes: size of the weights file.
        parameters: trainable parameter count of the architecture.
        file_format: ``safetensors`` or ``pickle``.
        meta_path: the ``meta.json`` read (``None`` when the description was embedded in the weights file).
    """

    path: Path
    meta: dict
    config: ModelConfig | None
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


# ---- files: opened through directory handles, never following a link -------------------------------------------
_KINDS = {stat.S_IFLNK: "a link", stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a device", stat.S_IFBLK: "a device",
          stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder"}  # fmt: skip


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


class _Folder:
    """A folder of the submission, held open by a file descriptor so no path is looked up twice."""

    def __init__(self, fd: int, shown: Path):
        self.fd, self.shown = fd, shown

    @classmethod
    def open(cls, path: Path) -> _Folder:
        try:
            return cls(os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), path)
        except OSError as e:
            raise SubmissionError(f"{path}: cannot open the folder ({e.strerror})") from None

    def close(self) -> None:
        os.close(self.fd)

    def mode(self, name: str) -> int | None:
        """The entry's file type and mode without following a link, ``None`` when absent."""
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_mode
        except FileNotFoundError:
            return None
        except OSError as e:
            raise SubmissionError(f"{self.shown / name}: cannot read ({e.strerror})") from None

    def sub(self, name: str) -> _Folder:
        mode = self.mode(name)
        if mode is None or not stat.S_ISDIR(mode):
            what = "missing" if mode is None else f"{_kind(mode)}, not a folder (links are not accepted)"
            raise SubmissionError(f"{self.shown / name}: {what}")
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.fd)
        except OSError as e:
            raise SubmissionError(f"{self.shown / name}: cannot open the folder ({e.strerror})") from None
        return _Folder(fd, self.shown / name)

    def entries(self, limit: int) -> list[str]:
        """Names in the folder, refusing folders of more than ``limit`` entries."""
        names = []
        try:
            with os.scandir(self.fd) as it:
                for entry in it:
                    names.append(entry.name)
                    if len(names) > limit:
                        raise SubmissionError(f"{self.shown}: more than {limit:,} entries in the submission folder")
        except OSError as e:
            raise SubmissionError(f"{self.shown}: cannot list the folder ({e.strerror})") from None
        return sorted(names)

    def open_file(self, name: str, limit: int, what: str) -> tuple[int, int]:
        """``(fd, size)`` of a regular file of at most ``limit`` bytes (opened non-blocking, without links)."""
        mode = self.mode(name)
        shown = self.shown / name
        if mode is None:
            raise SubmissionError(f"{shown}: no such file")
        if not stat.S_ISREG(mode):
            raise SubmissionError(f"{shown}: {what} must be a regular file, not {_kind(mode)} (links are not accepted)")
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=self.fd)
        except OSError as e:
            raise SubmissionError(f"{shown}: cannot open {what} ({e.strerror})") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped between the stat and the open
            os.close(fd)
            raise SubmissionError(f"{shown}: {what} must be a regular file, not {_kind(st.st_mode)}")
        if st.st_size > limit:
            os.close(fd)
            raise SubmissionError(f"{shown}: {what} is {st.st_size:,} bytes, over the limit of {limit:,}")
        return fd, st.st_size

    def read(self, name: str, limit: int, what: str) -> bytes:
        fd, size = self.open_file(name, limit, what)
        try:
            return _pread(fd, size, 0)
        finally:
            os.close(fd)


def _pread(fd: int, n: int, offset: int) -> bytes:
    out = bytearray(n)
    view, done = memoryview(out), 0
    while done < n:
        got = os.preadv(fd, [view[done:]], offset + done)
        if got == 0:
            raise SubmissionError(f"the file shrank while it was read (expected {n:,} bytes at offset {offset:,})")
        done += got
    return bytes(out)


@dataclass
class _Located:
    """Where a submission's files are: the folder handle, the weights file's name and ``meta.json``'s."""

    folder: _Folder
    weights: str
    meta: str | None

    @property
    def path(self) -> Path:
        return self.folder.shown / self.weights


def _locate(path: str | os.PathLike, limits: Limits) -> _Located:
    p = Path(path)
    try:
        mode = os.stat(p, follow_symlinks=False).st_mode
    except FileNotFoundError:
        raise SubmissionError(f"no such file or folder: {p}") from None
    except OSError as e:
        raise SubmissionError(f"{p}: cannot read ({e.strerror})") from None
    if stat.S_ISLNK(mode):
        raise SubmissionError(f"{p}: the submission is a link (links are not accepted); pass the file or folder")
    if stat.S_ISDIR(mode):
        folder = _Folder.open(p)
        try:
            if folder.mode("meta.json") is None and folder.mode("model.safetensors") is None:
                ck = folder.mode("checkpoints")
                if ck is not None:
                    checkpoints = folder.sub("checkpoints")
                    folder.close()
                    folder = checkpoints
                    raw = folder.read("latest", 64, "checkpoints/latest")
                    name = raw.decode("ascii", errors="replace").strip()
                    if not re.fullmatch(r"step_\d{1,12}", name):
                        raise SubmissionError(
                            f"{folder.shown / 'latest'}: does not name a checkpoint folder step_NNNNNNN"
                        )
                    step = folder.sub(name)
                    folder.close()
                    folder = step
            names = folder.entries(limits.max_folder_entries)
            weights = "model.safetensors" if "model.safetensors" in names else None
            weights = weights or next((n for n in names if Path(n).suffix in PICKLE_SUFFIXES), None)
            if weights is None:
                raise SubmissionError(
                    f"{folder.shown}: no model.safetensors (or pickled state dict) in the folder; submit a checkpoint "
                    "folder, a run directory, or the weights file"
                )
        except BaseException:
            folder.close()
            raise
    else:
        folder, weights = _Folder.open(p.parent), p.name
    if Path(weights).suffix != ".safetensors" and Path(weights).suffix not in PICKLE_SUFFIXES:
        folder.close()
        raise SubmissionError(
            f"{folder.shown / weights}: unsupported file type {Path(weights).suffix!r:.20}; use .safetensors"
        )
    return _Located(folder, weights, "meta.json" if folder.mode("meta.json") is not None else None)


def find_files(path: str | os.PathLike, limits: Limits | None = None) -> tuple[Path, Path | None]:
    """The weights file and ``meta.json`` (``None`` when absent) of a submission path."""
    loc = _locate(path, limits or Limits())
    loc.folder.close()
    return loc.path, (loc.folder.shown / loc.meta if loc.meta else None)


def stage_submission(path: str | os.PathLike, dest: Path, limits: Limits | None = None) -> Path:
    """Copy a submission's weights file and ``meta.json`` into the new folder ``dest`` without following links.

    Everything after this reads the private copy, so the submitter cannot swap a file between a check and its
    use, and the copy is what the store keeps. Returns ``dest``.
    """
    limits = limits or Limits()
    loc = _locate(path, limits)
    try:
        dest.mkdir(parents=True)
        copies = [(loc.weights, loc.weights, limits.max_file_bytes, "the weights file")]
        if loc.meta:
            copies.append((loc.meta, "meta.json", limits.max_meta_bytes, "meta.json"))
        for name, target, limit, what in copies:
            fd, size = loc.folder.open_file(name, limit, what)
            try:
                with open(dest / target, "xb") as out:
                    offset = 0
                    while offset < size and (chunk := os.pread(fd, min(1 << 20, size - offset), offset)):
                        out.write(chunk)
                        offset += len(chunk)
            finally:
                os.close(fd)
    finally:
        loc.folder.close()
    return dest


# ---- JSON ------------------------------------------------------------------------------------------------------
def _no_duplicates(pairs: list) -> dict:
    d = {}
    for k, v in pairs:
        if k in d:
            raise SubmissionError(f"duplicate key {ascii(k)[:60]} (parsers disagree on which one counts)")
        d[k] = v
    return d


def _depth(obj, limit: int) -> None:
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if d > limit:
            raise SubmissionError(f"nested deeper than {limit} levels")
        if isinstance(o, dict):
            stack.extend((v, d + 1) for v in o.values())
        elif isinstance(o, list):
            stack.extend((v, d + 1) for v in o)


def parse_json(raw: bytes | str, what: str, limits: Limits):
    """Parse untrusted JSON: duplicate keys, deep nesting and non-finite constants are one-line rejections."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
        _depth(obj, limits.max_json_depth)
    except SubmissionError as e:
        raise SubmissionError(f"{what}: {e}") from None
    except UnicodeDecodeError:
        raise SubmissionError(f"{what}: not UTF-8 text") from None
    except RecursionError:
        raise SubmissionError(f"{what}: nested deeper than {limits.max_json_depth} levels") from None
    except json.JSONDecodeError as e:  # the message names a position, not the contents
        raise SubmissionError(f"{what}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    return obj


def _reject_constant(name: str):
    raise SubmissionError(f"{name} is not a JSON number")


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
            raise SubmissionError(
                f"meta.json: {where}{f.name} must be {f.type}, got {type(v).__name__} {ascii(v)[:40]}"
            )
        if isinstance(v, float) and not math.isfinite(v):
            raise SubmissionError(f"meta.json: {where}{f.name} must be finite, got {v}")
        if isinstance(v, str) and len(v) > 100:
            raise SubmissionError(f"meta.json: {where}{f.name} is {len(v)} characters long (at most 100)")


def parse_config(meta: dict) -> ModelConfig:
    """The typed `ModelConfig` of a ``meta.json`` (unknown keys, wrong types and unknown choices are rejected)."""
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
        config = ModelConfig.from_dict(model)
    except (TypeError, ValueError) as e:
        raise SubmissionError(f"meta.json: {str(e)[:300]}") from None
    for key, choices in _CHOICES.items():
        obj, name = (config.solver, key[7:]) if key.startswith("solver.") else (config, key)
        if getattr(obj, name) not in choices:
            raise SubmissionError(f"meta.json: model.{key} is {ascii(getattr(obj, name))[:40]}, not one of {choices}")
    return config


def check_bounds(config: ModelConfig, task=None) -> None:
    """Every field of ``config`` that sizes memory or compute lies in the task's bounds (or the defaults).

    With a task (a `leaderboard.tasks.TaskSpec`) the vocabulary and sequence length must equal its dataset's,
    ``halt_max_steps`` is at most its ``max_steps`` and ``solver.max_iter`` at most its ``max_solver_iter``.
    """
    from leaderboard.tasks import ConfigBounds

    bounds = task.bounds if task is not None else ConfigBounds()
    c, s = config, config.solver

    def within(name: str, value, lo, hi, why: str = "") -> None:
        if not lo <= value <= hi:
            where = f" on {task.key}" if task is not None else ""
            raise SubmissionError(f"model.{name}={value!r:.40}: must be between {lo} and {hi}{where}{why}")

    if task is not None:
        from puzzles.datasets import get_dataset

        family = get_dataset(task.name)
        if c.vocab_size != family.vocab_size or c.seq_len != family.seq_len:
            raise SubmissionError(
                f"the model is for vocab {c.vocab_size} / sequence length {c.seq_len}, but {task.key} has "
                f"{family.vocab_size} / {family.seq_len}: was it trained on another task?"
            )
        within("halt_max_steps", c.halt_max_steps, 1, task.max_steps)
        within("solver.max_iter", s.max_iter, 0, task.max_solver_iter)
    else:
        within("halt_max_steps", c.halt_max_steps, 1, 64)
        within("solver.max_iter", s.max_iter, 0, 256)
    for name in ("vocab_size", "seq_len", "hidden_size", "num_heads", "expansion", "layers", "h_layers",
                 "backbone_layers", "h_cycles", "l_cycles", "puzzle_emb_len", "num_puzzle_identifiers"):  # fmt: skip
        within(name, getattr(c, name), *getattr(bounds, name))
    for name in ("m", "min_iter", "phantom_steps", "ift_max_iter", "jacobian_reg_samples"):
        within(f"solver.{name}", getattr(s, name), *getattr(bounds, f"solver_{name}"))
    if c.hidden_size % c.num_heads:
        raise SubmissionError(f"model.hidden_size={c.hidden_size} is not divisible by model.num_heads={c.num_heads}")
    if c.pos_encodings == "rope" and (c.hidden_size // c.num_heads) % 2:
        raise SubmissionError(f"model.hidden_size / num_heads = {c.hidden_size // c.num_heads}: rotary needs it even")
    within("puzzle_emb_ndim", c.puzzle_emb_ndim, 0, c.puzzle_emb_len * c.hidden_size, " (puzzle_emb_len * hidden_size)")
    if not 0.0 <= c.halt_exploration_prob <= 1.0:
        raise SubmissionError(f"model.halt_exploration_prob={c.halt_exploration_prob}: must be between 0 and 1")


def parameter_count(config: ModelConfig) -> int:
    """Trainable parameters of a registered model or baseline, by arithmetic (nothing is built)."""
    from leaderboard.baselines import BASELINES
    from recursive_models.registry import MODELS, _ensure_loaded

    _ensure_loaded()
    if config.name in BASELINES:
        return 0
    if config.name not in MODELS:
        raise SubmissionError(
            f"unknown model {ascii(config.name)[:60]}; registered models: {sorted(MODELS)}, baselines: "
            f"{sorted(BASELINES)}"
        )
    return MODELS[config.name].parameter_count(config)


def instantiate(config: ModelConfig) -> nn.Module:
    """Build a registered model or a leaderboard baseline from its config (fresh weights)."""
    from leaderboard.baselines import BASELINES
    from recursive_models.registry import MODELS, _ensure_loaded, from_config

    _ensure_loaded()
    if config.name in BASELINES:
        return BASELINES[config.name](config)
    if config.name not in MODELS:
        raise SubmissionError(
            f"unknown model {ascii(config.name)[:60]}; registered models: {sorted(MODELS)}, baselines: "
            f"{sorted(BASELINES)}"
        )
    return from_config(config)


def expected_tensors(config: ModelConfig) -> tuple[dict[str, tuple[tuple[int, ...], torch.dtype]], int]:
    """Names, shapes and dtypes of the architecture's state dict, and its parameter count, without allocating.

    Call it only on a config that passed `check_bounds` and the parameter limit: it builds the modules (on the
    ``meta`` device, so no tensor memory), which for an unbounded config could itself take unbounded time.
    The answer depends only on the config, so it is cached: building even on ``meta`` takes ~50-80 ms (parameter
    init runs through torch's reference kernels), most of an HTTP upload's cost when the same architecture is
    submitted again (`leaderboard.service`).
    """
    key = json.dumps(dataclasses.asdict(config), sort_keys=True, default=str)
    if key not in _EXPECTED:
        if len(_EXPECTED) >= 128:
            _EXPECTED.pop(next(iter(_EXPECTED)))
        _EXPECTED[key] = _build_expected(config)
    spec, n = _EXPECTED[key]
    return dict(spec), n


_EXPECTED: dict[str, tuple[dict, int]] = {}  # config JSON -> expected_tensors (first in, first out)


def _build_expected(config: ModelConfig) -> tuple[dict[str, tuple[tuple[int, ...], torch.dtype]], int]:
    try:
        with torch.device("meta"):
            model = instantiate(config)
    except SubmissionError:
        raise
    except Exception as e:  # an untrusted config that does not build (e.g. a variant's own constraints)
        raise SubmissionError(f"the model config does not build: {type(e).__name__}: {str(e)[:300]}") from None
    spec = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
    return spec, sum(p.numel() for p in model.parameters())


# ---- weights files ---------------------------------------------------------------------------------------------
def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def read_safetensors_header(fd: int, file_bytes: int, limits: Limits, shown: Path) -> tuple[dict, int]:
    """Parse and bounds-check a safetensors header without reading any tensor data.

    Returns the header and the offset of the data section. The tensors' byte ranges must tile the data section
    exactly, in some order (the format's own rule), so no two tensors share bytes and nothing is left over.
    """
    head = _pread(fd, 8, 0) if file_bytes >= 8 else b""
    if len(head) < 8:
        raise SubmissionError(f"{shown}: truncated safetensors file ({file_bytes} bytes, no header)")
    (n,) = struct.unpack("<Q", head)
    if n > limits.max_header_bytes:
        raise SubmissionError(
            f"{shown}: safetensors header declares {n:,} bytes, over the limit of {limits.max_header_bytes:,}"
        )
    if 8 + n > file_bytes:
        raise SubmissionError(f"{shown}: truncated safetensors file (header of {n:,} bytes, file of {file_bytes:,})")
    header = parse_json(_pread(fd, n, 8), f"{shown}: the safetensors header", limits)
    if not isinstance(header, dict):
        raise SubmissionError(f"{shown}: the safetensors header is not a JSON object")
    n_tensors = len(header) - ("__metadata__" in header)
    if n_tensors > limits.max_tensors:
        raise SubmissionError(f"{shown}: {n_tensors:,} tensors, over the limit of {limits.max_tensors:,}")
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise SubmissionError(f"{shown}: the safetensors __metadata__ must map names to strings")
    data_bytes = file_bytes - 8 - n
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        shown_name = ascii(name)[:80]
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise SubmissionError(f"{shown}: malformed header entry for tensor {shown_name}")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str) or dtype not in SAFETENSORS_DTYPES:
            raise SubmissionError(f"{shown}: tensor {shown_name} has unsupported dtype {ascii(dtype)[:20]}")
        if not isinstance(shape, list) or len(shape) > 8 or not all(_int(s) and 0 <= s < 1 << 40 for s in shape):
            raise SubmissionError(f"{shown}: tensor {shown_name}: shape must be at most 8 non-negative integers")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_int(o) for o in offsets)):
            raise SubmissionError(f"{shown}: tensor {shown_name}: data_offsets must be two integers")
        begin, end = offsets
        if not (0 <= begin <= end <= data_bytes):
            raise SubmissionError(
                f"{shown}: truncated or corrupt: tensor {shown_name} spans bytes {begin}-{end} but the data section "
                f"has {data_bytes:,}"
            )
        need = math.prod(shape) * SAFETENSORS_DTYPES[dtype].itemsize
        if end - begin != need:
            raise SubmissionError(f"{shown}: tensor {shown_name} has {end - begin} bytes, its shape needs {need}")
        spans.append((begin, end, shown_name))
    at = 0
    for begin, end, shown_name in sorted(spans):
        if begin != at:
            what = "overlaps the previous one" if begin < at else f"leaves a hole of {begin - at} bytes before it"
            raise SubmissionError(f"{shown}: tensor {shown_name} {what} (tensors must tile the data section)")
        at = end
    if at != data_bytes:
        raise SubmissionError(
            f"{shown}: {data_bytes - at:,} bytes after the last tensor (the file is not a safetensors file)"
        )
    return header, 8 + n


def _read_tensors(fd: int, header: dict, data_start: int) -> dict[str, torch.Tensor]:
    """The tensors of a checked header, read from the open file into fresh CPU tensors (little-endian)."""
    if sys.byteorder != "little":
        raise SubmissionError("this scorer reads safetensors only on little-endian machines")
    state = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = torch.empty(end - begin, dtype=torch.uint8)
        view, done = memoryview(raw.numpy()), 0
        while done < end - begin:
            got = os.preadv(fd, [view[done:]], data_start + begin + done)
            if got == 0:
                raise SubmissionError("the weights file shrank while it was read")
            done += got
        state[name] = raw.view(SAFETENSORS_DTYPES[info["dtype"]]).reshape(info["shape"])
    return state


def is_allocation_failure(e: BaseException) -> bool:
    """Whether ``e`` is torch's allocator failing (how an address-space cap shows up inside torch)."""
    return isinstance(e, MemoryError) or (
        isinstance(e, RuntimeError) and ("can't allocate memory" in str(e) or "out of memory" in str(e))
    )


def check_zip_members(fh, limits: Limits, shown: Path) -> None:
    """A ``torch.save`` zip's members, bounded by their declared *uncompressed* sizes before anything is read."""
    try:
        with zipfile.ZipFile(fh) as zf:
            members = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise SubmissionError(f"{shown}: not a readable zip archive ({type(e).__name__})") from None
    if len(members) > limits.max_zip_members:
        raise SubmissionError(f"{shown}: {len(members):,} zip members, over the limit of {limits.max_zip_members:,}")
    total = 0
    for m in members:
        total += m.file_size
        if m.filename.endswith(".pkl") and m.file_size > limits.max_pickle_bytes:
            raise SubmissionError(
                f"{shown}: the pickle stream is {m.file_size:,} bytes uncompressed, over the limit of "
                f"{limits.max_pickle_bytes:,}"
            )
    if total > limits.max_file_bytes:
        raise SubmissionError(
            f"{shown}: the zip's members are {total:,} bytes uncompressed, over the limit of {limits.max_file_bytes:,}"
        )


def _bound_pickle(fh, file_bytes: int, limits: Limits, shown: Path) -> None:
    """A pickle's sizes before it is unpickled: a torch zip's members, or a plain pickle's file size."""
    if zipfile.is_zipfile(fh):
        check_zip_members(fh, limits, shown)
    elif file_bytes > limits.max_pickle_bytes:
        raise SubmissionError(
            f"{shown}: a plain pickle of {file_bytes:,} bytes, over the limit of {limits.max_pickle_bytes:,} "
            "(save with torch.save or as safetensors)"
        )


def _load_pickle(fd: int, file_bytes: int, limits: Limits, shown: Path) -> tuple[dict, dict | None]:
    fh = os.fdopen(os.dup(fd), "rb")
    try:
        _bound_pickle(fh, file_bytes, limits, shown)
        fh.seek(0)
        with warnings.catch_warnings():  # torch warns about pickle protocols it may not parse; refusal is the answer
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(fh, map_location="cpu", weights_only=True)
    except (SubmissionError, MemoryError):
        raise
    except Exception as e:  # weights_only refusals and every malformed-file error torch can raise
        if is_allocation_failure(e):  # the worker's memory cap, not a malformed file
            raise MemoryError(str(e)) from None
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SubmissionError(
            f"{shown}: refused: the pickle does not load with torch.load(weights_only=True) (it would need code to "
            f"run, or it is malformed: {ascii(first)[:200]}); submit model.safetensors instead"
        ) from None
    finally:
        fh.close()
    meta = None
    if isinstance(obj, dict) and isinstance(obj.get("meta"), dict):
        meta = obj["meta"]
    for key in ("state_dict", "model", "ema"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
        raise SubmissionError(f"{shown}: the pickle is not a state dict (a dict of tensor name -> tensor)")
    if len(obj) > limits.max_tensors:
        raise SubmissionError(f"{shown}: {len(obj):,} tensors, over the limit of {limits.max_tensors:,}")
    for k, v in obj.items():
        if v.layout != torch.strided or v.is_quantized or v.device.type != "cpu":
            raise SubmissionError(f"{shown}: tensor {ascii(k)[:80]} is not a dense CPU tensor")
    return obj, meta


# ---- the whole check -------------------------------------------------------------------------------------------
def inspect_submission(path: str | os.PathLike, limits: Limits | None = None, task=None) -> Submission:
    """Every check that needs no tensor data and no unpickling; ``state`` is empty (see the module docstring).

    A pickle's description may be inside the pickle: without a ``meta.json`` beside it, only the file checks
    run here and the rest waits for `open_submission`.
    """
    return _check(path, limits or Limits(), task, load=False)


def open_submission(path: str | os.PathLike, limits: Limits | None = None, task=None) -> Submission:
    """Find, read and validate a submission (see the module docstring); raises `SubmissionError`.

    Args:
        path: the submission (folder, run directory or weights file).
        limits: the deployment's file and parameter limits.
        task: a `leaderboard.tasks.TaskSpec` whose bounds apply (default: the generic `ConfigBounds`).
    """
    return _check(path, limits or Limits(), task, load=True)


def _check(path, limits: Limits, task, load: bool) -> Submission:
    loc = _locate(path, limits)
    try:
        return _check_located(loc, limits, task, load)
    finally:
        loc.folder.close()


def _check_located(loc: _Located, limits: Limits, task, load: bool) -> Submission:
    shown = loc.path
    fd, file_bytes = loc.folder.open_file(loc.weights, limits.max_file_bytes, "the weights file")
    try:
        meta, header, state = None, None, {}
        fmt = "safetensors" if loc.weights.endswith(".safetensors") else "pickle"
        if fmt == "safetensors":
            header, data_start = read_safetensors_header(fd, file_bytes, limits, shown)
            embedded = header.get("__metadata__", {}).get("attractor_suite_meta")
            if loc.meta is None and embedded is not None:
                meta = parse_json(embedded, f"{shown}: the embedded attractor_suite_meta", limits)
        meta_from_file = meta is None and loc.meta is not None
        if meta_from_file:
            raw = loc.folder.read(loc.meta, limits.max_meta_bytes, "meta.json")
            meta = parse_json(raw, str(loc.folder.shown / loc.meta), limits)
        if fmt == "pickle":
            if not load:
                with os.fdopen(os.dup(fd), "rb") as fh:
                    _bound_pickle(fh, file_bytes, limits, shown)
                if meta is None:  # the description is inside the pickle: the worker checks the rest
                    return Submission(shown, {}, None, {}, _sha256(fd, {}), file_bytes, 0, fmt, None)
            else:
                state, pickled_meta = _load_pickle(fd, file_bytes, limits, shown)
                meta = meta if meta is not None else pickled_meta
        if not isinstance(meta, dict):
            raise SubmissionError(
                f"{shown}: no model description; put the checkpoint's meta.json beside the weights file"
            )
        if meta.get("format_version", 1) != 1:
            raise SubmissionError(
                f"meta.json: format_version {ascii(meta.get('format_version'))[:20]} is not supported (1 is)"
            )
        config = parse_config(meta)
        check_bounds(config, task)
        parameters = parameter_count(config)  # arithmetic: nothing is built before this passes
        if parameters > limits.max_parameters:
            raise SubmissionError(
                f"{config.name}: {parameters:,} parameters, over the limit of {limits.max_parameters:,}"
            )
        expected, built = expected_tensors(config)
        if built != parameters:  # the arithmetic and the builder disagree: a bug here, not the submitter's
            raise SubmissionError(
                f"internal error: {config.name} counts {parameters:,} parameters but builds {built:,}"
            )

        if fmt == "safetensors":
            got = {
                k: (tuple(v["shape"]), SAFETENSORS_DTYPES[v["dtype"]]) for k, v in header.items() if k != "__metadata__"
            }
        else:
            got = {k: (tuple(v.shape), v.dtype) for k, v in state.items()} if load else None
        if got is not None:
            _compare(expected, got, config.name)
        if load and fmt == "safetensors":
            state = _read_tensors(fd, header, data_start)
        for k, v in state.items():
            if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                bad = int((~torch.isfinite(v)).sum())
                raise SubmissionError(f"tensor {ascii(k)[:80]} has {bad} non-finite values (NaN or Inf)")
        used_meta = loc.folder.shown / loc.meta if meta_from_file else None
        return Submission(
            shown, meta, config, state, _sha256(fd, meta["model"]), file_bytes, parameters, fmt, used_meta
        )
    finally:
        os.close(fd)


def _compare(expected: dict, got: dict, model: str) -> None:
    missing, unexpected = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing or unexpected:
        show = lambda names: ascii(names[:4])[:300] + (" ..." if len(names) > 4 else "")  # noqa: E731
        raise SubmissionError(
            f"tensor names do not match the {model} architecture in meta.json: missing {show(missing)}, "
            f"unexpected {show(unexpected)}"
        )
    for k, (shape, dtype) in expected.items():
        if got[k][0] != shape:
            raise SubmissionError(f"tensor {k!r}: shape {list(got[k][0])}, the architecture needs {list(shape)}")
        if got[k][1] != dtype:
            raise SubmissionError(
                f"tensor {k!r}: dtype {_DTYPE_NAMES.get(got[k][1], got[k][1])}, the architecture needs "
                f"{_DTYPE_NAMES.get(dtype, dtype)} (submit the weights in their training dtype)"
            )


def _sha256(fd: int, model_section: dict) -> str:
    """Hash of the open weights file's bytes and the model config."""
    h = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, 1 << 20, offset):
        h.update(chunk)
        offset += len(chunk)
    h.update(json.dumps(model_section, sort_keys=True).encode())
    return h.hexdigest()
