"""Tests of the ``puzzles/Sudoku-v0`` Gymnasium environment and its native vector version.

Run: ``python -m pytest tests/test_env_sudoku.py -q`` (a few seconds).
"""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from puzzles.envs import register_envs
from puzzles.envs import sudoku_env as se
from puzzles.envs.render import BLACK, BLUE, FONT_5X7, glyph
from puzzles.envs.sudoku_env import SudokuEnv, SudokuVectorEnv, decode_action, encode_action
from puzzles.errors import DatasetError, NoSolutionError, PuzzleConstraintError, PuzzleFormatError
from puzzles.sudoku_solver import solve

register_envs()

PUZZLE6 = "1.....\n..3...\n......\n...2..\n....5.\n.4...6"  # checked below to be solvable


def _first_legal(info):
    return tuple(int(v) for v in np.argwhere(info["action_mask"])[0])


@pytest.mark.parametrize(
    "kwargs", [{"box": (2, 2)}, {"box": (2, 3)}, {"box": (3, 3)}, {"box": (2, 3), "teaching": True}]
)
def test_check_env(kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # render_mode=None warnings from the checker
        check_env(SudokuEnv(**kwargs).unwrapped)
        check_env(SudokuEnv(render_mode="rgb_array", **kwargs).unwrapped)


def test_spaces_and_reset_info():
    env = SudokuEnv(box=(2, 3))
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs) and obs.shape == (36,) and obs.dtype == np.int64
    assert obs.min() >= 1 and obs.max() <= 7
    assert np.array_equal(obs, env.board.reshape(-1) + 1)
    assert info["action_mask"].shape == (6, 6, 6) and info["action_mask"].dtype == bool
    assert info["givens"] == int((env.board != 0).sum()) and info["index"] == -1
    # the solution is consistent with the givens and every solution digit is legal now
    board, sol = env.board, env.solution
    assert np.all(board[board != 0] == sol[board != 0])
    r, c = np.argwhere(board == 0)[0]
    assert info["action_mask"][r, c, sol[r, c] - 1]


def test_determinism():
    def run(seed):
        env = SudokuEnv(box=(3, 3))
        obs, info = env.reset(seed=seed)
        traj = [obs]
        rng = np.random.default_rng(0)
        for _ in range(20):
            legal = np.argwhere(info["action_mask"])
            obs, rew, term, _trunc, info = env.step(legal[rng.integers(len(legal))])
            traj += [obs, rew]
            if term:
                break
        return traj

    a, b, c = run(5), run(5), run(6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


def test_encode_decode():
    n = 6
    for i in range(n**3):
        assert encode_action(*decode_action(i, n), n) == i
    mask = np.zeros((n, n, n), bool)
    mask[2, 4, 1] = True
    assert np.flatnonzero(mask.reshape(-1))[0] == encode_action(2, 4, 1, n)


def test_given_puzzle_and_errors():
    env = SudokuEnv(box=(2, 3))
    obs, info = env.reset(options={"puzzle": PUZZLE6})
    assert info["givens"] == 6
    assert np.array_equal(env.solution, solve(env.board, box=(2, 3)))
    grid = env.board
    for form in (grid, grid.reshape(-1), grid.tolist()):
        obs2, _ = env.reset(options={"puzzle": form})
        assert np.array_equal(obs, obs2)
    with pytest.raises(PuzzleFormatError, match="81 cells"):
        env.reset(options={"puzzle": "." * 81})
    with pytest.raises(PuzzleFormatError, match="shape"):
        env.reset(options={"puzzle": np.zeros((4, 4), int)})
    bad = grid.copy()
    bad[0, 1] = bad[0, 0]
    with pytest.raises(PuzzleConstraintError):
        env.reset(options={"puzzle": bad})
    with pytest.raises(PuzzleFormatError, match="no blank"):
        env.reset(options={"puzzle": env.solution})
    # consistent givens but no solution: row 1 leaves only cell (0, 5), which column 6 forbids
    with pytest.raises(NoSolutionError):
        env.reset(options={"puzzle": "12345.\n......\n.....6\n......\n......\n......"})
    with pytest.raises(ValueError, match="dataset source"):
        env.reset(options={"index": 0})
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"bogus": 1})


