"""PyTorch datasets and data loaders over HRM/TRM dataset folders, with on-the-fly augmentation.

Run a quick look at a built dataset::

    python -m puzzles.data data/sudoku6-1k --split train --batch 4

Use in training code::

    from puzzles.data import make_dataloader
    loader = make_dataloader("data/sudoku6-1k", "train", batch_size=64, augment=True, seed=0)
    for epoch in range(epochs):
        loader.dataset.set_epoch(epoch)
        for batch in loader:
            batch["inputs"]   # (B, seq_len) int64 tokens
            batch["labels"]   # (B, seq_len) int64 tokens, IGNORE_LABEL_ID where not scored
            batch["puzzle_identifiers"]  # (B,) int64

Sampling follows TRM: in ``"group"`` mode (the default for ``train``) an epoch visits every
group (an original puzzle and its stored augmentations) once and picks one member at random;
in ``"example"`` mode (the default for ``test``) every stored example is visited once.

With ``augment=True`` each item also gets a fresh random validity-preserving transform
(Sudoku permutations/relabelling, maze dihedral). Randomness is a pure function of
``(seed, epoch, index)``, so batches are identical for any ``num_workers`` and across resumes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from puzzles.augment import augment_sudoku, dihedral
from puzzles.errors import PuzzleError
from puzzles.formats import Split, kind_of_split, read_split, sudoku_box_of, tokens_to_grids

IGNORE_LABEL_ID = -100  # cross_entropy's default ignore_index; HRM/TRM use the same value


class PuzzleDataset(Dataset):
    """Map-style dataset over one split of an HRM/TRM folder (inputs/labels are memory-mapped).

    Args:
        root: dataset folder holding ``train/`` and ``test/``.
        split: ``"train"`` or ``"test"``.
        sample: ``"group"`` (one random member per group per epoch) or ``"example"``
            (every example); default ``"group"`` for train, ``"example"`` otherwise.
        augment: apply a random validity-preserving transform to every item.
        seed: base seed of the sampling and augmentation randomness.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        sample: Literal["group", "example"] | None = None,
        augment: bool = False,
        seed: int = 0,
    ):
        self.root = Path(root)
        self.split_name = split
        self.data: Split = read_split(self.root, split, mmap=True)
        self.metadata = self.data.metadata
        self.kind = kind_of_split(self.metadata)
        self.side = math.isqrt(self.metadata["seq_len"])
        self.box = sudoku_box_of(self.root, self.side) if self.kind == "sudoku" else None
        self.sample = sample or ("group" if split == "train" else "example")
        if self.sample not in ("group", "example"):
            raise ValueError(f"sample must be 'group' or 'example', got {self.sample!r}")
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.ignore_label_id = self.metadata["ignore_label_id"]

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch; group members and augmentations are redrawn for each epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.data.num_groups if self.sample == "group" else len(self.data.inputs)

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, index]))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        rng = None
        if self.sample == "group":
            rng = self._rng(index)
            g0, g1 = self.data.group_indices[index], self.data.group_indices[index + 1]
            puzzle = int(rng.integers(g0, g1))
            e0, e1 = self.data.puzzle_indices[puzzle], self.data.puzzle_indices[puzzle + 1]
            example = int(rng.integers(e0, e1))
        else:
            example = index
            puzzle = int(np.searchsorted(self.data.puzzle_indices, example, side="right") - 1)
        inputs = np.asarray(self.data.inputs[example])
        labels = np.asarray(self.data.labels[example])
        if self.augment:
            inputs, labels = self._augment(inputs, labels, rng or self._rng(index))
        labels = labels.astype(np.int64)
        if self.ignore_label_id is not None:
            labels[labels == self.ignore_label_id] = IGNORE_LABEL_ID
        return {
            "inputs": torch.from_numpy(inputs.astype(np.int64)),
            "labels": torch.from_numpy(labels),
            "puzzle_identifiers": torch.tensor(int(self.data.puzzle_identifiers[puzzle]), dtype=torch.int64),
        }

    def _augment(self, inputs: np.ndarray, labels: np.ndarray, rng: np.random.Generator):
        n = self.side
        if self.kind == "sudoku":
            q, a = augment_sudoku(
                tokens_to_grids(inputs[None], "sudoku")[0], tokens_to_grids(labels[None], "sudoku")[0], rng, self.box
            )
            return (q.reshape(-1).astype(np.uint8) + 1), (a.reshape(-1).astype(np.uint8) + 1)
        k = int(rng.integers(8))
        return dihedral(inputs.reshape(n, n), k).reshape(-1), dihedral(labels.reshape(n, n), k).reshape(-1)


