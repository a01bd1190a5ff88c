r"""Build a benchmark dataset folder (HRM/TRM layout) from the local generator or from a real CSV.

Run::

    python -m puzzles.build sudoku-extreme --out data/sudoku-extreme-1k-aug-1000 \\
        --train 1000 --test 1000 --aug 1000 --seed 0
    python -m puzzles.build maze-hard --out data/maze-hard-1k --train 1000 --test 1000 --aug 7
    python -m puzzles.build sudoku-extreme --out data/sx --from-csv train.csv --test-csv test.csv \\
        --train 1000 --aug 1000          # from the real Hugging Face CSVs, when you have them

Output (``--out DIR``)::

    DIR/train/{dataset.json, all__inputs.npy, all__labels.npy, all__puzzle_identifiers.npy,
               all__puzzle_indices.npy, all__group_indices.npy}   # augmented copies grouped
    DIR/test/...                                                  # never augmented
    DIR/identifiers.json                                          # as the reference builders
    DIR/train.csv, DIR/test.csv       # the original puzzles, Hugging Face CSV format
    DIR/build.json                    # spec, arguments and statistics (provenance)

The same arguments and seed give byte-identical files, whatever ``--workers`` is. The folder is
written under a temporary name and renamed into place, so an interrupted build leaves no
half-written dataset; an existing folder is replaced only with ``--force``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from puzzles.datasets import DATASETS, DatasetSpec, get_dataset
from puzzles.errors import PuzzleError
from puzzles.formats import PuzzleTable, grids_to_tokens, make_split, read_csv, write_csv, write_split

log = logging.getLogger(__name__)

BUILD_FORMAT_VERSION = 1


def _dedupe_against(table: PuzzleTable, seen: set[bytes]) -> np.ndarray:
    """Indices of rows whose question is not in ``seen`` (and not repeated); updates ``seen``."""
    keep = []
    for i, q in enumerate(table.questions):
        key = q.tobytes()
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def generate_splits(
    spec: DatasetSpec, n_train: int, n_test: int, seed: int, workers: int | None, progress: bool
) -> tuple[PuzzleTable, PuzzleTable]:
    """Generate disjoint train and test tables with the local generator.

    The test set is drawn from its own seed stream, so it does not change when ``--train``
    changes; train puzzles that happen to equal a test puzzle (or each other) are replaced by
    fresh draws from further seed streams.
    """
    seen: set[bytes] = set()
    tables = {}
    for name, n, stream in (("test", n_test, 1), ("train", n_train, 0)):
        parts, have, attempt = [], 0, 0
        while have < n:
            sub_seed = int(np.random.SeedSequence([seed, stream, attempt]).generate_state(1)[0])
            # One bar per split: the few redraws that replace duplicates are quick and get none.
            table = spec.generate(n - have, seed=sub_seed, workers=workers, progress=progress and attempt == 0)
            keep = _dedupe_against(table, seen)
            parts.append(table.subset(keep))
            have += len(keep)
            attempt += 1
            if attempt > 50:
                raise PuzzleError(f"{spec.name}: could not draw {n} distinct {name} puzzles (the family is too small)")
        tables[name] = PuzzleTable(
            spec.kind,
            np.concatenate([p.questions for p in parts]),
            np.concatenate([p.answers for p in parts]),
            np.concatenate([p.ratings for p in parts]),
            np.concatenate([p.sources for p in parts]),
        )
    return tables["train"], tables["test"]


def csv_splits(
    spec: DatasetSpec,
    train_csv: Path,
    test_csv: Path | None,
    n_train: int | None,
    n_test: int | None,
    seed: int,
    min_rating: int | None,
) -> tuple[PuzzleTable, PuzzleTable]:
    """Read train/test tables from real CSVs, subsampled with ``seed`` and checked row by row.

    Without ``test_csv`` the test rows are drawn from ``train_csv`` disjointly from the train rows.
    """
    rng = np.random.default_rng(seed)
    full = read_csv(train_csv, kind=spec.kind)
    full_rows = np.arange(len(full))  # each kept row's data-row number in the file
    if min_rating is not None:
        full_rows = np.flatnonzero(full.ratings >= min_rating)
        full = full.subset(full_rows)
    order = rng.permutation(len(full))
    if test_csv is None:
        n_test = n_test if n_test is not None else min(len(full) // 10, 1000)
        if n_test >= len(full):
            raise PuzzleError(f"{train_csv}: {len(full)} rows cannot give {n_test} test rows and any train rows")
        test_rows, order = order[:n_test], order[n_test:]
        test_source, test_ids = full, full_rows[test_rows]
    else:
        test_full = read_csv(test_csv, kind=spec.kind)
        test_rows = np.arange(len(test_full))
        if n_test is not None and n_test < len(test_full):
            test_rows = np.sort(rng.choice(len(test_full), n_test, replace=False))
        test_source, test_ids = test_full, test_rows
    if n_train is not None:
        if n_train > len(order):
            raise PuzzleError(f"{train_csv}: asked for {n_train} train rows but only {len(order)} are available")
        order = order[:n_train]
    # Only the selected rows are checked (the full Sudoku-Extreme train CSV has 3.8M rows); errors
    # name the row in the file (0-based data row; the CSV line is row + 2).
    train, test = full.subset(order), test_source.subset(test_rows)
    spec.check_table(train, str(train_csv), row_ids=full_rows[order])
    spec.check_table(test, str(test_csv or train_csv), row_ids=test_ids)
    return train, test


def augmented_split(spec: DatasetSpec, table: PuzzleTable, aug: int, seed: int, progress: bool):
    """Tokenise a table into an HRM/TRM split, each puzzle followed by ``aug`` augmented copies."""
    n = len(table)
    groups = 1 + aug
    inputs = np.empty((n * groups, spec.seq_len), dtype=np.uint8)
    labels = np.empty_like(inputs)
    for i in tqdm(range(n), desc=f"augment x{aug}", disable=not progress or aug == 0, unit="puzzle"):
        # One generator per puzzle: the copies of puzzle i do not depend on how many came before.
        rng = np.random.default_rng(np.random.SeedSequence([seed, 2, i]))
        q_all, a_all = table.questions[i][None], table.answers[i][None]
        if aug:
            qs, ans = spec.augment(table.questions[i], table.answers[i], rng, aug)
            q_all, a_all = np.concatenate([q_all, qs]), np.concatenate([a_all, ans])
        inputs[i * groups : (i + 1) * groups] = grids_to_tokens(q_all, spec.kind)
        labels[i * groups : (i + 1) * groups] = grids_to_tokens(a_all, spec.kind)
    return make_split(inputs, labels, np.full(n, groups), spec.vocab_size)


def _stats(table: PuzzleTable) -> dict:
    r = table.ratings.astype(np.float64)
    return {
        "puzzles": len(table),
        "rating_mean": round(float(r.mean()), 4) if len(r) else None,
        "rating_median": float(np.median(r)) if len(r) else None,
        "rating_zero_fraction": round(float((r == 0).mean()), 4) if len(r) else None,
        "given_or_wall_fraction": round(float((table.questions != 0).mean()), 4)
        if table.kind == "sudoku"
        else round(float((table.questions == 1).mean()), 4),
    }


def build(
    name: str,
    out: str | os.PathLike,
    *,
    train: int | None = 1000,
    test: int | None = 1000,
    aug: int = 0,
    seed: int = 0,
    workers: int | None = None,
    force: bool = False,
    from_csv: str | os.PathLike | None = None,
    test_csv: str | os.PathLike | None = None,
    min_rating: int | None = None,
    progress: bool = True,
) -> dict:
    """Build dataset ``name`` into folder ``out``; returns the ``build.json`` summary.

    Raises:
        FileExistsError: ``out`` exists and ``force`` is False.
        PuzzleError: bad arguments or bad CSV rows (with the row named).
    """
    spec = get_dataset(name)
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} already exists; pass --force to replace it")
    if aug < 0 or (spec.max_aug is not None and aug > spec.max_aug):
        raise PuzzleError(
            f"--aug must be between 0 and {spec.max_aug if spec.max_aug is not None else 'any'} for {name}"
        )
    for flag, v in (("--train", train), ("--test", test)):
        if v is not None and v < 1:
            raise PuzzleError(f"{flag} must be at least 1, got {v}")
    if from_csv is None:
        if test_csv is not None or min_rating is not None:
            raise PuzzleError("--test-csv and --min-rating need --from-csv")
        train_t, test_t = generate_splits(spec, train or 1000, test or 1000, seed, workers, progress)
    else:
        train_t, test_t = csv_splits(
            spec, Path(from_csv), Path(test_csv) if test_csv else None, train, test, seed, min_rating
        )
    train_split = augmented_split(spec, train_t, aug, seed, progress)
    test_split = augmented_split(spec, test_t, 0, seed, progress)

    summary = {
        "format_version": BUILD_FORMAT_VERSION,
        "dataset": spec.name,
        "kind": spec.kind,
        "side": spec.side,
        "box": list(spec.box) if spec.box else None,
        "profile": spec.profile,
        "maze_preset": spec.maze_preset,
        "seed": seed,
        "aug": aug,
        "source": "generator" if from_csv is None else f"csv:{Path(from_csv).name}",
        "min_rating": min_rating,
        "train": {**_stats(train_t), "examples": len(train_split.inputs)},
        "test": {**_stats(test_t), "examples": len(test_split.inputs)},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        write_split(tmp, "train", train_split)
        write_split(tmp, "test", test_split)
        write_csv(tmp / "train.csv", train_t)
        write_csv(tmp / "test.csv", test_t)
        (tmp / "build.json").write_text(json.dumps(summary, indent=2) + "\n")
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m puzzles.build",
        description="Build a Sudoku/Maze dataset folder in the HRM/TRM format.",
        epilog="datasets: " + "; ".join(f"{k}: {v.description}" for k, v in DATASETS.items()),
    )
    parser.add_argument("dataset", choices=sorted(DATASETS), help="which benchmark to build")
    parser.add_argument("--out", required=True, help="output folder (must not exist unless --force)")
    parser.add_argument(
        "--train", type=int, default=None, help="train puzzles (default 1000; all CSV rows with --from-csv)"
    )
    parser.add_argument("--test", type=int, default=None, help="test puzzles (default 1000)")
    parser.add_argument("--aug", type=int, default=0, help="augmented copies per train puzzle (maze: at most 7)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="generator processes (default: all cores)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out folder")
    parser.add_argument("--from-csv", default=None, help="build from a real Hugging Face CSV instead of generating")
    parser.add_argument("--test-csv", default=None, help="test CSV to go with --from-csv")
    parser.add_argument("--min-rating", type=int, default=None, help="keep CSV rows with rating >= this")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    generated = args.from_csv is None
    try:
        summary = build(
            args.dataset,
            args.out,
            train=args.train if args.train is not None or not generated else 1000,
            test=args.test if args.test is not None or not generated else 1000,
            aug=args.aug,
            seed=args.seed,
            workers=args.workers,
            force=args.force,
            from_csv=args.from_csv,
            test_csv=args.test_csv,
            min_rating=args.min_rating,
            progress=not args.no_progress,
        )
    except (PuzzleError, FileExistsError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