def test_constructor_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown profile"):
        SudokuEnv(profile="nightmare")
    with pytest.raises(PuzzleFormatError, match="unsupported box"):
        SudokuEnv(box=(3, 2))
    with pytest.raises(PuzzleFormatError, match="pair"):
        SudokuEnv(box=3)
    with pytest.raises(ValueError, match="needs 9x9"):
        SudokuEnv(box=(2, 3), profile="medium")
    with pytest.raises(DatasetError, match="not found"):
        SudokuEnv(source=tmp_path / "missing")
    with pytest.raises(ValueError, match="render_mode"):
        SudokuEnv(render_mode="video")
    with pytest.raises(ValueError, match="max_episode_steps"):
        SudokuEnv(max_episode_steps=0)


def test_reward_cases():
    env = SudokuEnv(box=(2, 3))
    _, info = env.reset(options={"puzzle": PUZZLE6})
    board, sol = env.board, env.solution
    # out of range / malformed actions: invalid, board unchanged, no exception
    for action in [(6, 0, 0), (0, -1, 0), (0, 0, 6), (0, 0), "abc", (0.5, 0, 0), None, 10**6, [[0, 1]]]:
        _obs, rew, term, _trunc, info = env.step(action)
        assert (rew, info["result"], term) == (se.INVALID, "invalid", False)
        assert np.array_equal(env.board, board)
    # occupied cell (a given)
    _, rew, _, _, info = env.step((0, 0, 1))
    assert (rew, info["result"]) == (se.INVALID, "occupied")
    # conflict: digit 1 in row 0 is a given at (0, 0)
    _, rew, _, _, info = env.step((0, 1, 0))
    assert (rew, info["result"]) == (se.CONFLICT, "conflict") and np.array_equal(env.board, board)
    # legal placement of the solution digit, as a flat index
    r, c = map(int, np.argwhere(board == 0)[0])
    _, rew, term, _, info = env.step(encode_action(r, c, sol[r, c] - 1, 6))
    assert (rew, info["result"], term) == (se.STEP_COST, "placed", False)
    assert env.board[r, c] == sol[r, c] and info["blanks"] == int((board == 0).sum()) - 1


def test_teaching_wrong():
    env = SudokuEnv(box=(2, 3), teaching=True)
    _, info = env.reset(options={"puzzle": PUZZLE6})
    board, sol = env.board, env.solution
    assert info["action_mask"].sum() == (board == 0).sum()  # one digit per blank: the solution's
    legal = se.legal_masks(board[None], (2, 3))[0]
    wrong = next((r, c, k) for r, c, k in np.argwhere(legal) if k + 1 != sol[r, c])
    _, rew, term, _, info = env.step(wrong)
    assert (rew, info["result"], term) == (se.WRONG, "wrong", False) and np.array_equal(env.board, board)


@pytest.mark.parametrize("teaching", [False, True])
def test_solve_by_playing_solution(teaching):
    env = SudokuEnv(box=(3, 3), teaching=teaching)
    _, info = env.reset(seed=1)
    sol = env.solution
    cells = np.argwhere(env.board == 0)
    for i, (r, c) in enumerate(cells):
        assert info["action_mask"][r, c, sol[r, c] - 1]
        _, rew, term, trunc, info = env.step(np.array([r, c, sol[r, c] - 1]))
        last = i == len(cells) - 1
        assert term == last and not trunc
        assert rew == (se.SOLVED if last else se.STEP_COST)
    assert info["result"] == "solved" and np.array_equal(env.board, sol)


