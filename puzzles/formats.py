"""Read and write the real data formats of Sudoku-Extreme and Maze-Hard.

Two formats are supported, both exactly as the published datasets and the reference builders
(HRM ``dataset/build_*_dataset.py``, TRM ``puzzle_dataset.py``) use them:

* **Hugging Face CSV** — header ``source,question,answer,rating``; one puzzle per row; the
  question and answer are row-major strings (Sudoku: ``.`` or ``0`` for blanks, digits ``1..N``;
  Maze: characters ``# SGo``). See :func:`read_csv` / :func:`write_csv`.
* **HRM/TRM dataset folder** — ``<root>/{train,test}/`` each holding ``dataset.json`` and the
  arrays ``all__inputs.npy``, ``all__labels.npy``, ``all__puzzle_identifiers.npy``,
  ``all__puzzle_indices.npy``, ``all__group_indices.npy``, plus ``<root>/identifiers.json``.
  Tokens: Sudoku pad 0, blank 1, digits 2..N+1; Maze ``# SGo`` → 1..5, pad 0. See
  :func:`read_split` / :func:`write_split`.

Grids inside the project are plain integer arrays: a Sudoku is ``(N, N)`` int8 with 0 for
blank, a maze is ``(N, N)`` uint8 holding the token ids above. Conversions between the three
forms (text, grid, tokens) are vectorised so a 3.8M-row CSV loads in seconds.

Example::

    from puzzles.formats import read_csv, read_split
    table = read_csv("train.csv")                      # kind inferred from the characters
    split = read_split("data/sudoku-extreme-1k-aug-1000", "train")
    split.inputs.shape                                 # (examples, 81) uint8 tokens
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from puzzles.errors import DatasetError, PuzzleFormatError

Kind = Literal["sudoku", "maze"]

MAZE_CHARSET = "# SGo"
CSV_COLUMNS = ("source", "question", "answer", "rating")
SPLIT_FIELDS = ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices")
METADATA_FIELDS = (
    "seq_len",
    "vocab_size",
    "pad_id",
    "ignore_label_id",
    "blank_identifier_id",
    "num_puzzle_identifiers",
    "total_groups",
    "mean_puzzle_examples",
    "total_puzzles",
    "sets",
)

# Byte → value lookup tables; 255 marks a character outside the alphabet.
_SUDOKU_LUT = np.full(256, 255, dtype=np.uint8)
_SUDOKU_LUT[ord(".")] = 0
for _d in range(10):
    _SUDOKU_LUT[ord("0") + _d] = _d
_MAZE_LUT = np.full(256, 255, dtype=np.uint8)
for _i, _ch in enumerate(MAZE_CHARSET):
    _MAZE_LUT[ord(_ch)] = _i + 1
_MAZE_CHARS = np.frombuffer(("?" + MAZE_CHARSET).encode(), dtype=np.uint8)


# --------------------------------------------------------------------------------------------
# text <-> grid (vectorised over many rows)
# --------------------------------------------------------------------------------------------
def _strings_to_bytes(strings: list[str] | np.ndarray, what: str) -> np.ndarray:
    """Stack equal-length ASCII strings into a ``(rows, length)`` uint8 array."""
    strings = [str(s) for s in strings]
    if not strings:
        return np.zeros((0, 0), dtype=np.uint8)
    length = len(strings[0])
    for i, s in enumerate(strings):
        if len(s) != length:
            raise PuzzleFormatError(f"{what} row {i} has {len(s)} characters; row 0 has {length}")
    try:
        buf = "".join(strings).encode("ascii")
    except UnicodeEncodeError as e:
        row = e.start // max(length, 1)
        raise PuzzleFormatError(
            f"{what} row {row}: non-ASCII character {strings[row][e.start % length]!r} at cell {e.start % length}"
        ) from None
    return np.frombuffer(buf, dtype=np.uint8).reshape(len(strings), length)


def _side(length: int, what: str) -> int:
    n = math.isqrt(length)
    if n * n != length:
        raise PuzzleFormatError(f"{what} has {length} characters, which is not a square grid")
    return n


def texts_to_grids(strings: list[str] | np.ndarray, kind: Kind, what: str = "question") -> np.ndarray:
    """Decode row-major puzzle strings into grids of shape ``(rows, N, N)``.

    Args:
        strings: equal-length strings, one puzzle each.
        kind: ``"sudoku"`` (``.``/``0`` blank, digits) or ``"maze"`` (``# SGo``).
        what: name used in error messages (``"question"``, ``"answer"``).

    Returns:
        int8 digit grids (Sudoku) or uint8 token grids (Maze).

    Raises:
        PuzzleFormatError: a row has the wrong length or a character outside the alphabet,
            naming the row (0-based, as in the input list; CSV line = row + 2) and the cell
            (0-based offset in the string, plus 1-based grid row and column).
    """
    raw = _strings_to_bytes(strings, what)
    if raw.size == 0:
        return np.zeros((0, 0, 0), dtype=np.int8 if kind == "sudoku" else np.uint8)
    n = _side(raw.shape[1], f"{what} row 0")
    lut = _SUDOKU_LUT if kind == "sudoku" else _MAZE_LUT
    vals = lut[raw]
    bad = vals == 255
    if kind == "sudoku":
        bad |= vals > n
    if bad.any():
        r, c = map(int, np.argwhere(bad)[0])
        allowed = f"'.', '0' or a digit 1..{n}" if kind == "sudoku" else f"one of {MAZE_CHARSET!r}"
        raise PuzzleFormatError(
            f"{what} row {r}: character {chr(raw[r, c])!r} at cell {c} (grid row {c // n + 1}, column {c % n + 1}) "
            f"is not {allowed}"
        )
    return vals.reshape(-1, n, n).astype(np.int8 if kind == "sudoku" else np.uint8)


def grids_to_texts(grids: np.ndarray, kind: Kind, blank: str = ".") -> list[str]:
    """Encode grids ``(rows, N, N)`` as row-major strings (the inverse of :func:`texts_to_grids`)."""
    grids = np.asarray(grids)
    flat = grids.reshape(grids.shape[0], -1)
    if kind == "sudoku":
        if flat.size and (flat.min() < 0 or flat.max() > 9):
            raise PuzzleFormatError("sudoku grids must hold digits 0..9 to be written as text")
        chars = (flat.astype(np.uint8) + ord("0")).astype(np.uint8)
        chars[flat == 0] = ord(blank)
    else:
        if flat.size and (flat.min() < 1 or flat.max() > len(MAZE_CHARSET)):
            raise PuzzleFormatError(f"maze grids must hold tokens 1..{len(MAZE_CHARSET)} to be written as text")
        chars = _MAZE_CHARS[flat]
    width = flat.shape[1]
    blob = np.ascontiguousarray(chars).tobytes().decode("ascii")
    return [blob[i * width : (i + 1) * width] for i in range(flat.shape[0])]


def grids_to_tokens(grids: np.ndarray, kind: Kind) -> np.ndarray:
    """Grids ``(rows, N, N)`` → HRM/TRM token rows ``(rows, N*N)`` uint8 (Sudoku: digit + 1)."""
    grids = np.asarray(grids)
    flat = grids.reshape(grids.shape[0], -1)
    return (flat.astype(np.uint8) + 1) if kind == "sudoku" else flat.astype(np.uint8)


def tokens_to_grids(tokens: np.ndarray, kind: Kind) -> np.ndarray:
    """HRM/TRM token rows ``(rows, N*N)`` → grids ``(rows, N, N)`` (inverse of :func:`grids_to_tokens`)."""
    tokens = np.asarray(tokens)
    n = _side(tokens.shape[-1], "token row")
    if kind == "sudoku":
        if tokens.size and tokens.min() < 1:
            r = int(np.argwhere(tokens < 1)[0][0])
            raise PuzzleFormatError(f"sudoku token row {r} contains the pad token 0")
        return (tokens.astype(np.int16) - 1).astype(np.int8).reshape(-1, n, n)
    return tokens.astype(np.uint8).reshape(-1, n, n)


def infer_kind(text: str) -> Kind:
    """Guess whether a puzzle string is a Sudoku or a maze from its alphabet."""
    if set(text) <= set(".0123456789"):
        return "sudoku"
    if set(text) <= set(MAZE_CHARSET):
        return "maze"
    raise PuzzleFormatError(f"cannot tell the puzzle kind of {text[:40]!r}...: not digits/'.', not {MAZE_CHARSET!r}")


# --------------------------------------------------------------------------------------------
# Hugging Face CSV
# --------------------------------------------------------------------------------------------
@dataclass
class PuzzleTable:
    """Puzzles read from (or to be written to) a Hugging Face CSV.

    Attributes:
        kind: ``"sudoku"`` or ``"maze"``.
        questions: ``(rows, N, N)`` grids of the puzzles.
        answers: ``(rows, N, N)`` grids of the solutions / labelled mazes.
        ratings: ``(rows,)`` int32, the CSV's ``rating`` column (Sudoku: guesses to first
            solution; Maze: cells on the shortest path including S and G).
        sources: ``(rows,)`` object array of the ``source`` column.
    """

    kind: Kind
    questions: np.ndarray
    answers: np.ndarray
    ratings: np.ndarray
    sources: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))

    def __post_init__(self) -> None:
        rows = len(self.questions)
        if len(self.sources) == 0 and rows:
            self.sources = np.full(rows, "attractor-suite", dtype=object)
        for name in ("answers", "ratings", "sources"):
            if len(getattr(self, name)) != rows:
                raise DatasetError(f"{name} has {len(getattr(self, name))} rows but questions has {rows}")

    def __len__(self) -> int:
        return len(self.questions)

    def subset(self, index: np.ndarray) -> PuzzleTable:
        """Rows selected by an index array, in that order."""
        return PuzzleTable(
            self.kind, self.questions[index], self.answers[index], self.ratings[index], self.sources[index]
        )


def read_csv(path: str | os.PathLike, kind: Kind | None = None, limit: int | None = None) -> PuzzleTable:
    """Read a Hugging Face puzzle CSV (``source,question,answer,rating``).

    Args:
        path: the CSV file.
        kind: ``"sudoku"`` or ``"maze"``; inferred from the first question when omitted.
        limit: read only the first ``limit`` rows.

    Raises:
        DatasetError: missing file, missing columns, empty file.
        PuzzleFormatError: a question/answer with a bad length or character (row named).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"CSV file not found: {path}")
    try:
        # keep_default_na=False: a maze row of spaces must stay a string, never become NaN.
        df = pd.read_csv(path, dtype=str, keep_default_na=False, nrows=limit)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: not a readable CSV ({e})") from None
    missing = [c for c in CSV_COLUMNS if c not in df.columns]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {missing}; expected header {','.join(CSV_COLUMNS)}")
    if len(df) == 0:
        raise DatasetError(f"{path}: no rows")
    kind = kind or infer_kind(df["question"].iloc[0])
    try:
        questions = texts_to_grids(df["question"].to_numpy(), kind, "question")
        answers = texts_to_grids(df["answer"].to_numpy(), kind, "answer")
    except PuzzleFormatError as e:
        raise PuzzleFormatError(f"{path}: {e}") from None
    if questions.shape != answers.shape:
        raise DatasetError(f"{path}: questions are {questions.shape[1:]} grids but answers are {answers.shape[1:]}")
    ratings = pd.to_numeric(df["rating"], errors="coerce")
    if ratings.isna().any():
        row = int(np.flatnonzero(ratings.isna().to_numpy())[0])
        raise DatasetError(f"{path}: row {row} has a non-integer rating {df['rating'].iloc[row]!r}")
    return PuzzleTable(
        kind, questions, answers, ratings.to_numpy().astype(np.int32), df["source"].to_numpy(dtype=object)
    )


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a hidden sibling and a rename: never a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_csv(path: str | os.PathLike, table: PuzzleTable) -> None:
    """Write a :class:`PuzzleTable` as a Hugging Face CSV, atomically (temp file, then rename)."""
    path = Path(path)
    df = pd.DataFrame(
        {
            "source": table.sources,
            "question": grids_to_texts(table.questions, table.kind),
            "answer": grids_to_texts(table.answers, table.kind),
            "rating": table.ratings.astype(np.int64),
        }
    )
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        df.to_csv(tmp, index=False, lineterminator="\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# HRM / TRM dataset folders
# --------------------------------------------------------------------------------------------
@dataclass
class Split:
    """One split (``train`` or ``test``) of an HRM/TRM dataset folder.

    Examples are rows of ``inputs``/``labels``; a *puzzle* is a range of examples
    (``puzzle_indices[p]:puzzle_indices[p+1]``) sharing ``puzzle_identifiers[p]``; a *group* is
    a range of puzzles (``group_indices[g]:group_indices[g+1]``): one original puzzle and its
    augmented copies.

    Attributes:
        inputs: ``(examples, seq_len)`` uint8 tokens.
        labels: ``(examples, seq_len)`` uint8 tokens.
        puzzle_identifiers: ``(puzzles,)`` int32.
        puzzle_indices: ``(puzzles + 1,)`` int32, starts at 0, ends at ``examples``.
        group_indices: ``(groups + 1,)`` int32, starts at 0, ends at ``puzzles``.
        metadata: the ``dataset.json`` fields.
    """

    inputs: np.ndarray
    labels: np.ndarray
    puzzle_identifiers: np.ndarray
    puzzle_indices: np.ndarray
    group_indices: np.ndarray
    metadata: dict

    @property
    def num_groups(self) -> int:
        """Number of groups (original puzzles)."""
        return len(self.group_indices) - 1

    def validate(self, where: str = "split") -> None:
        """Check that the arrays and metadata are consistent; raise :class:`DatasetError` if not."""
        m = self.metadata
        e, seq = self.inputs.shape if self.inputs.ndim == 2 else (None, None)
        if e is None:
            raise DatasetError(f"{where}: inputs must be 2-D (examples, seq_len), got shape {self.inputs.shape}")
        if self.labels.shape != self.inputs.shape:
            raise DatasetError(f"{where}: labels shape {self.labels.shape} != inputs shape {self.inputs.shape}")
        if seq != m["seq_len"]:
            raise DatasetError(
                f"{where}: inputs have {seq} tokens per row but dataset.json says seq_len={m['seq_len']}"
            )
        for name in ("inputs", "labels"):
            arr = getattr(self, name)
            if arr.size and int(arr.max()) >= m["vocab_size"]:
                raise DatasetError(f"{where}: {name} hold token {int(arr.max())} >= vocab_size {m['vocab_size']}")
        pi, gi = self.puzzle_indices, self.group_indices
        if len(pi) < 1 or pi[0] != 0 or pi[-1] != e or np.any(np.diff(pi) <= 0):
            raise DatasetError(f"{where}: puzzle_indices must increase from 0 to {e} examples")
        if len(self.puzzle_identifiers) != len(pi) - 1:
            raise DatasetError(f"{where}: {len(self.puzzle_identifiers)} puzzle_identifiers for {len(pi) - 1} puzzles")
        if len(gi) < 1 or gi[0] != 0 or gi[-1] != len(pi) - 1 or np.any(np.diff(gi) <= 0):
            raise DatasetError(f"{where}: group_indices must increase from 0 to {len(pi) - 1} puzzles")
        if m["total_groups"] != len(gi) - 1:
            raise DatasetError(f"{where}: dataset.json total_groups={m['total_groups']} but there are {len(gi) - 1}")


def split_metadata(
    seq_len: int, vocab_size: int, total_groups: int, total_puzzles: int, mean_puzzle_examples: float = 1.0
) -> dict:
    """Build the ``dataset.json`` dict with the HRM/TRM conventions (pad 0, ignore label 0, one identifier)."""
    return {
        "pad_id": 0,
        "ignore_label_id": 0,
        "blank_identifier_id": 0,
        "vocab_size": int(vocab_size),
        "seq_len": int(seq_len),
        "num_puzzle_identifiers": 1,
        "total_groups": int(total_groups),
        "mean_puzzle_examples": float(mean_puzzle_examples),
        "total_puzzles": int(total_puzzles),
        "sets": ["all"],
    }


def make_split(inputs: np.ndarray, labels: np.ndarray, group_sizes: np.ndarray, vocab_size: int) -> Split:
    """Assemble a :class:`Split` where every example is its own puzzle and groups have the given sizes.

    This is the layout of the reference Sudoku and Maze builders: one example per puzzle,
    puzzle identifier 0, and one group per original puzzle holding it and its augmentations.
    """
    group_sizes = np.asarray(group_sizes, dtype=np.int64)
    e = len(inputs)
    if int(group_sizes.sum()) != e:
        raise DatasetError(f"group sizes add up to {int(group_sizes.sum())} but there are {e} examples")
    return Split(
        inputs=np.ascontiguousarray(inputs, dtype=np.uint8),
        labels=np.ascontiguousarray(labels, dtype=np.uint8),
        puzzle_identifiers=np.zeros(e, dtype=np.int32),
        puzzle_indices=np.arange(e + 1, dtype=np.int32),
        group_indices=np.concatenate([[0], np.cumsum(group_sizes)]).astype(np.int32),
        metadata=split_metadata(inputs.shape[1], vocab_size, len(group_sizes), e),
    )


def write_split(root: str | os.PathLike, name: str, split: Split) -> None:
    """Write ``split`` as ``root/name/`` in the HRM/TRM layout (plus ``root/identifiers.json``).

    The caller is responsible for atomicity of the whole folder (see ``puzzles.build``, which
    writes into a temporary folder and renames it into place).
    """
    split.validate(f"{root}/{name}")
    out = Path(root) / name
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "dataset.json", "w") as f:
        json.dump(split.metadata, f)
    for k in SPLIT_FIELDS:
        np.save(out / f"all__{k}.npy", getattr(split, k))
    with open(Path(root) / "identifiers.json", "w") as f:
        json.dump(["<blank>"], f)


