"""Re-solve every puzzle of a dataset folder with the exact solvers and check its labels.

Run::

    python -m puzzles.verify data/sudoku6-1k            # both splits, prints a JSON report
    python -m puzzles.verify data/maze-hard-1k --split test

Sudoku: each input must have exactly one solution and it must equal the label; the report
also gives the rating (guesses to first solution) distribution. Maze: the label must be a valid
shortest path from S to G; the report counts how many labels also equal the breadth-first label
(neighbours expanded down, left, right, up), which holds for every original Maze-Hard puzzle
but not for dihedral copies, since the tie-break does not rotate with the maze. Works on
folders built here and on the reference HRM/TRM folders. Exits with status 1 if any example
fails, 2 on unreadable input.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

from puzzles.errors import PuzzleError
from puzzles.formats import kind_of_split, read_split, sudoku_box_of, tokens_to_grids


def verify_split(root, split: str = "train", limit: int | None = None, chunk: int = 4096) -> dict:
    """Check one split; returns counts of examples, failures and rating statistics."""
    data = read_split(root, split)
    kind = kind_of_split(data.metadata)
    n_total = len(data.inputs) if limit is None else min(limit, len(data.inputs))
    side = math.isqrt(data.metadata["seq_len"])
    failures: list[int] = []
    ratings = []
    bfs_matches = 0
    start = time.perf_counter()
    for s in range(0, n_total, chunk):
        e = min(s + chunk, n_total)
        inputs = tokens_to_grids(np.asarray(data.inputs[s:e]), kind)
        labels = tokens_to_grids(np.asarray(data.labels[s:e]), kind)
        if kind == "sudoku":
            from puzzles.sudoku_solver import solve_batch

            box = sudoku_box_of(root, side)
            solutions, counts, _ = solve_batch(inputs, limit=2, box=box)
            ok = (counts == 1) & (solutions == labels).all(axis=(1, 2))
            ratings.append(solve_batch(inputs, limit=1, box=box)[2])  # guesses to the first solution
        else:
            from puzzles.maze import check_predictions

            matches, valid = check_predictions(inputs, labels)
            # A dihedral copy keeps a shortest path but is not the BFS label of the transformed
            # maze (the down/left/right/up tie-break does not rotate), so validity is required
            # and agreement with the BFS label is only reported.
            ok = valid
            bfs_matches += int(matches.sum())
            ratings.append((labels >= 3).sum(axis=(1, 2)))  # S, G and path cells
        failures.extend((s + np.flatnonzero(~ok)).tolist())
    elapsed = time.perf_counter() - start
    r = np.concatenate(ratings) if ratings else np.zeros(0)
    return {
        "split": split,
        "kind": kind,
        "examples": n_total,
        "failed": len(failures),
        "first_failures": failures[:10],
        "rating" if kind == "sudoku" else "path_cells": {
            "mean": round(float(r.mean()), 3) if r.size else None,
            "median": float(np.median(r)) if r.size else None,
            "min": int(r.min()) if r.size else None,
            "max": int(r.max()) if r.size else None,
        },
        **({"bfs_label_matches": bfs_matches} if kind == "maze" else {}),
        "seconds": round(elapsed, 3),
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m puzzles.verify", description=__doc__.splitlines()[0])
    parser.add_argument("root", help="dataset folder with train/ and test/")
    parser.add_argument("--split", choices=["train", "test", "both"], default="both")
    parser.add_argument("--limit", type=int, default=None, help="check only the first N examples of each split")
    args = parser.parse_args(argv)
    splits = ["train", "test"] if args.split == "both" else [args.split]
    try:
        reports = [verify_split(args.root, s, args.limit) for s in splits]
    except PuzzleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        json.dumps({"root": str(args.root), "splits": reports, "ok": all(r["failed"] == 0 for r in reports)}, indent=2)
    )
    return 0 if all(r["failed"] == 0 for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