def test_dead_end():
    # A 4x4 puzzle with six blanks: play a legal digit that differs from the solution, then keep
    # placing legal digits; some such line of play must end with blanks left and no legal move.
    env = SudokuEnv(box=(2, 2))
    sol = np.array([[1, 2, 3, 4], [3, 4, 1, 2], [2, 1, 4, 3], [4, 3, 2, 1]])
    puzzle = sol.copy()
    puzzle[0, 0] = puzzle[0, 1] = puzzle[1, 0] = puzzle[1, 1] = 0  # top-left box blank
    puzzle[2, 0] = puzzle[3, 1] = 0
    found = False
    for r, c, k in np.argwhere(se.legal_masks(puzzle[None].astype(np.int8), (2, 2))[0]):
        env.reset(options={"puzzle": puzzle})
        if k + 1 == env.solution[r, c]:
            continue
        _, rew, term, _, info = env.step((r, c, k))
        while not term:
            legal = np.argwhere(info["action_mask"])
            _, rew, term, _, info = env.step(legal[0])
        if info["result"] == "dead_end":
            assert rew == se.DEAD_END and not info["action_mask"].any() and (env.board == 0).any()
            found = True
            break
    assert found


def test_truncation():
    env = SudokuEnv(box=(2, 2), max_episode_steps=3)
    env.reset(seed=0)
    results = [env.step((9, 9, 9))[3] for _ in range(3)]
    assert results == [False, False, True]
    assert SudokuEnv(box=(2, 3)).max_episode_steps == 72


def test_render_modes(capsys):
    env = SudokuEnv(box=(2, 3), render_mode="rgb_array")
    env.reset(options={"puzzle": PUZZLE6})
    r, c = map(int, np.argwhere(env.board == 0)[0])
    env.step((r, c, env.solution[r, c] - 1))
    img = env.render()
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape == (6 * se.CELL_PIXELS + 1,) * 2 + (3,)
    colors = {tuple(p) for p in img.reshape(-1, 3)}
    assert BLUE in colors and BLACK in colors and (255, 255, 255) in colors
    cell = se.CELL_PIXELS

    def inside(r, c):  # cell interior minus the thick box lines that overlap its edge
        return {
            tuple(p) for p in img[r * cell + 3 : (r + 1) * cell - 2, c * cell + 3 : (c + 1) * cell - 2].reshape(-1, 3)
        }

    placed, given = inside(r, c), inside(0, 0)  # cell (0, 0) holds the given 1
    assert BLUE in placed and BLACK not in placed and BLACK in given and BLUE not in given

    text = SudokuEnv(box=(2, 3), render_mode="ansi")
    text.reset(options={"puzzle": PUZZLE6})
    text.step((r, c, env.solution[r, c] - 1))
    s = text.render()
    assert isinstance(s, str) and "*" + str(env.solution[r, c]) in s and len(s.splitlines()) == 8
    human = SudokuEnv(box=(2, 3), render_mode="human")
    human.reset(seed=0)
    assert "|" in capsys.readouterr().out
    assert FONT_5X7.shape == (10, 7, 5) and glyph(8, 3).shape == (21, 15)


def _sync(n, **kwargs):
    return gym.vector.SyncVectorEnv([lambda: SudokuEnv(**kwargs)] * n)


def _assert_infos_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
        assert np.asarray(a[k]).dtype == np.asarray(b[k]).dtype, k