def read_split(root: str | os.PathLike, name: str = "train", mmap: bool = True) -> Split:
    """Read ``root/name/`` written by this project or by the HRM/TRM builders.

    Args:
        root: dataset folder (holding ``train/`` and ``test/``), or the split folder itself.
        name: ``"train"`` or ``"test"``.
        mmap: memory-map the large ``inputs``/``labels`` arrays instead of reading them.

    Raises:
        DatasetError: a missing file, unknown metadata, or inconsistent arrays, naming the file.
    """
    root = Path(root)
    folder = root / name if (root / name).is_dir() else root
    meta_path = folder / "dataset.json"
    if not meta_path.is_file():
        raise DatasetError(f"no dataset.json in {folder} (expected an HRM/TRM dataset folder with {name}/)")
    try:
        metadata = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{meta_path}: invalid JSON ({e})") from None
    required = [k for k in METADATA_FIELDS if k not in ("total_puzzles",)]
    missing = [k for k in required if k not in metadata]
    if missing:
        raise DatasetError(f"{meta_path}: missing field(s) {missing}")
    if "all" not in metadata["sets"]:
        raise DatasetError(f"{meta_path}: sets={metadata['sets']}; only the 'all' set is supported")
    arrays = {}
    for k in SPLIT_FIELDS:
        p = folder / f"all__{k}.npy"
        if not p.is_file():
            raise DatasetError(f"missing array file {p}")
        try:
            arrays[k] = np.load(p, mmap_mode="r" if mmap and k in ("inputs", "labels") else None, allow_pickle=False)
        except ValueError as e:
            raise DatasetError(f"{p}: not a numpy array file ({e})") from None
    metadata.setdefault("total_puzzles", len(arrays["puzzle_indices"]) - 1)
    split = Split(metadata=metadata, **arrays)
    split.validate(str(folder))
    return split


