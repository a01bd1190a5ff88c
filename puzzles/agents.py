"""Agents that play the puzzle environments: one interface, a registry of implementations.

Every agent has ``act(observation, info) -> action`` for the observation and ``info`` of the env it plays
(``puzzles/Sudoku-v0``, ``puzzles/Maze-v0`` in walk or draw mode), plus ``reset()`` called at the start of
an episode. Plug in your own by implementing the same two methods and naming it in `register_agent`.

* `SolverAgent` — the exact solvers' moves one at a time (Sudoku: fill cells in reading order with the unique
  solution; maze walk: step along a BFS shortest path; maze draw: mark the reference path's cells).
* ``model`` — a trained checkpoint (`recursive_models.agents.ModelAgent`). It lives with the models, not here,
  so that this package imports nothing above it; `AGENTS` names it by an entry-point string that `make_agent`
  imports only when that agent is asked for.
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

import importlib
import math
from collections.abc import Callable
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


def check_kind(kind: str) -> str:
    """``kind`` if it is one of `KINDS`; a `PuzzleError` naming them otherwise."""
    if kind not in KINDS:
        raise PuzzleError(f"unknown puzzle kind {kind!r}; expected one of {KINDS} (see env_kind)")
    return kind


def sudoku_grid(observation: Any) -> np.ndarray:
    """Board tokens (blank 1, digit d -> d+1) -> ``(N, N)`` grid with 0 for blanks."""
    return tokens_to_grids(np.asarray(observation)[None], "sudoku")[0].astype(np.int64)


def walk_grid(observation: dict) -> tuple[np.ndarray, tuple[int, int]]:
    """A walk-mode observation -> ``(N, N)`` grid and the agent's ``(row, col)``."""
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
        self.kind = check_kind(kind)
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
            grid, (r, c) = walk_grid(observation)
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


class HumanAgent:
    """Reads moves from a terminal; `puzzles.play` handles the commands ``undo``, ``hint`` and ``quit`` itself.

    Moves: Sudoku ``ROW COL DIGIT`` (1-based); maze walk ``down|left|right|up`` (or ``d l r u`` / ``s a d w``
    as on a keyboard: s=down, a=left, d=right, w=up); maze draw ``ROW COL`` (1-based) toggles a path mark.
    """

    def __init__(self, kind: str, read=input, write=print):
        self.kind = check_kind(kind)
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


#: agent name -> its class (or any factory called as ``factory(kind, **kwargs)``), or an entry point
#: ``"module:attr"`` imported on first use (Gymnasium's pattern for envs): the packages above this one plug in
#: their agents without `puzzles` importing them.
AGENTS: dict[str, Callable[..., Agent] | str] = {
    "human": HumanAgent,
    "solver": SolverAgent,
    "model": "recursive_models.agents:ModelAgent",
}


def register_agent(name: str, entry_point: Callable[..., Agent] | str) -> None:
    """Make ``name`` playable by `make_agent` / ``python -m puzzles.play --agent NAME``."""
    AGENTS[name] = entry_point


def agent_class(name: str) -> Callable[..., Agent]:
    """The factory registered as ``name``, importing its module if it is an entry-point string."""
    if name not in AGENTS:
        raise PuzzleError(f"unknown agent {name!r}; registered agents: {sorted(AGENTS)}")
    entry = AGENTS[name]
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = getattr(importlib.import_module(module), attr)
        AGENTS[name] = entry
    return entry


def make_agent(name: str, kind: str, **kwargs: Any) -> Agent:
    """``agent_class(name)(kind, **kwargs)``: the agent ``name`` for the env kind ``kind``."""
    return agent_class(name)(kind, **kwargs)
