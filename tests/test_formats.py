"""Tests of puzzles.formats: CSV and HRM/TRM folder round trips, token conventions, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import pattern_solution
from hypothesis import given, settings
from hypothesis import strategies as st

from puzzles.errors import DatasetError, PuzzleFormatError
from puzzles.formats import (
    MAZE_CHARSET,
    PuzzleTable,
    grids_to_texts,
    grids_to_tokens,
    kind_of_split,
    make_split,
    read_csv,
    read_split,
    texts_to_grids,
    tokens_to_grids,
    write_csv,
    write_split,
)


def _sudoku_table(rows: int = 5, box=(3, 3), seed: int = 0) -> PuzzleTable:
    rng = np.random.default_rng(seed)
    sol = np.stack([pattern_solution(box)] * rows)
    q = np.where(rng.random(sol.shape) < 0.5, 0, sol).astype(np.int8)
    return PuzzleTable("sudoku", q, sol, np.arange(rows, dtype=np.int32))


@given(st.lists(st.text(alphabet=".123456789", min_size=81, max_size=81), min_size=1, max_size=5))
def test_sudoku_text_roundtrip(texts):
    grids = texts_to_grids(texts, "sudoku")
    assert grids.shape == (len(texts), 9, 9)
    assert grids_to_texts(grids, "sudoku") == texts


@given(st.lists(st.text(alphabet=MAZE_CHARSET, min_size=36, max_size=36), min_size=1, max_size=5))
def test_maze_text_roundtrip(texts):
    grids = texts_to_grids(texts, "maze")
    assert grids.min() >= 1 and grids.max() <= 5
    assert grids_to_texts(grids, "maze") == texts
    assert (tokens_to_grids(grids_to_tokens(grids, "maze"), "maze") == grids).all()


def test_zero_is_a_blank_and_tokens_follow_hrm():
    g = texts_to_grids(["0" * 80 + "9"], "sudoku")
    assert g[0, 8, 8] == 9 and g.sum() == 9
    tokens = grids_to_tokens(g, "sudoku")
    assert tokens[0, 0] == 1 and tokens[0, 80] == 10  # blank 1, digit d -> d + 1


@settings(max_examples=50)
@given(st.text(min_size=81, max_size=81).filter(lambda s: not set(s) <= set(".0123456789")))
def test_bad_sudoku_characters_raise_format_error(text):
    with pytest.raises(PuzzleFormatError):
        texts_to_grids([text], "sudoku")


def test_errors_name_row_and_cell():
    with pytest.raises(PuzzleFormatError, match=r"row 1: character 'x' at cell 3"):
        texts_to_grids(["." * 81, "...x" + "." * 77], "sudoku")
    with pytest.raises(PuzzleFormatError, match="row 1 has 80 characters"):
        texts_to_grids(["." * 81, "." * 80], "sudoku")
    with pytest.raises(PuzzleFormatError, match="not a square"):
        texts_to_grids(["." * 80], "sudoku")
    with pytest.raises(PuzzleFormatError, match=r"digit 1\.\.4"):
        texts_to_grids(["5" + "." * 15], "sudoku")


def test_csv_roundtrip(tmp_path):
    table = _sudoku_table()
    write_csv(tmp_path / "t.csv", table)
    assert (tmp_path / "t.csv").read_text().splitlines()[0] == "source,question,answer,rating"
    back = read_csv(tmp_path / "t.csv")
    assert back.kind == "sudoku"
    assert (back.questions == table.questions).all() and (back.answers == table.answers).all()
    assert (back.ratings == table.ratings).all()
    assert not list(tmp_path.glob(".*tmp*")), "atomic write left a temporary file"


def test_csv_errors(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        read_csv(tmp_path / "missing.csv")
    (tmp_path / "cols.csv").write_text("question,answer\n" + "." * 81 + "," + "1" * 81 + "\n")
    with pytest.raises(DatasetError, match=r"missing column\(s\) \['source', 'rating'\]"):
        read_csv(tmp_path / "cols.csv")
    (tmp_path / "rating.csv").write_text("source,question,answer,rating\nx," + "." * 81 + "," + "1" * 81 + ",hard\n")
    with pytest.raises(DatasetError, match="non-integer rating"):
        read_csv(tmp_path / "rating.csv")


def test_split_roundtrip_and_metadata(tmp_path):
    table = _sudoku_table(rows=4)
    split = make_split(
        grids_to_tokens(table.questions, "sudoku"), grids_to_tokens(table.answers, "sudoku"), [1] * 4, 11
    )
    write_split(tmp_path, "train", split)
    meta = json.loads((tmp_path / "train" / "dataset.json").read_text())
    assert meta == {
        "pad_id": 0, "ignore_label_id": 0, "blank_identifier_id": 0, "vocab_size": 11, "seq_len": 81,
        "num_puzzle_identifiers": 1, "total_groups": 4, "mean_puzzle_examples": 1.0, "total_puzzles": 4,
        "sets": ["all"],
    }  # fmt: skip
    assert json.loads((tmp_path / "identifiers.json").read_text()) == ["<blank>"]
    back = read_split(tmp_path, "train")
    assert kind_of_split(back.metadata) == "sudoku"
    assert (np.asarray(back.inputs) == split.inputs).all()
    for k in ("puzzle_indices", "group_indices", "puzzle_identifiers"):
        assert back.__dict__[k].dtype == np.int32


def test_split_errors(tmp_path):
    with pytest.raises(DatasetError, match=r"no dataset\.json"):
        read_split(tmp_path, "train")
    table = _sudoku_table(rows=3)
    split = make_split(
        grids_to_tokens(table.questions, "sudoku"), grids_to_tokens(table.answers, "sudoku"), [1] * 3, 11
    )
    write_split(tmp_path, "train", split)
    (tmp_path / "train" / "all__labels.npy").unlink()
    with pytest.raises(DatasetError, match="missing array file"):
        read_split(tmp_path, "train")
    np.save(tmp_path / "train" / "all__labels.npy", split.labels[:2])
    with pytest.raises(DatasetError, match="labels shape"):
        read_split(tmp_path, "train")
    with pytest.raises(DatasetError, match="group sizes add up"):
        make_split(split.inputs, split.labels, [2, 2], 11)


def test_real_sudoku_sample_matches_tokens(shared_data):
    d = shared_data / "sudoku_extreme_sample"
    table = read_csv(d / "sudoku-extreme_train_random1k_reconstructed.csv")
    inputs = np.load(d / "sudoku-extreme_train_random1k_all__inputs.npy")
    labels = np.load(d / "sudoku-extreme_train_random1k_all__labels.npy")
    assert (grids_to_tokens(table.questions, "sudoku") == inputs).all()
    assert (grids_to_tokens(table.answers, "sudoku") == labels).all()
    assert inputs.dtype == grids_to_tokens(table.questions, "sudoku").dtype == np.uint8


def test_real_maze_split_matches_tokens(shared_data):
    d = shared_data / "maze"
    table = read_csv(d / "maze-30x30-hard-1k_train_reconstructed.csv")
    assert table.kind == "maze" and table.questions.shape == (1000, 30, 30)
    assert (grids_to_tokens(table.questions, "maze") == np.load(d / "maze-30x30-hard-1k_train_all__inputs.npy")).all()
    assert (grids_to_tokens(table.answers, "maze") == np.load(d / "maze-30x30-hard-1k_train_all__labels.npy")).all()
    # The rating column counts the path cells including S and G.
    assert (table.ratings == (table.answers >= 3).sum(axis=(1, 2))).all()
