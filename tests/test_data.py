"""Tests of puzzles.data: the PyTorch dataset/loader over dataset folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import pattern_solution

from puzzles import build
from puzzles.data import IGNORE_LABEL_ID, PuzzleDataset, make_dataloader
from puzzles.datasets import sudoku_solutions_valid
from puzzles.formats import PuzzleTable, write_csv


@pytest.fixture(scope="module")
def sudoku_folder(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    sol = np.stack([pattern_solution((2, 3))] * 24)
    q = np.where(rng.random(sol.shape) < 0.4, 0, sol).astype(np.int8)
    write_csv(tmp / "in.csv", PuzzleTable("sudoku", q, sol, np.zeros(24, np.int32)))
    out = tmp / "ds"
    assert build.main(["sudoku6", "--out", str(out), "--from-csv", str(tmp / "in.csv"), "--train", "16",
                       "--test", "8", "--aug", "3", "--no-progress"]) == 0  # fmt: skip
    return out


def _grids(t: torch.Tensor) -> np.ndarray:
    return (t.numpy() - 1).reshape(-1, 6, 6)


def test_lengths_and_item_format(sudoku_folder):
    train = PuzzleDataset(sudoku_folder, "train")
    assert len(train) == 16 and train.sample == "group" and train.kind == "sudoku" and train.box == (2, 3)
    assert len(PuzzleDataset(sudoku_folder, "train", sample="example")) == 64
    test = PuzzleDataset(sudoku_folder, "test")
    assert len(test) == 8 and test.sample == "example"
    item = train[0]
    assert item["inputs"].shape == (36,) and item["inputs"].dtype == torch.int64
    assert item["puzzle_identifiers"].shape == ()
    with pytest.raises(IndexError):
        train[16]


@pytest.mark.parametrize("augment", [False, True])
def test_items_are_valid_puzzles(sudoku_folder, augment):
    ds = PuzzleDataset(sudoku_folder, "train", augment=augment, seed=3)
    items = [ds[i] for i in range(len(ds))]
    inputs = np.stack([_grids(it["inputs"])[0] for it in items])
    labels = np.stack([_grids(it["labels"])[0] for it in items])
    assert sudoku_solutions_valid(inputs, labels, (2, 3)).all()
    assert (labels != IGNORE_LABEL_ID - 1).all()


def test_augmentation_and_epochs_change_items_deterministically(sudoku_folder):
    a = PuzzleDataset(sudoku_folder, "train", augment=True, seed=1)
    b = PuzzleDataset(sudoku_folder, "train", augment=True, seed=1)
    assert torch.equal(a[5]["inputs"], b[5]["inputs"])
    first = a[5]["inputs"].clone()
    a.set_epoch(1)
    assert not torch.equal(a[5]["inputs"], first)


def test_loader_is_independent_of_workers(sudoku_folder):
    def batches(workers):
        loader = make_dataloader(sudoku_folder, "train", batch_size=4, augment=True, seed=2, num_workers=workers)
        loader.dataset.set_epoch(3)
        return [b["inputs"] for b in loader]

    b0, b2 = batches(0), batches(2)
    assert len(b0) == 4 and all(torch.equal(x, y) for x, y in zip(b0, b2, strict=True))


def test_epoch_changes_order(sudoku_folder):
    loader = make_dataloader(sudoku_folder, "train", batch_size=16, seed=0)
    loader.dataset.set_epoch(0)
    e0 = next(iter(loader))["inputs"]
    loader.dataset.set_epoch(1)
    e1 = next(iter(loader))["inputs"]
    assert not torch.equal(e0, e1)


def test_test_loader_keeps_last_batch(sudoku_folder):
    loader = make_dataloader(sudoku_folder, "test", batch_size=3)
    assert [len(b["inputs"]) for b in loader] == [3, 3, 2]
