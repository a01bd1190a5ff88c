"""Gymnasium environment ``puzzles/Sudoku-v0``: fill a Sudoku one digit at a time.

An episode is one puzzle, generated on the fly (:func:`puzzles.sudoku_generator.generate_sudoku`,
seeded from the env's ``np_random``) or drawn from a dataset (an HRM/TRM folder's test split or a
Hugging Face CSV). Each step places one digit; placements that break a rule are refused with a
penalty, so the board always stays consistent. :class:`SudokuVectorEnv` is a native batched
version that agrees step for step with ``SyncVectorEnv`` over :class:`SudokuEnv`.

Usage::

    import gymnasium as gym
    from puzzles.envs import register_envs
    register_envs()
    env = gym.make("puzzles/Sudoku-v0", box=(2, 3), render_mode="ansi")
    obs, info = env.reset(seed=0)
    mask = info["action_mask"]                         # (6, 6, 6) bool: legal (row, col, digit-1)
    r, c, k = np.argwhere(mask)[0]
    obs, reward, terminated, truncated, info = env.step((r, c, k))
    print(env.render())
    envs = gym.make_vec("puzzles/Sudoku-v0", num_envs=8, vectorization_mode="vector_entry_point", box=(2, 3))

    python -m puzzles.envs.sudoku_env      # plays one random masked episode and prints the board
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from puzzles.envs.render import BLACK, BLUE, draw_digit, draw_grid, new_canvas
from puzzles.errors import DatasetError, PuzzleFormatError
from puzzles.sudoku import BOX_SHAPES, as_grid, parse_sudoku

# ---------------------------------------------------------------------------------------------
# rewards and results
# ---------------------------------------------------------------------------------------------

#: Reward for placing a legal digit that does not finish the puzzle (a small cost per move).
STEP_COST = -0.01
#: Action outside the board / digit range, malformed, or aimed at an occupied cell; board unchanged.
INVALID = -0.1
#: Digit already present in the cell's row, column or box; board unchanged.
CONFLICT = -0.1
#: Teaching mode only: legal digit that differs from the solution; board unchanged.
WRONG = -0.1
#: Last blank filled (the board is complete and valid); replaces the step cost; terminates.
SOLVED = 1.0
#: Legal digit placed but no legal placement is left on an incomplete board; terminates.
DEAD_END = -1.0

#: Values of ``info["result"]`` after a step, indexed by the internal result code.
RESULTS = ("placed", "invalid", "occupied", "conflict", "wrong", "solved", "dead_end")
_PLACED, _INVALID, _OCCUPIED, _CONFLICT, _WRONG, _SOLVED, _DEAD_END = range(len(RESULTS))

#: Generator profiles that work for every box shape (the others need 9x9, see ``generate_sudoku``).
DEFAULT_PROFILE = "easy"
#: Pixels per cell of the ``rgb_array`` rendering.
CELL_PIXELS = 36


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def encode_action(r: int, c: int, k: int, n: int) -> int:
    """Flat index of action ``(row r, column c, digit k + 1)`` on an ``n x n`` board.

    The order is that of ``info["action_mask"].reshape(-1)``, so a flat ``Discrete(n**3)`` policy can
    use the flattened mask directly.
    """
    return (int(r) * n + int(c)) * n + int(k)


def decode_action(i: int, n: int) -> tuple[int, int, int]:
    """Inverse of :func:`encode_action`: ``(r, c, k)`` of flat index ``i``."""
    r, rest = divmod(int(i), n * n)
    c, k = divmod(rest, n)
    return r, c, k


def legal_masks(boards: np.ndarray, box: tuple[int, int], solutions: np.ndarray | None = None) -> np.ndarray:
    """Legal placements of a batch of boards.

    Args:
        boards: ``(B, N, N)`` ints, 0 = blank.
        box: box shape ``(rows, cols)``.
        solutions: ``(B, N, N)``; when given (teaching mode) only the solution's digit is legal.

    Returns:
        ``(B, N, N, N)`` bool; ``[b, r, c, k]`` is True iff cell ``(r, c)`` of board ``b`` is blank and
        digit ``k + 1`` is in none of its row, column and box.
    """
    b, n, _ = boards.shape
    br, bc = box
    onehot = boards[..., None] == np.arange(1, n + 1, dtype=boards.dtype)  # (B, N, N, N): cell holds k+1
    row_has = onehot.any(axis=2)  # (B, N rows, N digits)
    col_has = onehot.any(axis=1)  # (B, N cols, N digits)
    box_has = onehot.reshape(b, n // br, br, n // bc, bc, n).any(axis=(2, 4))  # (B, bands, stacks, N)
    box_has = box_has.repeat(br, axis=1).repeat(bc, axis=2)  # back to one entry per cell
    mask = (boards == 0)[..., None] & ~row_has[:, :, None, :] & ~col_has[:, None, :, :] & ~box_has
    if solutions is not None:
        mask &= solutions[..., None] == np.arange(1, n + 1, dtype=solutions.dtype)
    return mask


def _parse_actions(actions: Any, count: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Turn ``count`` actions into ``(rck (count, 3) int64, ok (count,) bool)``; never raises.

    Each action is ``(r, c, k)`` or a flat index (:func:`encode_action`). Anything malformed or out of
    range gets ``ok = False`` (and the reward :data:`INVALID`) rather than an exception, so a buggy
    policy shows up in the rewards instead of killing a long run.
    """
    rck = np.zeros((count, 3), dtype=np.int64)
    ok = np.zeros(count, dtype=bool)
    try:
        a = np.asarray(actions)
        if a.dtype == object or a.dtype == bool or not np.issubdtype(a.dtype, np.number):
            return rck, ok
        if count == 1 and a.shape in ((3,), ()):
            a = a.reshape(1, *a.shape)
        if a.shape == (count,):  # flat indices
            flat = a.astype(np.float64)
            whole = np.isfinite(flat) & (flat == np.round(flat)) & (flat >= 0) & (flat < n**3)
            idx = np.where(whole, flat, 0).astype(np.int64)
            rck = np.stack([idx // (n * n), idx // n % n, idx % n], axis=1)
            return rck, whole
        if a.shape != (count, 3):
            return rck, ok
        f = a.astype(np.float64)
        whole = (np.isfinite(f) & (f == np.round(f)) & (f >= 0) & (f < n)).all(axis=1)
        rck = np.where(whole[:, None], f, 0).astype(np.int64)
        return rck, whole
    except (TypeError, ValueError, OverflowError):
        return rck, ok


def _apply_actions(
    boards: np.ndarray,
    solutions: np.ndarray,
    rck: np.ndarray,
    ok: np.ndarray,
    box: tuple[int, int],
    teaching: bool,
    rewards: dict[int, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Apply one action to each board in place (vectorised), shared by both env classes.

    Returns:
        ``(reward (B,) float64, result code (B,) int, terminated (B,) bool, action masks (B, N, N, N))``.
    """
    b = boards.shape[0]
    br, bc = box
    ar = np.arange(b)
    r, c, k = rck[:, 0], rck[:, 1], rck[:, 2]
    d = (k + 1).astype(boards.dtype)
    occupied = ok & (boards[ar, r, c] != 0)
    free = ok & ~occupied
    r0, c0 = r // br * br, c // bc * bc
    box_cells = boards[
        ar[:, None, None], r0[:, None, None] + np.arange(br)[None, :, None], c0[:, None, None] + np.arange(bc)
    ]
    clash = (
        (boards[ar, r, :] == d[:, None]).any(axis=1)
        | (boards[ar, :, c] == d[:, None]).any(axis=1)
        | (box_cells.reshape(b, -1) == d[:, None]).any(axis=1)
    )
    conflict = free & clash
    wrong = free & ~clash & (solutions[ar, r, c] != d) if teaching else np.zeros(b, dtype=bool)
    place = free & ~clash & ~wrong
    boards[ar[place], r[place], c[place]] = d[place]
    masks = legal_masks(boards, box, solutions if teaching else None)
    full = (boards != 0).all(axis=(1, 2))
    solved = place & full  # every placement is legal, so a full board is a valid solution
    dead = place & ~full & ~masks.reshape(b, -1).any(axis=1)
    code = np.full(b, _INVALID, dtype=np.int64)
    code[occupied] = _OCCUPIED
    code[conflict] = _CONFLICT
    code[wrong] = _WRONG
    code[place] = _PLACED
    code[solved] = _SOLVED
    code[dead] = _DEAD_END
    reward = np.array([rewards[int(x)] for x in code], dtype=np.float64)
    return reward, code, solved | dead, masks


def _check_reward_table(step_cost, invalid, conflict, wrong, solved, dead_end) -> dict[int, float]:
    table = {
        _PLACED: step_cost,
        _INVALID: invalid,
        _OCCUPIED: invalid,
        _CONFLICT: conflict,
        _WRONG: wrong,
        _SOLVED: solved,
        _DEAD_END: dead_end,
    }
    for code, v in table.items():
        if not isinstance(v, int | float) or not np.isfinite(v):
            raise ValueError(f"reward for {RESULTS[code]!r} must be a finite number, got {v!r}")
    return {k: float(v) for k, v in table.items()}


class _PuzzleSource:
    """Where episodes come from: the generator, or a table of puzzles read once from a dataset.

    Attributes:
        box: box shape of every puzzle.
        n: board side.
        puzzles, solutions: ``(rows, N, N)`` int8 when reading a dataset, else ``None``.
    """

    def __init__(self, box: tuple[int, int] | None, profile: str, source: str | Path | None):
        from puzzles.sudoku_generator import PROFILES

        self.profile = profile
        self.puzzles: np.ndarray | None = None
        self.solutions: np.ndarray | None = None
        if box is not None:
            try:
                br, bc = (int(v) for v in box)
            except (TypeError, ValueError):
                raise PuzzleFormatError(f"box must be a pair (rows, cols) such as (3, 3), got {box!r}") from None
            if (br, bc) not in BOX_SHAPES.values():
                raise PuzzleFormatError(
                    f"unsupported box {box!r}; use one of {sorted(BOX_SHAPES.values())} (4x4, 6x6 or 9x9 boards)"
                )
            box = (br, bc)
        if source is None:
            if profile not in PROFILES:
                raise ValueError(f"unknown profile {profile!r}; choose from {sorted(PROFILES)}")
            self.box = box or (3, 3)
            self.n = self.box[0] * self.box[1]
            if self.n != 9 and profile not in ("any", "easy"):
                raise ValueError(
                    f"profile {profile!r} needs 9x9 boards (smaller sudokus never need guesses); use 'any' or 'easy'"
                )
            return
        self._load(Path(source), box)

    def _load(self, path: Path, box: tuple[int, int] | None) -> None:
        from puzzles.formats import read_csv, read_split, sudoku_box_of, tokens_to_grids

        if not path.exists():
            raise DatasetError(f"source not found: {path} (give a dataset folder or a .csv file)")
        if path.is_dir():
            split = read_split(path, "test", mmap=False)
            n = int(np.sqrt(split.inputs.shape[1]))
            if n * n != split.inputs.shape[1] or split.metadata.get("vocab_size") != n + 2:
                raise DatasetError(f"{path} is not a sudoku dataset (seq_len {split.inputs.shape[1]})")
            puzzles = tokens_to_grids(split.inputs, "sudoku")
            solutions = tokens_to_grids(split.labels, "sudoku")
            data_box = sudoku_box_of(path if (path / "test").is_dir() else path.parent, n)
        elif path.suffix.lower() == ".csv":
            table = read_csv(path, kind="sudoku")
            puzzles, solutions = table.questions, table.answers
            n = puzzles.shape[1]
            data_box = BOX_SHAPES.get(n)
            if data_box is None:
                raise DatasetError(f"{path}: {n}x{n} sudokus are not supported")
        else:
            raise DatasetError(f"source {path} is neither a dataset folder nor a .csv file")
        if box is not None and box != data_box:
            raise PuzzleFormatError(f"box {box} does not match the source's {n}x{n} puzzles with boxes {data_box}")
        self.box, self.n = data_box, n
        self.puzzles = np.ascontiguousarray(puzzles, dtype=np.int8)
        self.solutions = np.ascontiguousarray(solutions, dtype=np.int8)

    def draw(self, rng: np.random.Generator, options: dict | None) -> tuple[np.ndarray, np.ndarray, int]:
        """Return ``(puzzle, solution, dataset row or -1)`` for a new episode."""
        options = dict(options or {})
        unknown = sorted(set(options) - {"puzzle", "index"})
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}; supported: 'puzzle', 'index'")
        if "puzzle" in options and "index" in options:
            raise ValueError("give either options['puzzle'] or options['index'], not both")
        if "puzzle" in options:
            return (*self._given(options["puzzle"]), -1)
        if self.puzzles is not None:
            rows = len(self.puzzles)
            if "index" in options:
                i = options["index"]
                if not isinstance(i, int | np.integer) or not 0 <= int(i) < rows:
                    raise ValueError(f"options['index'] must be an integer in 0..{rows - 1}, got {i!r}")
                i = int(i)
            else:
                i = int(rng.integers(rows))
            return self.puzzles[i].copy(), self.solutions[i].copy(), i
        if "index" in options:
            raise ValueError("options['index'] needs a dataset source (source=folder or .csv)")
        from puzzles.sudoku_generator import generate_sudoku

        seed = int(rng.integers(2**31 - 1))
        batch = generate_sudoku(1, box=self.box, profile=self.profile, seed=seed, workers=0, progress=False)
        return batch.puzzles[0].copy(), batch.solutions[0].copy(), -1

    def _given(self, puzzle: Any) -> tuple[np.ndarray, np.ndarray]:
        from puzzles.sudoku_solver import solve

        n = self.n
        if isinstance(puzzle, str):
            grid = parse_sudoku(puzzle, box=self.box)
        else:
            a = np.asarray(puzzle)
            if a.shape == (n * n,):
                a = a.reshape(n, n)
            if a.shape != (n, n):
                raise PuzzleFormatError(
                    f"options['puzzle'] has shape {a.shape}; this env plays {n}x{n} boards "
                    f"(box {self.box}): give shape ({n}, {n}) or ({n * n},), digits 0..{n}, 0 = blank"
                )
            grid = as_grid(a, self.box)
        if (grid != 0).all():
            raise PuzzleFormatError("options['puzzle'] has no blank cell; there is nothing to play")
        return grid.astype(np.int8), solve(grid, box=self.box).astype(np.int8)


def _obs(boards: np.ndarray) -> np.ndarray:
    """HRM tokens of boards ``(..., N, N)``: blank 1, digit d -> d + 1, flattened to ``(..., N*N)`` int64."""
    return boards.reshape(*boards.shape[:-2], -1).astype(np.int64) + 1


def render_ansi(board: np.ndarray, givens: np.ndarray, box: tuple[int, int]) -> str:
    """Text board with box separators; givens as `` 5``, placed digits as ``*5``, blanks as `` .``."""
    n = board.shape[0]
    br, bc = box
    lines = []
    for r in range(n):
        if r and r % br == 0:
            lines.append("-+-".join(["-" * (3 * bc - 1)] * (n // bc)))
        tokens = [" ." if v == 0 else (f" {v}" if givens[r, c] else f"*{v}") for c, v in enumerate(board[r].tolist())]
        lines.append(" | ".join(" ".join(tokens[s : s + bc]) for s in range(0, n, bc)))
    return "\n".join(lines)


def render_rgb(board: np.ndarray, givens: np.ndarray, box: tuple[int, int], cell: int = CELL_PIXELS) -> np.ndarray:
    """Image of a board: white cells, thick box borders, givens black, placed digits blue.

    Returns:
        ``(N * cell + 1, N * cell + 1, 3)`` uint8.
    """
    n = board.shape[0]
    img = new_canvas(n, n, cell)
    draw_grid(img, n, n, cell, thick_every=box)
    for r, c in np.argwhere(board != 0):
        draw_digit(img, r, c, int(board[r, c]), cell, BLACK if givens[r, c] else BLUE)
    return img


# ---------------------------------------------------------------------------------------------
# single environment
# ---------------------------------------------------------------------------------------------


class SudokuEnv(gym.Env):
    """Fill a Sudoku one digit per step.

    Spaces:
        observation: ``Box(0, N + 1, shape=(N*N,), int64)``, the board row-major as HRM tokens
            (blank 1, digit d -> d + 1; 0, the pad token, never occurs).
        action: ``MultiDiscrete([N, N, N])`` = ``(row, col, k)`` placing digit ``k + 1``. A plain
            tuple/list/array of 3 ints or a flat index (:func:`encode_action`) is accepted too;
            malformed or out-of-range actions are "invalid", never an exception.

    Rewards (module constants, overridable per env): :data:`STEP_COST` for a legal placement,
    :data:`SOLVED` for the placement that completes the board, :data:`INVALID` (out of range or
    occupied cell), :data:`CONFLICT` (digit already in the row/column/box), :data:`WRONG` (teaching
    mode, legal but not the solution's digit), :data:`DEAD_END` (legal placement after which an
    incomplete board has no legal placement). Refused actions leave the board unchanged.

    Termination: solved or dead end. Truncation: after ``max_episode_steps`` steps (every step
    counts, refused ones included). Stepping after the end is allowed but meaningless.

    Info (reset and step): ``action_mask`` ``(N, N, N)`` bool, True where the placement is legal
    (teaching mode: legal and equal to the solution). Reset adds ``givens`` (number of givens) and
    ``index`` (dataset row, -1 otherwise); step adds ``result`` (one of :data:`RESULTS`) and
    ``blanks`` (blank cells left).

    Args:
        box: box shape (2, 2), (2, 3) or (3, 3); default (3, 3), or the source's box when ``source``
            is given (an explicit box must then match it).
        profile: generator profile ("easy", "any"; "medium" and the slow "extreme" need 9x9).
        source: dataset folder (its test split is played) or Hugging Face ``.csv``; puzzles drawn
            uniformly with ``np_random``. ``None`` generates puzzles.
        teaching: only the solution's digit is legal; others get :data:`WRONG`.
        max_episode_steps: truncation horizon; default ``2 * N * N``.
        render_mode: "ansi", "rgb_array", "human" or None.
        step_cost, invalid, conflict, wrong, solved, dead_end: reward overrides.

    Reset options: ``{"puzzle": text | (N, N) | (N*N,) array}`` plays that puzzle (0 = blank; the
    exact solver provides the reference solution, the first one found if it is not unique), or
    ``{"index": i}`` plays row ``i`` of a dataset source.

    Raises:
        PuzzleFormatError, ValueError, DatasetError: bad box, unknown profile, missing source.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "rgb_array", "human"], "render_fps": 4}

    def __init__(
        self,
        box: tuple[int, int] | None = None,
        profile: str = DEFAULT_PROFILE,
        source: str | Path | None = None,
        teaching: bool = False,
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
        step_cost: float = STEP_COST,
        invalid: float = INVALID,
        conflict: float = CONFLICT,
        wrong: float = WRONG,
        solved: float = SOLVED,
        dead_end: float = DEAD_END,
    ):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self._source = _PuzzleSource(box, profile, source)
        self.box = self._source.box
        self.n = n = self._source.n
        self.teaching = bool(teaching)
        self.max_episode_steps = _check_horizon(max_episode_steps, n)
        self._rewards = _check_reward_table(step_cost, invalid, conflict, wrong, solved, dead_end)
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0, n + 1, shape=(n * n,), dtype=np.int64)
        self.action_space = spaces.MultiDiscrete([n, n, n])
        self._board = np.zeros((1, n, n), dtype=np.int8)
        self._solution = np.zeros((1, n, n), dtype=np.int8)
        self._givens = np.zeros((n, n), dtype=bool)
        self._steps = 0

    @property
    def board(self) -> np.ndarray:
        """Current board ``(N, N)`` int8, 0 = blank (a copy)."""
        return self._board[0].copy()

    @property
    def solution(self) -> np.ndarray:
        """Reference solution ``(N, N)`` int8 of the current puzzle (a copy)."""
        return self._solution[0].copy()

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        """Start a new puzzle; see the class docstring for ``options``."""
        super().reset(seed=seed)
        puzzle, solution, index = self._source.draw(self.np_random, options)
        self._board[0] = puzzle
        self._solution[0] = solution
        self._givens = puzzle != 0
        self._steps = 0
        mask = legal_masks(self._board, self.box, self._solution if self.teaching else None)[0]
        info = {"action_mask": mask, "givens": int(self._givens.sum()), "index": int(index)}
        if self.render_mode == "human":
            self.render()
        return _obs(self._board[0]), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Place a digit; returns ``(obs, reward, terminated, truncated, info)``."""
        rck, ok = _parse_actions(action, 1, self.n)
        reward, code, terminated, masks = _apply_actions(
            self._board, self._solution, rck, ok, self.box, self.teaching, self._rewards
        )
        self._steps += 1
        info = {"action_mask": masks[0], "result": RESULTS[int(code[0])], "blanks": int((self._board[0] == 0).sum())}
        if self.render_mode == "human":
            self.render()
        truncated = self._steps >= self.max_episode_steps
        return _obs(self._board[0]), float(reward[0]), bool(terminated[0]), bool(truncated), info

    def render(self) -> str | np.ndarray | None:
        """Render per ``render_mode``: ansi string, rgb ``(H, W, 3)`` uint8, or print (human)."""
        if self.render_mode is None:
            gym.logger.warn("render() called with render_mode=None; pass render_mode to the constructor")
            return None
        if self.render_mode == "rgb_array":
            return render_rgb(self._board[0], self._givens, self.box)
        text = render_ansi(self._board[0], self._givens, self.box)
        if self.render_mode == "human":
            print(text + "\n")
            return None
        return text


def _check_horizon(max_episode_steps: int | None, n: int) -> int:
    if max_episode_steps is None:
        return 2 * n * n
    if not isinstance(max_episode_steps, int | np.integer) or max_episode_steps < 1:
        raise ValueError(f"max_episode_steps must be a positive integer or None, got {max_episode_steps!r}")
    return int(max_episode_steps)


# ---------------------------------------------------------------------------------------------
# vector environment
# ---------------------------------------------------------------------------------------------


class SudokuVectorEnv(VectorEnv):
    """``num_envs`` Sudoku boards stepped together with numpy (next-step autoreset).

    Agrees step for step with ``SyncVectorEnv([lambda: SudokuEnv(**kwargs)] * num_envs)``: each
    sub-env has its own generator seeded as ``SudokuEnv.np_random`` would be (``reset(seed=s)`` seeds
    env ``i`` with ``s + i``), puzzles are drawn by the same function, and the step after an
    episode ends resets that board and returns reward 0, terminated and truncated False. Rule checks
    and action masks are computed for all boards at once.

    Spaces: batched versions of :class:`SudokuEnv`'s (observation ``(num_envs, N*N)``, action
    ``(num_envs, 3)``; flat indices ``(num_envs,)`` are accepted too). Infos follow Gymnasium's
    vector convention (arrays with a leading ``num_envs`` axis plus ``_key`` bool masks).

    Args:
        num_envs: number of boards.
        **kwargs: as :class:`SudokuEnv`.
    """

    metadata: ClassVar[dict[str, Any]] = {**SudokuEnv.metadata, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int, **kwargs: Any):
        if not isinstance(num_envs, int | np.integer) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        # One template env validates the arguments and holds the shared puzzle source and spaces.
        self._template = SudokuEnv(**kwargs)
        t = self._template
        self.num_envs = int(num_envs)
        self.box, self.n, self.teaching = t.box, t.n, t.teaching
        self.max_episode_steps = t.max_episode_steps
        self.render_mode = t.render_mode
        self.metadata = dict(type(self).metadata)
        self.single_observation_space = t.observation_space
        self.single_action_space = t.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        n, b = self.n, self.num_envs
        self._boards = np.zeros((b, n, n), dtype=np.int8)
        self._solutions = np.zeros((b, n, n), dtype=np.int8)
        self._givens = np.zeros((b, n, n), dtype=bool)
        self._masks = np.zeros((b, n, n, n), dtype=bool)
        self._steps = np.zeros(b, dtype=np.int64)
        self._autoreset = np.zeros(b, dtype=bool)
        self._rngs: list[np.random.Generator | None] = [None] * b

    def _rng(self, i: int) -> np.random.Generator:
        if self._rngs[i] is None:  # as gym.Env.np_random: an unseeded env seeds itself from entropy
            self._rngs[i], _ = seeding.np_random()
        return self._rngs[i]

    def _reset_one(self, i: int, seed: int | None, options: dict | None) -> dict:
        if seed is not None:
            self._rngs[i], _ = seeding.np_random(seed)
        puzzle, solution, index = self._template._source.draw(self._rng(i), options)
        self._boards[i], self._solutions[i], self._givens[i] = puzzle, solution, puzzle != 0
        self._steps[i] = 0
        self._autoreset[i] = False
        sol = self._solutions[i : i + 1] if self.teaching else None
        self._masks[i] = legal_masks(self._boards[i : i + 1], self.box, sol)[0]
        return {"action_mask": self._masks[i], "givens": int(self._givens[i].sum()), "index": int(index)}

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict | None = None
    ) -> tuple[np.ndarray, dict]:
        """Reset all boards (or those in ``options["reset_mask"]``); ``seed`` as ``SyncVectorEnv``."""
        b = self.num_envs
        if seed is None:
            seeds = [None] * b
        elif isinstance(seed, int | np.integer):
            seeds = [int(seed) + i for i in range(b)]
        else:
            seeds = list(seed)
            if len(seeds) != b:
                raise ValueError(f"a list of seeds must have num_envs={b} entries, got {len(seeds)}")
        options = dict(options) if options else None
        which = np.ones(b, dtype=bool)
        if options is not None and "reset_mask" in options:
            which = np.asarray(options.pop("reset_mask"))
            if which.shape != (b,) or which.dtype != np.bool_ or not which.any():
                raise ValueError(f"options['reset_mask'] must be a bool array of shape ({b},) with a True entry")
        infos: dict = {}
        for i in np.flatnonzero(which):
            infos = self._add_info(infos, self._reset_one(int(i), seeds[i], options), int(i))
        return _obs(self._boards), infos

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        """Step every board; boards that ended on the previous step are reset instead."""
        b = self.num_envs
        rck, ok = _parse_actions(actions, b, self.n)
        resetting = self._autoreset.copy()
        live = np.flatnonzero(~resetting)
        rewards = np.zeros(b, dtype=np.float64)
        terminated = np.zeros(b, dtype=bool)
        truncated = np.zeros(b, dtype=bool)
        codes = np.zeros(b, dtype=np.int64)
        if len(live):
            boards = self._boards[live]
            rew, code, term, masks = _apply_actions(
                boards, self._solutions[live], rck[live], ok[live], self.box, self.teaching, self._template._rewards
            )
            self._boards[live], self._masks[live] = boards, masks
            rewards[live], codes[live], terminated[live] = rew, code, term
            self._steps[live] += 1
            truncated[live] = self._steps[live] >= self.max_episode_steps
        blanks = (self._boards == 0).sum(axis=(1, 2))
        infos: dict = {}
        for i in range(b):
            if resetting[i]:
                info = self._reset_one(i, None, None)
            else:
                info = {"action_mask": self._masks[i], "result": RESULTS[codes[i]], "blanks": int(blanks[i])}
            infos = self._add_info(infos, info, i)
        self._autoreset = terminated | truncated
        return _obs(self._boards), rewards, terminated, truncated, infos

    def render(self) -> tuple | None:
        """Per-board renders (as ``SyncVectorEnv.render``): a tuple of strings or images."""
        if self.render_mode is None:
            gym.logger.warn("render() called with render_mode=None; pass render_mode to the constructor")
            return None
        if self.render_mode == "rgb_array":
            return tuple(render_rgb(self._boards[i], self._givens[i], self.box) for i in range(self.num_envs))
        texts = tuple(render_ansi(self._boards[i], self._givens[i], self.box) for i in range(self.num_envs))
        if self.render_mode == "human":
            print("\n\n".join(texts) + "\n")
            return None
        return texts


def main() -> None:
    """Play one episode with random legal moves on a 6x6 board and print it."""
    env = SudokuEnv(box=(2, 3), render_mode="ansi")
    _, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    total, done = 0.0, False
    while not done:
        legal = np.argwhere(info["action_mask"])
        _, reward, terminated, truncated, info = env.step(legal[rng.integers(len(legal))])
        total += reward
        done = terminated or truncated
    print(env.render())
    print(f"result={info['result']} return={total:.2f}")


if __name__ == "__main__":
    main()