def kind_of_split(metadata: dict) -> Kind:
    """Tell the puzzle kind of a split from its ``dataset.json`` (vocabulary 6 means maze)."""
    n = math.isqrt(metadata["seq_len"])
    # Sudoku first: an N×N Sudoku has vocabulary N + 2 (pad, blank, N digits); only a 4×4 Sudoku
    # shares the maze's vocabulary of 6, and a 4×4 maze is no benchmark.
    if metadata["vocab_size"] == n + 2 and n * n == metadata["seq_len"]:
        return "sudoku"
    if metadata["vocab_size"] == len(MAZE_CHARSET) + 1:
        return "maze"
    raise DatasetError(
        f"cannot tell the puzzle kind of a split with vocab_size={metadata['vocab_size']} seq_len={metadata['seq_len']}"
    )


def sudoku_box_of(root: str | os.PathLike, side: int) -> tuple[int, int]:
    """Box shape of a Sudoku dataset folder: from ``build.json`` when this project wrote it, else the standard one."""
    info = Path(root) / "build.json"
    if info.is_file():
        box = json.loads(info.read_text()).get("box")
        if box:
            return int(box[0]), int(box[1])
    standard = {4: (2, 2), 6: (2, 3), 9: (3, 3)}
    if side not in standard:
        raise DatasetError(f"cannot tell the box shape of a {side}×{side} sudoku in {root} without build.json")
    return standard[side]