class EpochShuffleSampler(Sampler[int]):
    """Random order that is a pure function of ``(seed, dataset.epoch)``, so a resumed run replays it."""

    def __init__(self, dataset: PuzzleDataset, seed: int):
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self):
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.dataset.epoch, 7]))
        return iter(rng.permutation(len(self.dataset)).tolist())


def _seed_worker(worker_id: int) -> None:
    # Items draw their own randomness from (seed, epoch, index); this only pins any other
    # library randomness a user's transform might touch, per worker.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)  # noqa: NPY002 -- seeding the legacy global state is the point here


def make_dataloader(
    root: str | os.PathLike,
    split: str = "train",
    batch_size: int = 64,
    *,
    shuffle: bool | None = None,
    augment: bool = False,
    sample: Literal["group", "example"] | None = None,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """Build a :class:`~torch.utils.data.DataLoader` over a dataset folder.

    Shuffling (on by default for ``train``) is a pure function of ``seed`` and the dataset's
    epoch, so call ``loader.dataset.set_epoch(e)`` at the start of every epoch.
    The last incomplete batch is dropped for ``train`` and kept for ``test`` unless told.
    """
    ds = PuzzleDataset(root, split, sample=sample, augment=augment, seed=seed)
    shuffle = split == "train" if shuffle is None else shuffle
    drop_last = split == "train" if drop_last is None else drop_last
    return DataLoader(
        ds,
        batch_size=batch_size,
        sampler=EpochShuffleSampler(ds, seed) if shuffle else None,
        drop_last=drop_last,
        num_workers=num_workers,
        worker_init_fn=_seed_worker,
        pin_memory=pin_memory,
        persistent_workers=False,
    )


def main(argv: list[str] | None = None) -> int:
    """Print the metadata and the first batch of a dataset folder."""
    parser = argparse.ArgumentParser(prog="python -m puzzles.data", description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--split", default="train")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--augment", action="store_true")
    args = parser.parse_args(argv)
    try:
        loader = make_dataloader(args.root, args.split, args.batch, augment=args.augment, drop_last=False)
    except PuzzleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ds: PuzzleDataset = loader.dataset  # type: ignore[assignment]
    print(json.dumps({"kind": ds.kind, "items": len(ds), "sample": ds.sample, **ds.metadata}, indent=2))
    batch = next(iter(loader))
    for k, v in batch.items():
        print(k, tuple(v.shape), v.dtype)
    inp = tokens_to_grids(batch["inputs"][:1].numpy(), ds.kind)[0]
    lab = batch["labels"][:1].numpy()
    lab = tokens_to_grids(np.where(lab == IGNORE_LABEL_ID, ds.metadata["pad_id"], lab), ds.kind)[0]
    if ds.kind == "sudoku":
        from puzzles.sudoku import pretty_sudoku

        print(f"first example:\n{pretty_sudoku(inp, ds.box)}\nits label:\n{pretty_sudoku(lab, ds.box)}")
    else:
        from puzzles.maze import pretty_maze

        print(f"first example:\n{pretty_maze(inp)}\nits label:\n{pretty_maze(lab)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
