"""Multi-process training through the shared recipe: ``torchrun`` with gloo on CPU, 2 ranks against 1.

Both trainers read ``trainer.batch_size`` as the global batch and give every rank a contiguous share of it, so two
processes must follow one process's loss curve at the same global batch (to float tolerance: the gradient is
averaged over the ranks instead of summed in one process). Run: ``python -m pytest tests/test_ddp.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import write_synthetic_works

from puzzles.build import build

ROOT = Path(__file__).resolve().parents[1]


def _launch(nproc: int, module: str, *overrides: str) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", module]
    if nproc == 1:  # the plain CLI: one process without a process group
        cmd = [sys.executable, "-m", module]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([*cmd, *overrides], capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)
    assert p.returncode == 0, p.stderr[-3000:]


def _curve(run: Path) -> list[float]:
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["train/loss"] for r in rows if "train/loss" in r]


def _compare(tmp_path: Path, module: str, *overrides: str) -> tuple[dict, dict]:
    for n in (1, 2):
        _launch(n, module, *overrides, f"trainer.out_dir={tmp_path / f'world{n}'}")
    one, two = _curve(tmp_path / "world1"), _curve(tmp_path / "world2")
    assert len(one) == len(two) >= 4
    torch.testing.assert_close(torch.tensor(two), torch.tensor(one), rtol=1e-4, atol=1e-5)
    r1, r2 = (json.loads((tmp_path / f"world{n}" / "results.json").read_text()) for n in (1, 2))
    assert r1["run"]["world"] == 1 and r2["run"]["world"] == 2
    # FLOPs are counted for the whole global batch, whichever way it is split
    assert r2["run"]["train_flops"] == pytest.approx(r1["run"]["train_flops"], rel=1e-6)
    return r1, r2


@pytest.mark.e2e
def test_lm_two_ranks_follow_one_rank(tmp_path: Path) -> None:
    corpus = write_synthetic_works(tmp_path / "corpus", 300)
    r1, r2 = _compare(
        tmp_path,
        "recursive_models.lm.train",
        "model=gpt",
        "+model.overrides.n_layers=2",
        "data.source=files",
        f"data.paths=[{corpus}]",
        "data.vocab_size=300",
        "data.val_fraction=0.34",
        f"data.cache_dir={tmp_path / 'cache'}",
        "trainer.steps=5",
        "trainer.batch_size=8",
        "trainer.seq_len=32",
        "trainer.log_interval=1",
        "trainer.eval_batches=2",
        "trainer.eval_batch_size=4",
        "trainer.progress=false",
        "trainer.threads=1",
        "trainer.device=cpu",
    )
    assert r2["val/loss"] == pytest.approx(r1["val/loss"], rel=1e-4)


@pytest.mark.e2e
def test_puzzle_two_ranks_follow_one_rank(tmp_path: Path) -> None:
    data = tmp_path / "sudoku6"
    build("sudoku6", data, train=64, test=16, aug=0, seed=0, progress=False)
    # No ACT exploration: its coin flips come from each rank's own RNG stream, so they differ from one process's.
    r1, r2 = _compare(
        tmp_path,
        "recursive_models.train",
        "model=trm",
        "task=sudoku6",
        f"task.data_dir={data}",
        "model.hidden_size=32",
        "model.num_heads=2",
        "model.halt_exploration_prob=0.0",
        "trainer.ema=false",
        "trainer.steps=4",
        "trainer.batch_size=8",
        "trainer.log_interval=1",
        "trainer.eval_batch_size=16",
        "trainer.progress=false",
        "trainer.threads=1",
        "trainer.device=cpu",
    )
    assert r2["eval/cell_accuracy"] == pytest.approx(r1["eval/cell_accuracy"], abs=1e-6)
