"""Gymnasium environment for Maze-Hard-style grid mazes: walk the maze, or draw the shortest path on it.

Two modes share one environment (``puzzles/Maze-v0``):

* ``mode="walk"``: an agent starts on ``S`` and moves down/left/right/up until it stands on ``G``.
* ``mode="draw"``: the agent toggles ``PATH`` marks on open cells until the marks form a shortest
  S→G path. The observation is then exactly the HRM/TRM label format (tokens 1..5, flat N*N), so a
  model's prediction can be compared with, or replayed into, the environment.

Mazes come from :func:`puzzles.maze_generator.generate_mazes` (one per reset, seeded from the
environment's ``np_random``), from the ``test`` split of an HRM/TRM dataset folder (``source=``), or
from ``reset(options={"maze": ...})``. `MazeVectorEnv` is a native batched version that agrees
step for step with ``gymnasium.vector.SyncVectorEnv`` over `MazeEnv`.

Usage::

    import gymnasium as gym
    from puzzles.envs import register_envs
    register_envs()
    env = gym.make("puzzles/Maze-v0", mode="walk", size=12, render_mode="ansi")
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(0)   # 0 down, 1 left, 2 right, 3 up
    print(env.render())
    envs = gym.make_vec("puzzles/Maze-v0", num_envs=8, vectorization_mode="vector_entry_point", mode="draw")

Run ``python -m puzzles.envs.maze_env`` to play one walk-mode episode with random legal moves.
"""

from __future__ import annotations

import operator
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector.utils import batch_space

from puzzles.errors import NoSolutionError
from puzzles.formats import kind_of_split, read_split
from puzzles.maze import (
    BFS_ORDER,
    GOAL,
    OPEN,
    PATH,
    START,
    WALL,
    as_maze,
    check_predictions,
    distances,
    parse_maze,
    strip_path,
)
from puzzles.maze_generator import MAZE_PRESETS, generate_mazes

# --------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------

MODES = ("walk", "draw")
DEFAULT_SIZE = 12
# Rewards. Every step's reward is exactly one of these (plus, in shaped walk mode, the shaping term).
STEP_COST = -0.01  # a legal move (walk) or a legal toggle (draw)
BLOCKED = -0.1  # walk: a move into a wall or off the grid (the agent stays), or an out-of-range action
GOAL_REWARD = 1.0  # walk: the move that reaches G (terminates)
INVALID = -0.1  # draw: toggling a wall, S, G or an out-of-range cell (nothing changes)
SOLVED = 1.0  # draw: the toggle after which the marks form a shortest S→G path (terminates)
# Walk mode with ``shaped=True`` adds SHAPING * (d_before - d_after), d the BFS distance to G. It is
# potential-based, so it leaves the optimal policy unchanged; 0.02 > |STEP_COST| makes a step
# towards G net positive and a step away clearly negative.
SHAPING = 0.02
# Walk actions as (row, column) steps, in the order of the reference BFS (puzzles.maze.BFS_ORDER).
MOVES = np.array(BFS_ORDER, dtype=np.int64)
ACTION_NAMES = ("down", "left", "right", "up")
# rgb_array drawing.
CELL_PX = 16
COLORS = {
    "wall": (40, 40, 48),
    "open": (255, 255, 255),
    "start": (40, 170, 70),
    "goal": (215, 40, 40),
    "path": (50, 100, 230),
    "agent": (255, 140, 0),
    "grid": (205, 205, 210),
}
# Default min_path_cells for sizes without a preset: the two presets (12 → 41, 30 → 110) lie on
# 41 * (N / 12) ** 1.077, i.e. about the same relative difficulty; generation stays well under
# 0.1 s per maze for N <= 20 with it.
_PRESET_EXPONENT = 1.077


# --------------------------------------------------------------------------------------------
# Helpers shared by MazeEnv and MazeVectorEnv
# --------------------------------------------------------------------------------------------


