"""LM token shards: the prepared folder's on-disk format, how it is written, checked, read and summarised.

Part of the LM data pipeline (`recursive_models.lm.data` is the public facade; ``prepare_corpus`` there drives
the writers below and its docstring shows the cache layout). A prepared folder holds ``tokenizer.json``,
``{train,validation}.bin`` (flat token ids), ``{train,validation}_docs.npy`` (document offsets) and ``meta.json``,
written last, so its presence marks a complete folder::

    from recursive_models.lm.shards import load_tokenizer, read_meta, summarize
    meta = read_meta(folder)            # checked against FORMAT_VERSION
    tok = load_tokenizer(folder)        # checked against the sha256 in meta.json
    print(summarize(folder))            # works / documents / characters / tokens per split

Needs numpy and tqdm; ``tokenizers`` only when a tokenizer is loaded; no torch.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from recursive_models.lm.sources import Corpus, LMDataError, _sha256_file
from recursive_models.lm.tokenizer import EOT, _require_tokenizers, encode_documents

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SPLITS = ("train", "validation")


# ------------------------------------------------------------------------------------------- writing


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


def _replace_dir(tmp: Path, folder: Path) -> None:
    """Move the finished ``tmp`` into place; an older ``folder`` is moved aside first, then deleted."""
    if folder.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
        os.replace(folder, old / folder.name)
        shutil.rmtree(old, ignore_errors=True)
    os.replace(tmp, folder)


# ------------------------------------------------------------------------------------------- reading


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
