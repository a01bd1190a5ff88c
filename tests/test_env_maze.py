"""Tests of the maze Gymnasium environments (`puzzles.envs.maze_env`): spaces, rewards, rendering, vector agreement.

Run with ``python -m pytest tests/test_env_maze.py -q`` (about 10 s).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from puzzles.envs import register_envs
from puzzles.envs.maze_env import (
    BLOCKED,
    CELL_PX,
    COLORS,
    GOAL_REWARD,
    INVALID,
    MOVES,
    SHAPING,
    SOLVED,
    STEP_COST,
    MazeEnv,
    MazeVectorEnv,
    default_min_path_cells,
)
from puzzles.errors import NoSolutionError, PuzzleError
from puzzles.maze import GOAL, OPEN, PATH, START, WALL, parse_maze, shortest_path, solve_maze

register_envs()

# A small hand-made maze: S top-left, G bottom-right, one wall column with a gap at the bottom.
TINY = "S#  \n #  \n    \n#  G"


def _moves_along(path: np.ndarray) -> list[int]:
    """Walk actions following consecutive (row, column) cells of a path."""
    steps = [tuple(d) for d in np.diff(path, axis=0)]
    return [[tuple(m) for m in MOVES].index(s) for s in steps]


@pytest.mark.parametrize("mode", ["walk", "draw"])
@pytest.mark.parametrize("size", [12, 8])
def test_check_env(mode: str, size: int) -> None:
    env = MazeEnv(mode=mode, size=size)
    check_env(env.unwrapped, skip_render_check=True)


def test_defaults_and_bad_arguments() -> None:
    assert default_min_path_cells(12) == 41 and default_min_path_cells(30) == 110
    assert 2 <= default_min_path_cells(8) <= 32
    env = MazeEnv()
    assert env.size == 12 and env.max_episode_steps == 4 * 144
    assert MazeEnv(mode="draw", size=8).max_episode_steps == 2 * 64
    for kwargs, words in [
        (dict(mode="fly"), "mode"),
        (dict(size=1), "size"),
        (dict(size="12"), "size"),
        (dict(min_path_cells=1000), "min_path_cells"),
        (dict(max_episode_steps=0), "max_episode_steps"),
        (dict(render_mode="svg"), "render_mode"),
        (dict(shaped="yes"), "shaped"),
    ]:
        with pytest.raises(ValueError, match=words):
            MazeEnv(**kwargs)
    with pytest.raises(ValueError, match="num_envs"):
        MazeVectorEnv(0)


@pytest.mark.parametrize("mode", ["walk", "draw"])
def test_seeded_determinism(mode: str) -> None:
    a, b = MazeEnv(mode=mode, size=8), MazeEnv(mode=mode, size=8)
    grid = (lambda o: o["grid"]) if mode == "walk" else (lambda o: o)
    oa, _ = a.reset(seed=3)
    ob, _ = b.reset(seed=3)
    assert np.array_equal(grid(oa), grid(ob))
    assert not np.array_equal(grid(a.reset(seed=4)[0]), grid(oa))
    b.reset(seed=4)
    # Unseeded resets continue the seeded stream identically.
    assert np.array_equal(grid(a.reset()[0]), grid(b.reset()[0]))


def test_given_maze_via_options() -> None:
    env = MazeEnv(mode="draw", size=4)
    maze = parse_maze(TINY)
    for given in (TINY, maze, maze.reshape(-1), solve_maze(maze)):
        obs, info = env.reset(options={"maze": given})
        assert np.array_equal(obs, maze.reshape(-1)), "PATH marks must be stripped"
        assert np.array_equal(info["action_mask"], maze.reshape(-1) == OPEN)
    with pytest.raises(PuzzleError):
        env.reset(options={"maze": "S#x \n #  \n    \n#  G"})
    with pytest.raises(PuzzleError):
        env.reset(options={"maze": parse_maze("S" + " " * 23 + "G" + " " * 11)})  # 6×6 into a 4×4 env
    with pytest.raises(NoSolutionError):
        env.reset(options={"maze": "S#  \n##  \n    \n   G"})
    with pytest.raises(ValueError, match="source"):
        env.reset(options={"index": 0})


def test_walk_rewards_and_results() -> None:
    env = MazeEnv(mode="walk", size=4)
    obs, info = env.reset(options={"maze": TINY})
    assert obs["position"].tolist() == [0, 0]
    # At (0, 0): down open, left off-grid, right wall, up off-grid.
    assert info["action_mask"].tolist() == [True, False, False, False]
    for action in (1, 2, 3):
        obs, reward, terminated, truncated, info = env.step(action)
        assert (reward, info["result"], obs["position"].tolist()) == (BLOCKED, "blocked", [0, 0])
    for action in (4, -1, 10**30, "x", 1.5, None, np.array([1, 2])):
        obs, reward, terminated, truncated, info = env.step(action)
        assert (reward, info["result"], terminated, truncated) == (BLOCKED, "invalid", False, False)
    obs, reward, terminated, _, info = env.step(np.int64(0))
    assert (reward, info["result"], obs["position"].tolist()) == (STEP_COST, "moved", [1, 0])
    assert "@" in env.unwrapped._batch.render_ansi(0)


def test_walking_the_shortest_path_reaches_goal() -> None:
    env = MazeEnv(mode="walk", size=12)
    obs, _ = env.reset(seed=11)
    path = shortest_path(obs["grid"].reshape(12, 12))
    rewards = []
    for i, action in enumerate(_moves_along(path)):
        obs, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
        assert obs["position"].tolist() == path[i + 1].tolist()
        assert terminated == (i == len(path) - 2) and not truncated
    assert info["result"] == "goal" and rewards[-1] == GOAL_REWARD
    assert all(r == STEP_COST for r in rewards[:-1])


def test_shaping_sign() -> None:
    env = MazeEnv(mode="walk", size=12, shaped=True)
    obs, _ = env.reset(seed=5)
    actions = _moves_along(shortest_path(obs["grid"].reshape(12, 12)))
    _, forward, *_ = env.step(actions[0])
    assert forward == pytest.approx(STEP_COST + SHAPING) and forward > 0
    _, back, *_ = env.step(3 - actions[0])  # the opposite move (down/up, left/right)
    assert back == pytest.approx(STEP_COST - SHAPING) and back < STEP_COST
    # Unshaped: the same moves cost the plain step cost.
    plain = MazeEnv(mode="walk", size=12)
    plain.reset(seed=5)
    assert plain.step(actions[0])[1] == STEP_COST


def test_draw_rewards_and_solving() -> None:
    env = MazeEnv(mode="draw", size=4)
    obs, _ = env.reset(options={"maze": TINY})
    maze = parse_maze(TINY).reshape(-1)
    s, g, wall = int(np.flatnonzero(maze == START)[0]), int(np.flatnonzero(maze == GOAL)[0]), 1
    for action in (wall, s, g, -1, 16, 10**30, "x"):
        obs2, reward, terminated, _, info = env.step(action)
        assert (reward, info["result"], terminated) == (INVALID, "invalid", False)
        assert np.array_equal(obs2, obs)
    obs, reward, _, _, info = env.step(3)
    assert (reward, info["result"], obs[3]) == (STEP_COST, "marked", PATH)
    obs, reward, _, _, info = env.step(3)
    assert (reward, info["result"], obs[3]) == (STEP_COST, "erased", OPEN)
    label = solve_maze(parse_maze(TINY)).reshape(-1)
    cells = np.flatnonzero(label == PATH)
    for k, cell in enumerate(cells):
        obs, reward, terminated, _, info = env.step(int(cell))
        done = k == len(cells) - 1
        assert terminated == done and info["result"] == ("solved" if done else "marked")
    assert reward == SOLVED and np.array_equal(obs, label)


def test_draw_solves_generated_label_and_any_shortest_path() -> None:
    env = MazeEnv(mode="draw", size=12)
    obs, _ = env.reset(seed=2)
    label = solve_maze(obs.reshape(12, 12)).reshape(-1)
    for cell in np.flatnonzero(label == PATH):
        obs, reward, terminated, *_ = env.step(int(cell))
    assert terminated and reward == SOLVED and np.array_equal(obs, label)
    # An open 3×3 room has several shortest paths; the non-label one counts too.
    env = MazeEnv(mode="draw", size=3)
    env.reset(options={"maze": "S  \n   \n  G"})
    assert solve_maze(parse_maze("S  \n   \n  G"))[0, 1] != PATH  # the label goes down first
    assert [env.step(cell)[4]["result"] for cell in (1, 2, 5)] == ["marked", "marked", "solved"]


@pytest.mark.parametrize("mode", ["walk", "draw"])
def test_truncation(mode: str) -> None:
    env = MazeEnv(mode=mode, size=4, max_episode_steps=3)
    env.reset(options={"maze": TINY})
    flags = [env.step(1)[2:4] for _ in range(3)]  # walk: blocked; draw: wall toggle
    assert flags == [(False, False), (False, False), (False, True)]


def test_step_before_reset() -> None:
    with pytest.raises(gym.error.ResetNeeded):
        MazeEnv().step(0)


def _oracle(obs: object, mode: str, size: int, rng: np.random.Generator, mask: np.ndarray, skill: float) -> int:
    """A solving action with probability ``skill``, else a random legal one, sometimes an out-of-range one."""
    u = rng.random()
    if u < 0.03:
        return -1 if mode == "walk" else size * size  # out of range
    if u > skill:
        return int(rng.choice(np.flatnonzero(mask))) if mask.any() else 0
    if mode == "walk":
        pos = obs["position"]
        grid = obs["grid"].reshape(size, size)
        if grid[pos[0], pos[1]] == GOAL:  # episode over; this action is ignored by the autoreset
            return 0
        path = shortest_path(_with_start(grid, pos))
        return _moves_along(path[:2])[0]
    grid = obs.reshape(size, size)
    label = solve_maze(grid)
    wrong = np.flatnonzero((grid == PATH) & (label != PATH))
    missing = np.flatnonzero((label == PATH) & (grid != PATH))
    return int(wrong[0] if len(wrong) else missing[0] if len(missing) else 0)


def _with_start(grid: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """The maze with S moved to the agent's position (for the oracle's BFS)."""
    g = grid.copy()
    g[g == START] = OPEN
    g[pos[0], pos[1]] = START
    return g


@pytest.mark.parametrize("mode", ["walk", "draw"])
def test_vector_env_agrees_with_sync(mode: str) -> None:
    n, size = 4, 8
    kwargs = dict(mode=mode, size=size, max_episode_steps=40, shaped=mode == "walk")
    sync = gym.vector.SyncVectorEnv([lambda: MazeEnv(**kwargs)] * n)
    vec = MazeVectorEnv(n, **kwargs)
    assert vec.observation_space == sync.observation_space and vec.action_space == sync.action_space
    so, si = sync.reset(seed=7)
    vo, vi = vec.reset(seed=7)
    rng = np.random.default_rng(0)
    seen = {"terminated": 0, "truncated": 0, "autoreset": 0}
    for _ in range(120):
        _assert_same(so, vo)
        _assert_same_info(si, vi)
        # Sub-envs 0 and 1 play mostly at random (they truncate), 2 and 3 mostly solve (they terminate).
        skills = (0.1, 0.3, 0.85, 0.9)
        actions = np.array([_oracle(_row(so, i), mode, size, rng, si["action_mask"][i], skills[i]) for i in range(n)])
        so, sr, st, su, si = sync.step(actions)
        vo, vr, vt, vu, vi = vec.step(actions)
        assert np.array_equal(sr, vr) and sr.dtype == vr.dtype
        assert np.array_equal(st, vt) and np.array_equal(su, vu)
        seen["terminated"] += int(st.sum())
        seen["truncated"] += int(su.sum())
        seen["autoreset"] += int(n - si["_result"].sum()) if "_result" in si else n
    _assert_same(so, vo)
    assert min(seen.values()) > 0, seen


def _row(obs: object, i: int) -> object:
    return {k: v[i] for k, v in obs.items()} if isinstance(obs, dict) else obs[i]


def _assert_same(a: object, b: object) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    else:
        assert a.dtype == b.dtype and np.array_equal(a, b)


def _assert_same_info(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert list(a[k].reshape(len(a[k]), -1).tolist()) == list(b[k].reshape(len(b[k]), -1).tolist()), k


def test_make_and_make_vec() -> None:
    env = gym.make("puzzles/Maze-v0", mode="draw", size=8)
    assert env.reset(seed=0)[0].shape == (64,)
    envs = gym.make_vec("puzzles/Maze-v0", num_envs=4, vectorization_mode="vector_entry_point", size=12)
    assert isinstance(envs.unwrapped, MazeVectorEnv)
    obs, info = envs.reset(seed=0)
    assert obs["grid"].shape == (4, 144) and info["action_mask"].shape == (4, 4)
    _, reward, _, _, info = envs.step(envs.action_space.sample())
    assert reward.shape == (4,) and set(info["result"]) <= {"moved", "blocked"}


def test_rgb_array_and_text_rendering(capsys: pytest.CaptureFixture) -> None:
    env = MazeEnv(mode="walk", size=4, render_mode="rgb_array")
    env.reset(options={"maze": TINY})
    env.step(0)  # to (1, 0): (0, 0) stays S, (1, 0) holds the agent

    def center(img: np.ndarray, r: int, c: int) -> tuple[int, ...]:
        return tuple(int(x) for x in img[r * CELL_PX + CELL_PX // 2, c * CELL_PX + CELL_PX // 2])

    img = env.render()
    assert img.shape == (4 * CELL_PX, 4 * CELL_PX, 3) and img.dtype == np.uint8
    assert center(img, 0, 0) == COLORS["start"] and center(img, 3, 3) == COLORS["goal"]
    assert center(img, 0, 1) == COLORS["wall"] and center(img, 0, 2) == COLORS["open"]
    assert center(img, 1, 0) == COLORS["agent"]
    env.step(0)  # the trail on (1, 0) turns path blue
    assert center(env.render(), 1, 0) == COLORS["path"]

    draw = MazeEnv(mode="draw", size=4, render_mode="ansi")
    draw.reset(options={"maze": TINY})
    draw.step(2)
    assert draw.render() == "S#o \n #  \n    \n#  G"
    human = MazeEnv(mode="walk", size=4, render_mode="human")
    human.reset(options={"maze": TINY})
    assert "@#" in capsys.readouterr().out
    vec = MazeVectorEnv(2, size=4, render_mode="rgb_array", max_episode_steps=5)
    vec.reset(options={"maze": TINY})
    assert [f.shape for f in vec.render()] == [(4 * CELL_PX, 4 * CELL_PX, 3)] * 2


def test_source_dataset(tmp_path) -> None:
    from puzzles.build import build
    from puzzles.formats import read_split

    out = tmp_path / "maze"
    build("maze-small", out, train=4, test=4, aug=0, seed=0, progress=False)
    rows = np.asarray(read_split(out, "test").inputs)
    env = MazeEnv(mode="draw", source=out)
    assert env.size == 12
    seen = {tuple(env.reset(seed=s)[0]) for s in range(12)}
    assert seen <= {tuple(r) for r in rows.astype(np.int64)} and len(seen) > 1
    obs, _ = env.reset(options={"index": 2})
    assert np.array_equal(obs, rows[2])
    with pytest.raises(ValueError, match="index"):
        env.reset(options={"index": 4})
    with pytest.raises(ValueError, match="size"):
        MazeEnv(source=out, size=8)
    with pytest.raises(ValueError, match="min_path_cells"):
        MazeEnv(source=out, min_path_cells=20)
    vec = MazeVectorEnv(2, mode="walk", source=out)
    assert vec.reset(seed=0)[0]["grid"].shape == (2, 144)
    assert WALL in rows


def test_vector_env_all_autoreset_and_reset_mask() -> None:
    kwargs = dict(mode="draw", size=8, max_episode_steps=1)
    sync = gym.vector.SyncVectorEnv([lambda: MazeEnv(**kwargs)] * 3)
    vec = MazeVectorEnv(3, **kwargs)
    for env in (sync, vec):
        env.reset(seed=[1, 2, 3])
    actions = np.array([0, 9, 64])
    outs = [(sync.step(actions), vec.step(actions)) for _ in range(2)]
    for s, v in outs:
        _assert_same(s[0], v[0])
        for k in (1, 2, 3):
            assert np.array_equal(s[k], v[k])
        _assert_same_info(s[4], v[4])
    assert outs[0][1][3].all() and "result" not in outs[1][1][4]  # all truncated, then all reset
    mask = np.array([False, True, False])
    so, si = sync.reset(seed=5, options={"reset_mask": mask.copy()})
    vo, vi = vec.reset(seed=5, options={"reset_mask": mask.copy()})
    _assert_same(so, vo)
    _assert_same_info(si, vi)