@pytest.mark.parametrize("kwargs", [{"box": (2, 2), "max_episode_steps": 7}, {"box": (2, 3), "teaching": True}])
def test_vector_matches_sync(kwargs):
    n = 4
    vec, ref = SudokuVectorEnv(n, **kwargs), _sync(n, **kwargs)
    assert vec.observation_space == ref.observation_space and vec.action_space == ref.action_space
    o1, i1 = vec.reset(seed=11)
    o2, i2 = ref.reset(seed=11)
    assert np.array_equal(o1, o2)
    _assert_infos_equal(i1, i2)
    rng = np.random.default_rng(0)
    resets = 0
    for t in range(60):
        actions = np.zeros((n, 3), dtype=np.int64)
        for e in range(n):
            legal = np.argwhere(i1["action_mask"][e])
            if t % 7 == 3 or len(legal) == 0:
                actions[e] = rng.integers(0, 7, 3)  # sometimes invalid / conflicting / out of range
            else:
                actions[e] = legal[rng.integers(len(legal))]
        s1, s2 = vec.step(actions), ref.step(actions)
        for x, y in zip(s1[:4], s2[:4], strict=True):
            assert np.array_equal(x, y) and x.dtype == y.dtype
        _assert_infos_equal(s1[4], s2[4])
        i1 = s1[4]
        resets += int("givens" in i1)
    assert resets > 0  # autoresets happened


def test_vector_dataset_source_matches_sync(tmp_path):
    from puzzles.build import build

    build("sudoku6", tmp_path / "d", train=8, test=8, aug=0, seed=0, progress=False)
    vec, ref = SudokuVectorEnv(3, source=tmp_path / "d"), _sync(3, source=tmp_path / "d")
    o1, i1 = vec.reset(seed=[1, 2, 3])
    o2, i2 = ref.reset(seed=[1, 2, 3])
    assert np.array_equal(o1, o2) and np.array_equal(i1["index"], i2["index"])
    o1, _ = vec.reset(options={"index": 5})
    assert (o1 == o1[0]).all()


def test_make_and_make_vec():
    env = gym.make("puzzles/Sudoku-v0", box=(2, 3), render_mode="ansi")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (36,) and isinstance(env.render(), str)
    envs = gym.make_vec("puzzles/Sudoku-v0", num_envs=4, vectorization_mode="vector_entry_point", box=(2, 3))
    assert isinstance(envs.unwrapped, SudokuVectorEnv)
    assert envs.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    obs, info = envs.reset(seed=0)
    assert obs.shape == (4, 36) and info["action_mask"].shape == (4, 6, 6, 6)
    obs, rew, _term, _trunc, info = envs.step(envs.action_space.sample())
    assert rew.shape == (4,) and info["result"].shape == (4,)
    envs.close()


def test_dataset_folder_source(tmp_path):
    from puzzles.build import build
    from puzzles.formats import read_split, tokens_to_grids

    build("sudoku6", tmp_path / "d", train=8, test=8, aug=0, seed=0, progress=False)
    env = SudokuEnv(source=tmp_path / "d")
    assert env.box == (2, 3) and env.n == 6
    split = read_split(tmp_path / "d", "test")
    seen = set()
    for s in range(20):
        obs, info = env.reset(seed=s)
        assert np.array_equal(obs, split.inputs[info["index"]].astype(np.int64))
        seen.add(info["index"])
    assert len(seen) > 3
    _, info = env.reset(options={"index": 2})
    assert info["index"] == 2
    assert np.array_equal(env.solution, tokens_to_grids(split.labels[2:3], "sudoku")[0])
    with pytest.raises(ValueError, match="index"):
        env.reset(options={"index": 8})
    with pytest.raises(PuzzleFormatError, match="does not match"):
        SudokuEnv(source=tmp_path / "d", box=(3, 3))


def test_csv_source(tmp_path):
    from puzzles.formats import PuzzleTable, write_csv
    from puzzles.sudoku_generator import generate_sudoku

    batch = generate_sudoku(5, box=(3, 3), profile="easy", seed=0, workers=0, progress=False)
    path = tmp_path / "p.csv"
    write_csv(path, PuzzleTable("sudoku", batch.puzzles, batch.solutions, batch.ratings))
    env = SudokuEnv(source=path, teaching=True)
    _, info = env.reset(seed=0)
    i = info["index"]
    assert np.array_equal(env.board, batch.puzzles[i]) and np.array_equal(env.solution, batch.solutions[i])
    with pytest.raises(DatasetError):
        SudokuEnv(source=tmp_path / "p.txt")
