"""LM batches: random training windows and ordered evaluation windows over a prepared split, as torch tensors.

Part of the LM data pipeline (`recursive_models.lm.data` is the public facade and re-exports these names)::

    from recursive_models.lm.batches import TokenDataset
    train = TokenDataset(folder, "train")                       # tokens memory-mapped, nothing loaded
    x, y = train.get_batch(32, 256, generator=torch.Generator().manual_seed(0))   # (B, T); y = x shifted by one
    for x, y in TokenDataset(folder, "validation").iter_eval_batches(32, 256): ...  # y == IGNORE_INDEX: padding

The only module of the pipeline that needs torch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from recursive_models.lm.shards import read_meta
from recursive_models.lm.sources import LMDataError

IGNORE_INDEX = -100  # cross_entropy's default ignore_index: padding targets of the last eval window


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
