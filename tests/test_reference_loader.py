"""Folders written by ``puzzles.build`` load in the reference TRM ``PuzzleDataset`` unchanged.

Needs a local checkout of SamsungSAILMontreal/TinyRecursiveModels, named by the environment
variable ``TRM_REFERENCE`` (skipped otherwise)::

    TRM_REFERENCE=/path/to/TinyRecursiveModels python -m pytest tests/test_reference_loader.py

The reference code runs in a subprocess (its top-level ``models``/``dataset`` packages must not
mix with ours); ``argdantic``, which its module imports but the loader never uses, is stubbed
when it is not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from puzzles import build

REFERENCE = os.environ.get("TRM_REFERENCE")

pytestmark = pytest.mark.skipif(
    not REFERENCE or not (Path(REFERENCE) / "puzzle_dataset.py").is_file(),
    reason="set TRM_REFERENCE to a TinyRecursiveModels checkout to run",
)

CHECK = textwrap.dedent(
    """
    import sys, types
    sys.path.insert(0, sys.argv[1])
    try:
        import argdantic  # noqa: F401
    except ImportError:
        sys.modules["argdantic"] = types.SimpleNamespace(ArgParser=object)
    from puzzle_dataset import PuzzleDataset, PuzzleDatasetConfig
    path, groups, examples = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    for split, test_mode in (("train", False), ("test", True)):
        cfg = PuzzleDatasetConfig(seed=0, dataset_paths=[path], global_batch_size=8, test_set_mode=test_mode,
                                  epochs_per_iter=1, rank=0, num_replicas=1)
        ds = PuzzleDataset(cfg, split=split)
        seen = 0
        for _, batch, eff in ds:
            assert batch["inputs"].shape == (8, ds.metadata.seq_len)
            assert int(batch["inputs"].max()) < ds.metadata.vocab_size
            seen += eff
        if split == "train":
            assert ds.metadata.total_groups == groups and seen == groups // 8 * 8, (seen, groups)
        else:
            assert seen == examples, (seen, examples)
    print("ok")
    """
)


@pytest.mark.parametrize(("name", "aug"), [("sudoku6", 3), ("maze-small", 7)])
def test_reference_trm_loader_reads_our_folders(tmp_path, name, aug):
    out = tmp_path / name
    args = [name, "--out", str(out), "--train", "20", "--test", "10", "--aug", str(aug), "--no-progress"]
    assert build.main(args) == 0
    res = subprocess.run(
        [sys.executable, "-c", CHECK, REFERENCE, str(out), "20", "10"], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]