def default_min_path_cells(size: int) -> int:
    """Return the default ``min_path_cells`` for generated ``size``×``size`` mazes.

    The ``maze-small`` (12) and ``maze-hard`` (30) preset values for those sizes, otherwise the power
    law through both presets, capped at half the cells so that small mazes stay generable.
    """
    for preset in MAZE_PRESETS.values():
        if preset["size"] == size:
            return int(preset["min_path_cells"])
    small = MAZE_PRESETS["maze-small"]
    value = round(small["min_path_cells"] * (size / small["size"]) ** _PRESET_EXPONENT)
    return max(2, min(value, size * size // 2))


def load_maze(maze: object, size: int) -> np.ndarray:
    """Validate a maze given as text or tokens and return it as ``(size, size)`` uint8 without PATH marks.

    Args:
        maze: text as :func:`puzzles.maze.parse_maze` accepts, or ``(N, N)`` / ``(N*N,)`` token ids.
        size: the side the environment was built for.

    Raises:
        PuzzleError: malformed maze, wrong side, or (NoSolutionError) G unreachable from S.
    """
    grid = parse_maze(maze, size=size) if isinstance(maze, str) else as_maze(maze, size=size)
    return strip_path(grid)


def _goal_distances(maze: np.ndarray) -> np.ndarray:
    """Return ``(N, N)`` int32 BFS distances to G (-1: wall or unreachable), by searching from G."""
    swapped = maze.copy()
    # The grid graph is undirected, so distances from S in the S↔G-swapped maze are distances to G.
    swapped[maze == START] = GOAL
    swapped[maze == GOAL] = START
    return distances(swapped)


class _MazeSource:
    """Where mazes come from: the generator, or the rows of a dataset split (validated here)."""

    def __init__(self, size: int | None, min_path_cells: int | None, source: object | None):
        self.rows: np.ndarray | None = None
        if source is not None:
            if min_path_cells is not None:
                raise ValueError("min_path_cells applies to generated mazes only; leave it None with source=")
            split = read_split(source, "test")
            if kind_of_split(split.metadata) != "maze":
                raise ValueError(f"source {source!s} is not a maze dataset (dataset.json: {split.metadata})")
            n = int(np.sqrt(split.inputs.shape[1]) + 0.5)
            if size is not None and size != n:
                raise ValueError(f"size={size} but the mazes of source {source!s} are {n}×{n}")
            if len(split.inputs) == 0:
                raise ValueError(f"source {source!s} has an empty test split")
            self.rows, self.size, self.min_path_cells = split.inputs, n, None
            return
        size = DEFAULT_SIZE if size is None else size
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 2:
            raise ValueError(f"size must be an int >= 2, got {size!r}")
        self.size = int(size)
        if min_path_cells is None:
            min_path_cells = default_min_path_cells(self.size)
        if isinstance(min_path_cells, bool) or not isinstance(min_path_cells, int | np.integer):
            raise ValueError(f"min_path_cells must be an int, got {min_path_cells!r}")
        if not 2 <= min_path_cells <= self.size * self.size:
            raise ValueError(
                f"min_path_cells must be in 2..{self.size * self.size} for a {self.size}×{self.size} maze, "
                f"got {min_path_cells}"
            )
        self.min_path_cells = int(min_path_cells)

    def draw(self, rng: np.random.Generator, options: dict | None) -> np.ndarray:
        """Return the maze for one reset: ``options["maze"]``, ``options["index"]``, or a random one."""
        options = options or {}
        if options.get("maze") is not None:
            return load_maze(options["maze"], self.size)
        if options.get("index") is not None:
            if self.rows is None:
                raise ValueError("options['index'] needs a dataset source= (this env generates its mazes)")
            i = options["index"]
            if isinstance(i, bool) or not isinstance(i, int | np.integer) or not 0 <= i < len(self.rows):
                raise ValueError(f"options['index'] must be an int in 0..{len(self.rows) - 1}, got {i!r}")
            return load_maze(np.asarray(self.rows[int(i)]), self.size)
        if self.rows is not None:
            return load_maze(np.asarray(self.rows[int(rng.integers(len(self.rows)))]), self.size)
        seed = int(rng.integers(2**31))
        # workers=1: one small maze takes ~25 ms at 12×12; a process pool would cost far more.
        batch = generate_mazes(
            1, size=self.size, min_path_cells=self.min_path_cells, seed=seed, progress=False, workers=1
        )
        return batch.inputs[0].copy()


def _as_actions(actions: object, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Coerce ``n`` actions to int64, returning ``(values, usable)``; non-integers are unusable, never errors."""
    if n == 1 and not isinstance(actions, np.ndarray | list | tuple):
        try:
            return np.array([operator.index(actions)], dtype=np.int64), np.ones(1, dtype=bool)
        except (TypeError, ValueError, OverflowError):
            return np.zeros(1, dtype=np.int64), np.zeros(1, dtype=bool)
    try:
        a = np.asarray(actions)
    except Exception:  # arbitrary objects may fail to convert in arbitrary ways
        return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
    if a.size != n or a.dtype.kind not in "iub":
        return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
    a = a.reshape(n)
    if a.dtype.kind == "u":
        # Values beyond int64 are out of range anyway; clip so the cast cannot wrap into range.
        a = np.minimum(a, np.iinfo(np.int64).max)
    return a.astype(np.int64), np.ones(n, dtype=bool)


class _MazeBatch:
    """State and dynamics of ``n`` maze episodes in numpy arrays; `MazeEnv` is the case ``n == 1``.

    Sharing this code is what makes `MazeVectorEnv` agree exactly with a SyncVectorEnv of `MazeEnv`.
    """

    def __init__(self, n: int, size: int, mode: str, shaped: bool, max_steps: int):
        self.n, self.size, self.mode, self.shaped, self.max_steps = n, size, mode, shaped, max_steps
        self.maze = np.full((n, size, size), WALL, dtype=np.uint8)  # tokens without PATH marks
        # Walls with a one-cell wall border, so a move's target never needs a bounds check.
        self.walls = np.ones((n, size + 2, size + 2), dtype=bool)
        self.marks = np.zeros((n, size, size), dtype=bool)  # draw: PATH marks; walk: visited trail
        self.pos = np.zeros((n, 2), dtype=np.int64)
        self.goal = np.zeros((n, 2), dtype=np.int64)
        self.dist = np.full((n, size, size), -1, dtype=np.int32)  # BFS distance to G
        self.opt_cells = np.zeros(n, dtype=np.int64)  # cells of a shortest path, S and G included
        self.steps = np.zeros(n, dtype=np.int64)
        self.n_actions = 4 if mode == "walk" else size * size

    def load(self, i: int, maze: np.ndarray) -> None:
        """Start episode ``i`` on ``maze`` ((N, N) uint8, validated, no PATH tokens)."""
        dist = _goal_distances(maze)
        start = np.argwhere(maze == START)[0]
        if dist[start[0], start[1]] < 0:
            raise NoSolutionError("the goal 'G' is not reachable from the start 'S'")
        self.maze[i] = maze
        self.walls[i, 1:-1, 1:-1] = maze == WALL
        self.marks[i] = False
        self.pos[i] = start
        self.goal[i] = np.argwhere(maze == GOAL)[0]
        self.dist[i] = dist
        self.opt_cells[i] = dist[start[0], start[1]] + 1
        self.steps[i] = 0

    def obs(self) -> Any:
        """Return the batched observation (fresh arrays)."""
        n, cells = self.n, self.size * self.size
        if self.mode == "walk":
            return {"grid": self.maze.reshape(n, cells).astype(np.int64), "position": self.pos.copy()}
        return np.where(self.marks, PATH, self.maze).reshape(n, cells).astype(np.int64)

    def action_masks(self) -> np.ndarray:
        """Return ``(n, n_actions)`` bool masks of the legal (non-penalised) actions."""
        if self.mode == "walk":
            rows = self.pos[:, None, 0] + 1 + MOVES[None, :, 0]
            cols = self.pos[:, None, 1] + 1 + MOVES[None, :, 1]
            return ~self.walls[np.arange(self.n)[:, None], rows, cols]
        # Marked cells are OPEN in self.maze, so this allows both marking and erasing.
        return (self.maze == OPEN).reshape(self.n, -1)

    def step(self, actions: object, active: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Apply ``actions`` to the episodes where ``active``; return rewards, terminated, truncated, results.

        ``results`` is an object array of result names, None where not active.
        """
        n, size = self.n, self.size
        a, usable = _as_actions(actions, n)
        valid = active & usable & (a >= 0) & (a < self.n_actions)
        invalid = active & ~valid
        idx = np.arange(n)
        rewards = np.zeros(n, dtype=np.float64)
        results = np.full(n, None, dtype=object)
        self.steps[active] += 1
        if self.mode == "walk":
            target = self.pos + MOVES[np.clip(a, 0, 3)]
            free = ~self.walls[idx, target[:, 0] + 1, target[:, 1] + 1]
            moved, blocked = valid & free, valid & ~free
            d_before = self.dist[idx, self.pos[:, 0], self.pos[:, 1]]
            self.pos[moved] = target[moved]
            self.marks[idx[moved], self.pos[moved, 0], self.pos[moved, 1]] = True
            d_after = self.dist[idx, self.pos[:, 0], self.pos[:, 1]]
            done = moved & (self.pos == self.goal).all(axis=1)
            rewards[moved] = STEP_COST
            rewards[blocked | invalid] = BLOCKED
            rewards[done] = GOAL_REWARD
            if self.shaped:
                rewards[moved] += SHAPING * (d_before[moved] - d_after[moved]).astype(np.float64)
            results[moved], results[blocked], results[invalid], results[done] = "moved", "blocked", "invalid", "goal"
        else:
            cell = np.clip(a, 0, size * size - 1)
            r, c = cell // size, cell % size
            ok = valid & (self.maze[idx, r, c] == OPEN)
            bad = active & ~ok
            was = self.marks[idx, r, c]
            self.marks[idx[ok], r[ok], c[ok]] = ~was[ok]
            # A shortest path marks exactly opt_cells - 2 cells; only then is the full check worth it.
            done = ok & (self.marks.sum(axis=(1, 2)) == self.opt_cells - 2)
            if done.any():
                which = idx[done]
                pred = np.where(self.marks[which], PATH, self.maze[which])
                _, valid_shortest = check_predictions(self.maze[which], pred)
                done[which] = valid_shortest
            rewards[ok] = STEP_COST
            rewards[bad] = INVALID
            rewards[done] = SOLVED
            results[ok & ~was], results[ok & was], results[bad], results[done] = "marked", "erased", "invalid", "solved"
        truncated = active & ~done & (self.steps >= self.max_steps)
        return rewards, done, truncated, results

    def render_ansi(self, i: int) -> str:
        """Return episode ``i`` as N lines: ``#`` walls, S, G, ``o`` path/trail, ``@`` the agent (walk)."""
        chars = np.array(list("?# SGo"))[np.where(self._path_cells(i), PATH, self.maze[i])]
        if self.mode == "walk":
            chars[self.pos[i, 0], self.pos[i, 1]] = "@"
        return "\n".join("".join(row) for row in chars)

    def render_rgb(self, i: int) -> np.ndarray:
        """Return episode ``i`` as a ``(N*CELL_PX, N*CELL_PX, 3)`` uint8 image (colors in `COLORS`)."""
        palette = np.array(
            [COLORS["wall"], COLORS["wall"], COLORS["open"], COLORS["start"], COLORS["goal"], COLORS["path"]],
            dtype=np.uint8,
        )
        tokens = np.where(self._path_cells(i), PATH, self.maze[i])
        img = np.repeat(np.repeat(palette[tokens], CELL_PX, axis=0), CELL_PX, axis=1)
        # Thin grid lines between cells so that runs of open cells stay countable.
        img[::CELL_PX, :] = COLORS["grid"]
        img[:, ::CELL_PX] = COLORS["grid"]
        if self.mode == "walk":
            # The agent is a filled square inset in its cell, so the cell's own color stays visible.
            r, c, m = self.pos[i, 0] * CELL_PX, self.pos[i, 1] * CELL_PX, CELL_PX // 4
            img[r + m : r + CELL_PX - m, c + m : c + CELL_PX - m] = COLORS["agent"]
        return img

    def _path_cells(self, i: int) -> np.ndarray:
        """Cells drawn as path: the marks (draw) or the visited trail without S and G (walk)."""
        return self.marks[i] & (self.maze[i] == OPEN)


def _check_common(mode: str, shaped: bool, max_episode_steps: int | None, render_mode: str | None, size: int):
    """Validate the constructor arguments shared by both classes; return the step limit."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not isinstance(shaped, bool | np.bool_):
        raise ValueError(f"shaped must be a bool, got {shaped!r}")
    if render_mode is not None and render_mode not in MazeEnv.metadata["render_modes"]:
        raise ValueError(f"render_mode must be None or one of {MazeEnv.metadata['render_modes']}, got {render_mode!r}")
    if max_episode_steps is None:
        return (4 if mode == "walk" else 2) * size * size
    if isinstance(max_episode_steps, bool) or not isinstance(max_episode_steps, int | np.integer):
        raise ValueError(f"max_episode_steps must be an int >= 1 or None, got {max_episode_steps!r}")
    if max_episode_steps < 1:
        raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
    return int(max_episode_steps)


def _spaces(mode: str, size: int) -> tuple[spaces.Space, spaces.Discrete]:
    """Return the single-environment ``(observation_space, action_space)``."""
    cells = size * size
    grid = spaces.Box(0, PATH, (cells,), dtype=np.int64)
    if mode == "walk":
        position = spaces.Box(0, size - 1, (2,), dtype=np.int64)
        return spaces.Dict({"grid": grid, "position": position}), spaces.Discrete(4)
    return grid, spaces.Discrete(cells)


# --------------------------------------------------------------------------------------------
# Environments
# --------------------------------------------------------------------------------------------


class MazeEnv(gym.Env):
    """Walk a maze from S to G, or draw a shortest S→G path on it.

    Tokens are those of :mod:`puzzles.maze` (1 wall, 2 open, 3 S, 4 G, 5 path); cell ``(r, c)`` is
    index ``r * N + c`` of the flat grid.

    Walk mode (``mode="walk"``):
        * Action space: ``Discrete(4)``: 0 down, 1 left, 2 right, 3 up (the reference BFS order).
        * Observation space: ``Dict(grid=Box(0, 5, (N*N,), int64), position=Box(0, N-1, (2,), int64))``:
          the maze tokens (constant within an episode) and the agent's (row, column).
        * Rewards: `STEP_COST` for a move, `BLOCKED` for a move into a wall or off the grid (the
          agent stays) and for an out-of-range action, `GOAL_REWARD` for the move onto G. With
          ``shaped=True`` every move also earns ``SHAPING * (d_before - d_after)``, d the BFS
          distance to G.
        * Termination: the agent reaches G. ``info["result"]``: ``"moved"``, ``"blocked"``,
          ``"invalid"`` or ``"goal"``.

    Draw mode (``mode="draw"``):
        * Action space: ``Discrete(N*N)``: toggle the PATH mark on cell ``r * N + c`` (toggling a
          marked cell erases it, which is the undo).
        * Observation space: ``Box(0, 5, (N*N,), int64)``: the maze with marked cells as PATH, the
          HRM/TRM label format.
        * Rewards: `STEP_COST` per toggle, `INVALID` for a wall, S, G or out-of-range cell (nothing
          changes), `SOLVED` for the toggle after which the marks form a shortest S→G path (any
          shortest path counts, not only the dataset label).
        * Termination: solved. ``info["result"]``: ``"marked"``, ``"erased"``, ``"invalid"`` or
          ``"solved"``. (In the degenerate maze with S next to G the empty marking is already a
          shortest path; the episode then ends on the first toggle that returns to it.)

    Both modes truncate after ``max_episode_steps`` steps. Every ``info`` holds ``"action_mask"``,
    a bool array over the actions that are legal (walk: target inside the grid and not a wall;
    draw: open or marked cells); step infos also hold ``"result"``.

    Args:
        mode: ``"walk"`` or ``"draw"``.
        size: side N of generated mazes (default 12); with ``source`` it defaults to the data's side.
        min_path_cells: minimum shortest-path cells of generated mazes; default the ``maze-small``
            preset's value for 12, ``maze-hard``'s for 30, else `default_min_path_cells`.
        source: an HRM/TRM maze dataset folder; mazes are then drawn uniformly from its test split.
        shaped: add distance shaping in walk mode (ignored in draw mode).
        max_episode_steps: step limit; default ``4*N*N`` (walk) or ``2*N*N`` (draw).
        render_mode: ``None``, ``"ansi"``, ``"rgb_array"`` or ``"human"`` (prints the ansi text).

    Reset options:
        ``{"maze": m}`` plays maze ``m`` (text or tokens, PATH marks stripped; PuzzleError if
        malformed or unsolvable); ``{"index": i}`` plays row ``i`` of the source's test split.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "rgb_array", "human"], "render_fps": 8}

    def __init__(
        self,
        mode: str = "walk",
        size: int | None = None,
        min_path_cells: int | None = None,
        source: object | None = None,
        shaped: bool = False,
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
    ):
        self._source = _MazeSource(size, min_path_cells, source)
        self.size = self._source.size
        self.max_episode_steps = _check_common(mode, shaped, max_episode_steps, render_mode, self.size)
        self.mode, self.shaped, self.render_mode = mode, bool(shaped), render_mode
        self.observation_space, self.action_space = _spaces(mode, self.size)
        self._batch = _MazeBatch(1, self.size, mode, self.shaped, self.max_episode_steps)
        self._ready = False

    @property
    def maze(self) -> np.ndarray:
        """The current maze as ``(N, N)`` uint8 tokens, without PATH marks."""
        return self._batch.maze[0].copy()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        """Start an episode on a new maze (see the class docstring for ``options``)."""
        super().reset(seed=seed)
        self._batch.load(0, self._source.draw(self.np_random, options))
        self._ready = True
        if self.render_mode == "human":
            self.render()
        return self._obs(), self._info()

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        """Apply one action; out-of-range or non-integer actions are penalised, never raised."""
        if not self._ready:
            raise gym.error.ResetNeeded("call reset() before step()")
        rewards, terminated, truncated, results = self._batch.step(action, np.ones(1, dtype=bool))
        if self.render_mode == "human":
            self.render()
        info = self._info()
        info["result"] = results[0]
        return self._obs(), float(rewards[0]), bool(terminated[0]), bool(truncated[0]), info

    def render(self) -> str | np.ndarray | None:
        """Render per ``render_mode``: text (ansi), an RGB image (rgb_array) or print the text (human)."""
        if self.render_mode is None:
            gym.logger.warn("render() called with render_mode=None; pass render_mode= to the constructor")
            return None
        if not self._ready:
            raise gym.error.ResetNeeded("call reset() before render()")
        if self.render_mode == "rgb_array":
            return self._batch.render_rgb(0)
        text = self._batch.render_ansi(0)
        if self.render_mode == "human":
            print(text + "\n")
            return None
        return text

    def _obs(self) -> Any:
        obs = self._batch.obs()
        return {k: v[0] for k, v in obs.items()} if self.mode == "walk" else obs[0]

    def _info(self) -> dict[str, Any]:
        return {"action_mask": self._batch.action_masks()[0]}


class MazeVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` `MazeEnv` episodes stepped together in numpy, with next-step autoreset.

    Observations, rewards, terminations, truncations and infos (``"action_mask"``/``"result"`` with
    their ``"_key"`` masks) equal those of ``SyncVectorEnv([lambda: MazeEnv(**kwargs)] * num_envs)``
    under the same seeds and actions: sub-environment ``i`` draws its mazes from a generator seeded
    like a single env reset with ``seed + i``, and the step after an episode ends resets it, returning
    reward 0, not terminated, not truncated and no ``"result"`` for it.

    Args:
        num_envs: number of parallel episodes.
        **kwargs: the arguments of `MazeEnv`.

    Reset options: those of `MazeEnv` (applied to every sub-environment) and ``"reset_mask"``, a
    ``(num_envs,)`` bool array selecting the sub-environments to reset.
    """

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": ["ansi", "rgb_array"],
        "render_fps": 8,
        "autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP,
    }

    def __init__(
        self,
        num_envs: int,
        mode: str = "walk",
        size: int | None = None,
        min_path_cells: int | None = None,
        source: object | None = None,
        shaped: bool = False,
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
    ):
        if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1:
            raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
        if render_mode == "human":
            raise ValueError("MazeVectorEnv renders 'ansi' or 'rgb_array' (one per sub-environment), not 'human'")
        self._source = _MazeSource(size, min_path_cells, source)
        self.size = self._source.size
        self.max_episode_steps = _check_common(mode, shaped, max_episode_steps, render_mode, self.size)
        self.num_envs, self.mode, self.shaped, self.render_mode = int(num_envs), mode, bool(shaped), render_mode
        self.single_observation_space, self.single_action_space = _spaces(mode, self.size)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._batch = _MazeBatch(self.num_envs, self.size, mode, self.shaped, self.max_episode_steps)
        self._rngs: list[np.random.Generator | None] = [None] * self.num_envs
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._ready = np.zeros(self.num_envs, dtype=bool)

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict]:
        """Reset every sub-environment (or those in ``options["reset_mask"]``); ``seed`` as in SyncVectorEnv."""
        seeds = [seed + i for i in range(self.num_envs)] if isinstance(seed, int) else seed
        seeds = [None] * self.num_envs if seeds is None else list(seeds)
        if len(seeds) != self.num_envs:
            raise ValueError(f"got {len(seeds)} seeds for num_envs={self.num_envs}")
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if mask is None:
            mask = np.ones(self.num_envs, dtype=bool)
        elif not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.shape != (self.num_envs,):
            raise ValueError(f"options['reset_mask'] must be a bool array of shape ({self.num_envs},)")
        for i in np.flatnonzero(mask):
            # Exactly what gym.Env.reset does to a single env's np_random.
            if seeds[i] is not None or self._rngs[i] is None:
                self._rngs[i], _ = seeding.np_random(seeds[i])
            self._batch.load(i, self._source.draw(self._rngs[i], options))
        self._autoreset[mask] = False
        self._ready[mask] = True
        return self._batch.obs(), self._infos(mask)

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict]:
        """Step every sub-environment; those that ended on the previous step are reset instead."""
        if not self._ready.all():
            raise gym.error.ResetNeeded("call reset() (without reset_mask the first time) before step()")
        restart = self._autoreset.copy()
        for i in np.flatnonzero(restart):
            self._batch.load(i, self._source.draw(self._rngs[i], None))
        rewards, terminated, truncated, results = self._batch.step(actions, ~restart)
        self._autoreset = terminated | truncated
        infos = self._infos(np.ones(self.num_envs, dtype=bool))
        if (~restart).any():
            # SyncVectorEnv only has a key once some sub-env's info has it; reset infos lack "result".
            infos["result"], infos["_result"] = results, ~restart
        return self._batch.obs(), rewards, terminated, truncated, infos

    def render(self) -> tuple[Any, ...] | None:
        """Return one rendering per sub-environment (``render_mode`` "ansi" or "rgb_array")."""
        if self.render_mode is None:
            gym.logger.warn("render() called with render_mode=None; pass render_mode= to the constructor")
            return None
        draw = self._batch.render_rgb if self.render_mode == "rgb_array" else self._batch.render_ansi
        return tuple(draw(i) for i in range(self.num_envs))

    def _infos(self, mask: np.ndarray) -> dict[str, Any]:
        masks = self._batch.action_masks()
        masks[~mask] = False
        return {"action_mask": masks, "_action_mask": mask.copy()}


def main() -> int:
    """Play one walk-mode episode with random legal moves and print the final maze."""
    env = MazeEnv(mode="walk", render_mode="ansi")
    _, info = env.reset(seed=0)
    total, steps, done = 0.0, 0, False
    while not done:
        legal = np.flatnonzero(info["action_mask"])
        _, reward, terminated, truncated, info = env.step(int(env.np_random.choice(legal)))
        total, steps, done = total + reward, steps + 1, terminated or truncated
    print(env.render())
    print(f"{'reached G' if terminated else 'truncated'} after {steps} steps, return {total:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
