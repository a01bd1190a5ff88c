"""Agents that play the puzzle environments: one interface, three implementations.

Every agent has ``act(observation, info) -> action`` for the observation and ``info`` of the env it plays
(``puzzles/Sudoku-v0``, ``puzzles/Maze-v0`` in walk or draw mode), plus ``reset()`` called at the start of
an episode. Plug in your own by implementing the same two methods.

* `SolverAgent` — the exact solvers' moves one at a time (Sudoku: fill cells in reading order with the unique
  solution; maze walk: step along a BFS shortest path; maze draw: mark the reference path's cells).
* `ModelAgent` — a trained `recursive_models` checkpoint: it predicts the whole answer from the observation
  (all supervision steps) and acts on it: Sudoku fills the legal placement it is most confident of; draw mode
  marks the most confident predicted path cell not yet marked; walk mode steps to the neighbour it rates most
  likely to be on the path, avoiding cells it has visited.
* `HumanAgent` — reads moves typed at a terminal (used by ``python -m puzzles.play``, which adds undo and hints).

    from puzzles.agents import SolverAgent
    env = gymnasium.make("puzzles/Sudoku-v0", box=(2, 3))
    obs, info = env.reset(seed=0)
    agent = SolverAgent()
    while True:
        obs, reward, terminated, truncated, info = env.step(agent.act(obs, info))
        if terminated or truncated:
            break
"""

from __future__ import annotations

import math
import os
from typing import Any, Protocol

import numpy as np

from puzzles.envs.maze_env import ACTION_NAMES
from puzzles.errors import PuzzleError
from puzzles.formats import tokens_to_grids
from puzzles.maze import BFS_ORDER, GOAL, OPEN, PATH, START, shortest_path, solve_maze
from puzzles.sudoku import box_for

# Walk-mode moves, in the order of the env's Discrete(4) action (the BFS neighbour order).
MOVES = BFS_ORDER
MOVE_NAMES = ACTION_NAMES


class Agent(Protocol):
    """What `puzzles.play` and user code need from an agent."""

    def reset(self) -> None:
        """Forget everything about the previous episode."""

    def act(self, observation: Any, info: dict) -> Any:
        """Return the next action for ``observation`` (``info`` holds the env's ``action_mask``)."""


KINDS = ("sudoku", "maze-walk", "maze-draw")


def env_kind(env: Any) -> str:
    """``"sudoku"``, ``"maze-walk"`` or ``"maze-draw"`` for a (possibly wrapped) puzzle env."""
    u = getattr(env, "unwrapped", env)
    name = type(u).__name__
    if name.startswith("Sudoku"):
        return "sudoku"
    if name.startswith("Maze"):
        return f"maze-{u.mode}"
    raise PuzzleError(f"{name} is not one of the puzzle envs (puzzles/Sudoku-v0, puzzles/Maze-v0)")


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise PuzzleError(f"unknown puzzle kind {kind!r}; expected one of {KINDS} (see env_kind)")
    return kind


def sudoku_grid(observation: Any) -> np.ndarray:
    """Board tokens (blank 1, digit d -> d+1) -> ``(N, N)`` grid with 0 for blanks."""
    return tokens_to_grids(np.asarray(observation)[None], "sudoku")[0].astype(np.int64)


def _walk_grid(observation: dict) -> tuple[np.ndarray, tuple[int, int]]:
    grid = np.asarray(observation["grid"], dtype=np.uint8)
    n = math.isqrt(grid.size)
    pos = tuple(int(v) for v in np.asarray(observation["position"]))
    return grid.reshape(n, n), pos  # type: ignore[return-value]


