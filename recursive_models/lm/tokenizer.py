"""LM tokenizer: a local byte-level BPE (Hugging Face ``tokenizers``) and the encoding the shards are written with.

Part of the LM data pipeline (`recursive_models.lm.data` is the public facade and describes the tokenizer)::

    from recursive_models.lm.tokenizer import encode_documents, train_tokenizer
    tok = train_tokenizer(texts, vocab_size=4096)        # <|endoftext|> = id 0; decode(encode(t)) == t
    ids = encode_documents(tok, ["To be, or not to be"])  # exactly tok.encode(text).ids per text, batched

The tokenizer of a prepared folder is loaded with `recursive_models.lm.shards.load_tokenizer` (it checks the
folder's ``meta.json``). ``tokenizers`` is imported only when a tokenizer is trained or needed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence

from recursive_models.lm.sources import LMDataError

EOT = "<|endoftext|>"


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


# ------------------------------------------------------------------------- feeding the BPE trainer


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
