"""Dummy submissions that bound the board from below, scored through the same pipeline as real ones.

* ``copy-input`` answers with the puzzle itself (Sudoku: the givens right, every blank wrong; mazes: everything
  but the path right), the floor of cell accuracy for a model that learned nothing but the identity;
* ``random-guess`` answers every cell with a uniformly drawn non-padding token. Its "randomness" is an integer
  hash of the example and the position, so it scores the same on every device and batch split.

They have no parameters; `write_dummy_submission` writes one as a normal checkpoint folder (``meta.json`` and an
empty ``model.safetensors``), so ``python -m leaderboard baselines`` submits them end to end.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from recursive_models.base import ModelConfig


class DummyModel(nn.Module):
    """Interface of `recursive_models.base.RecursiveModel` for evaluation: one step, halting at once."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.halt_max_steps != 1:
            raise ValueError(f"{config.name}: halt_max_steps must be 1, got {config.halt_max_steps}")
        self.config = config

    def initial_carry(self, batch: dict[str, torch.Tensor]) -> None:
        """No state."""
        return None

    def answer(self, inputs: torch.Tensor) -> torch.Tensor:
        """Token ids ``(B, L)``."""
        raise NotImplementedError

    def forward(self, carry, batch: dict[str, torch.Tensor]):
        """Logits that put all mass on `answer`, and a halt."""
        inputs = batch["inputs"]
        logits = nn.functional.one_hot(self.answer(inputs).long(), self.config.vocab_size).float()
        return carry, {"logits": logits, "q_halt_logits": torch.ones(inputs.shape[0], device=inputs.device)}


class CopyInput(DummyModel):
    """The puzzle as its own answer."""

    def answer(self, inputs: torch.Tensor) -> torch.Tensor:
        """The inputs."""
        return inputs


class RandomGuess(DummyModel):
    """A uniformly drawn token in ``1 .. vocab_size - 1`` per cell, from an integer hash (device independent)."""

    def answer(self, inputs: torch.Tensor) -> torch.Tensor:
        """Hash of (example, position) mod the number of non-padding tokens, plus one."""
        x = inputs.long()
        pos = torch.arange(x.shape[1], device=x.device, dtype=torch.int64)
        row = (x * (pos * 2654435761 + 97)).sum(-1, keepdim=True)  # (B, 1), wraps in int64: fine for a hash
        h = (row ^ (pos * 40503 + 1)) & 0x7FFFFFFF
        for _ in range(3):  # a few xorshift-multiply rounds mix the low bits
            h = ((h ^ (h >> 15)) * 0x2C1B3C6D) & 0x7FFFFFFF
        return h % (self.config.vocab_size - 1) + 1


BASELINES: dict[str, type[DummyModel]] = {"copy-input": CopyInput, "random-guess": RandomGuess}


def write_dummy_submission(name: str, task: str, out: str | os.PathLike) -> Path:
    """Write baseline ``name`` for puzzle dataset ``task`` as a checkpoint folder ``out``; returns it."""
    from recursive_models.registry import task_info

    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; baselines: {sorted(BASELINES)}")
    info = task_info(task)
    cfg = {
        "name": name,
        "size": "none",
        "vocab_size": info["vocab_size"],
        "seq_len": info["seq_len"],
        "num_puzzle_identifiers": 1,
        "halt_max_steps": 1,
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({}, str(out / "model.safetensors"))
    meta = {"format_version": 1, "model": cfg, "task": {"name": task, "kind": info["kind"]}, "weights": "none"}
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out