class SolverAgent:
    """Plays the exact solvers' moves one at a time.

    Args:
        kind: ``"sudoku"``, ``"maze-walk"`` or ``"maze-draw"`` (`env_kind` of the env it plays).
    """

    def __init__(self, kind: str) -> None:
        self.kind = _check_kind(kind)
        self._solution: np.ndarray | None = None
        self._key: bytes | None = None

    def reset(self) -> None:  # noqa: D102
        self._solution, self._key = None, None

    def act(self, observation: Any, info: dict) -> Any:  # noqa: D102
        kind = self.kind
        if kind == "sudoku":
            from puzzles.sudoku_solver import solve

            grid = sudoku_grid(observation)
            n = grid.shape[0]
            if self._solution is None or np.any((grid > 0) & (grid != self._solution)):
                self._solution = np.asarray(solve(grid, box_for(n)), dtype=np.int64)
            empty = np.argwhere(grid == 0)
            if len(empty) == 0:
                raise PuzzleError("the board is already full")
            r, c = (int(v) for v in empty[0])
            return np.array([r, c, self._solution[r, c] - 1], dtype=np.int64)
        if kind == "maze-walk":
            grid, (r, c) = _walk_grid(observation)
            g = np.where(grid == START, OPEN, grid).astype(np.uint8)
            g[g == PATH] = OPEN
            if g[r, c] == GOAL:
                raise PuzzleError("the agent is already on the goal")
            g[r, c] = START
            nr, nc = (int(v) for v in shortest_path(g)[1])
            return MOVES.index((nr - r, nc - c))
        # Draw mode: mark the reference path's cells that are not marked yet, in path order.
        tokens = np.asarray(observation, dtype=np.uint8)
        n = math.isqrt(tokens.size)
        grid = tokens.reshape(n, n)
        label = solve_maze(grid)
        todo = np.argwhere((label == PATH) & (grid != PATH))
        extra = np.argwhere((grid == PATH) & (label != PATH))
        cell = extra[0] if len(extra) else todo[0]  # erase stray marks first, then draw
        return int(cell[0]) * n + int(cell[1])


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

        from recursive_models import load_checkpoint

        self.kind = _check_kind(kind)
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
        grid, (r, c) = _walk_grid(observation)
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


class HumanAgent:
    """Reads moves from a terminal; `puzzles.play` handles the commands ``undo``, ``hint`` and ``quit`` itself.

    Moves: Sudoku ``ROW COL DIGIT`` (1-based); maze walk ``down|left|right|up`` (or ``d l r u`` / ``s a d w``
    as on a keyboard: s=down, a=left, d=right, w=up); maze draw ``ROW COL`` (1-based) toggles a path mark.
    """

    def __init__(self, kind: str, read=input, write=print):
        self.kind = _check_kind(kind)
        self.read, self.write = read, write

    def reset(self) -> None:  # noqa: D102
        pass

    def act(self, observation: Any, info: dict) -> Any:
        """Prompt until a well-formed move is typed; returns it (or a command string)."""
        kind = self.kind
        prompt = {
            "sudoku": "row col digit",
            "maze-walk": "move (w/a/s/d or up/left/down/right)",
            "maze-draw": "row col",
        }
        while True:
            line = self.read(f"{prompt[kind]} | undo | hint | quit > ").strip().lower()
            if line in ("undo", "u", "hint", "h", "quit", "q", "exit"):
                return {"u": "undo", "h": "hint", "q": "quit", "exit": "quit"}.get(line, line)
            try:
                return parse_move(kind, line, observation)
            except ValueError as e:
                self.write(f"  {e}")


def parse_move(kind: str, line: str, observation: Any) -> Any:
    """Parse a typed move into an env action; raises ValueError with what is expected."""
    if kind == "maze-walk":
        keys = {"s": 0, "down": 0, "a": 1, "left": 1, "d": 2, "right": 2, "w": 3, "up": 3}
        if line not in keys:
            raise ValueError(f"unknown move {line!r}: type w/a/s/d or up/left/down/right")
        return keys[line]
    parts = line.replace(",", " ").split()
    n = math.isqrt(np.asarray(observation).size)
    want = 3 if kind == "sudoku" else 2
    if len(parts) != want or not all(p.isdigit() for p in parts):
        raise ValueError(f"expected {want} numbers ({'row col digit' if want == 3 else 'row col'}), got {line!r}")
    vals = [int(p) for p in parts]
    if not all(1 <= v <= n for v in vals):
        raise ValueError(f"numbers must be between 1 and {n}")
    if kind == "sudoku":
        return np.array([vals[0] - 1, vals[1] - 1, vals[2] - 1], dtype=np.int64)
    return (vals[0] - 1) * n + (vals[1] - 1)


AGENTS = {"human": HumanAgent, "solver": SolverAgent, "model": ModelAgent}
