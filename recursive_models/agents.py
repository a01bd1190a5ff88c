"""The checkpoint-driven puzzle agent: a trained `recursive_models` model playing the `puzzles` envs.

`ModelAgent` predicts the whole answer from the observation (all supervision steps) and acts on it: Sudoku
fills the legal placement it is most confident of; draw mode marks the most confident predicted path cell not
yet marked; walk mode steps to the neighbour it rates most likely to be on the path, avoiding cells it has
visited. It follows the `puzzles.agents.Agent` interface and is registered there as ``model`` (by entry-point
string, so `puzzles` never imports the models):

    python -m puzzles.play sudoku --agent model --checkpoint runs/my-run --box 2x3 --seed 1

    from recursive_models.agents import ModelAgent
    agent = ModelAgent("sudoku", "tests/data/checkpoints/attractor-tiny-sudoku6")
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from puzzles.agents import MOVES, check_kind, walk_grid
from puzzles.errors import PuzzleError
from puzzles.maze import GOAL, OPEN, PATH


class ModelAgent:
    """Acts on a trained checkpoint's prediction of the whole answer (see the module docstring).

    Args:
        kind: ``"sudoku"``, ``"maze-walk"`` or ``"maze-draw"`` (`env_kind` of the env it plays).
        checkpoint: a run directory, checkpoint folder or ``model.safetensors`` of `recursive_models`.
        device: where to run the model.
        steps: supervision steps per prediction (default: the model's ``halt_max_steps``).
    """

    def __init__(self, kind: str, checkpoint: str | os.PathLike, device: str = "cpu", steps: int | None = None):
        import torch

        from recursive_models.checkpoint import load_checkpoint

        self.kind = check_kind(kind)
        self.torch = torch
        self.model, self.meta = load_checkpoint(checkpoint, device)
        trained_on = self.meta["task"].get("kind")
        if trained_on and trained_on != kind.split("-")[0]:
            raise PuzzleError(f"the checkpoint was trained on {trained_on} puzzles, not {kind.split('-')[0]}")
        self.device = device
        self.steps = steps or self.model.config.halt_max_steps
        self.seq_len = self.model.config.seq_len
        self.visited: set[tuple[int, int]] = set()
        self._cache: tuple[bytes, np.ndarray] | None = None

    def reset(self) -> None:  # noqa: D102
        self.visited = set()
        self._cache = None

    def probabilities(self, tokens: np.ndarray) -> np.ndarray:
        """``(seq_len, vocab)`` token probabilities of the model's answer for the input ``tokens``."""
        torch = self.torch
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        if tokens.size != self.seq_len:
            raise PuzzleError(
                f"the checkpoint was trained on sequences of {self.seq_len} cells "
                f"({self.meta['task']['name']}), this puzzle has {tokens.size}"
            )
        key = tokens.tobytes()
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        batch = {
            "inputs": torch.from_numpy(tokens)[None].to(self.device),
            "labels": torch.zeros(1, tokens.size, dtype=torch.int64, device=self.device),
            "puzzle_identifiers": torch.zeros(1, dtype=torch.int64, device=self.device),
        }
        with torch.no_grad():
            carry = self.model.initial_carry(batch)
            for _ in range(self.steps):
                carry, out = self.model(carry, batch)
        probs = out["logits"][0].float().softmax(-1).cpu().numpy()
        self._cache = (key, probs)
        return probs

    def act(self, observation: Any, info: dict) -> Any:  # noqa: D102
        kind = self.kind
        mask = np.asarray(info["action_mask"], dtype=bool)
        if kind == "sudoku":
            tokens = np.asarray(observation, dtype=np.int64)
            n = math.isqrt(tokens.size)
            probs = self.probabilities(tokens)[:, 2 : n + 2].reshape(n, n, n)  # P(digit k+1) per cell
            scores = np.where(mask, probs, -1.0)
            if not mask.any():
                # No legal placement left: any action is answered by the env (dead end); pick the best guess.
                scores = probs
            r, c, k = np.unravel_index(int(np.argmax(scores)), scores.shape)
            return np.array([r, c, k], dtype=np.int64)
        if kind == "maze-draw":
            tokens = np.asarray(observation, dtype=np.int64)
            # Predict from the maze itself (marks stripped), then mark the most confident unmarked path cell,
            # or erase a mark the model no longer believes in.
            clean = np.where(tokens == PATH, OPEN, tokens)
            p_path = self.probabilities(clean)[:, PATH]
            marked = tokens == PATH
            if (marked & (p_path < 0.5)).any():
                scores = np.where(marked & mask, 1.0 - p_path, -1.0)
            else:
                scores = np.where(~marked & mask, p_path, -1.0)
            return int(np.argmax(scores))
        grid, (r, c) = walk_grid(observation)
        self.visited.add((r, c))
        clean = np.where(grid == PATH, OPEN, grid)
        probs = self.probabilities(clean.reshape(-1))
        n = grid.shape[0]
        best, best_score = None, -np.inf
        for a, (dr, dc) in enumerate(MOVES):
            if not mask[a]:
                continue
            nr, nc = r + dr, c + dc
            cell = nr * n + nc
            score = probs[cell, PATH] + probs[cell, GOAL] + (10.0 if grid[nr, nc] == GOAL else 0.0)
            if (nr, nc) in self.visited:
                score -= 1.0  # prefer new cells: a walk along the predicted path never needs to go back
            if score > best_score:
                best, best_score = a, score
        return int(best if best is not None else 0)
