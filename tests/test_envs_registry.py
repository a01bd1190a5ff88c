"""Registry-driven checks of every env registered under ``puzzles/``.

Each passes Gymnasium's checker, is deterministic under a seed, and its native vector version agrees with N
copies of the single env.

A new env registered in `puzzles.envs` is covered here without editing this file. Run:
``python -m pytest tests/test_envs_registry.py``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import puzzles  # noqa: F401 -- registers the envs

ENV_IDS = sorted(env_id for env_id in gym.registry if env_id.startswith("puzzles/"))


def test_registry_has_the_suite_envs() -> None:
    assert {"puzzles/Sudoku-v0", "puzzles/Maze-v0"} <= set(ENV_IDS)


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("render_mode", [None, "ansi", "rgb_array"])
def test_check_env(env_id: str, render_mode: str | None) -> None:
    env = gym.make(env_id, render_mode=render_mode)
    check_env(env.unwrapped, skip_render_check=render_mode is None)
    if render_mode == "rgb_array":
        env.reset(seed=0)
        frame = env.render()
        assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3


def _masked_action(space, info: dict, rng: np.random.Generator):
    mask = np.asarray(info["action_mask"], dtype=bool)
    legal = np.argwhere(mask)
    if len(legal) == 0:
        return space.sample()
    pick = legal[rng.integers(len(legal))]
    return pick if len(pick) > 1 else int(pick[0])


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_seeded_determinism(env_id: str) -> None:
    def rollout(seed: int) -> list:
        env = gym.make(env_id)
        obs, info = env.reset(seed=seed)
        rng = np.random.default_rng(0)
        trace = [str(obs)]
        for _ in range(25):
            obs, reward, terminated, truncated, info = env.step(_masked_action(env.action_space, info, rng))
            trace.append((str(obs), reward, terminated, truncated, info["result"]))
            if terminated or truncated:
                obs, info = env.reset()
        return trace

    assert rollout(3) == rollout(3)
    assert rollout(3) != rollout(4)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_native_vector_env_agrees_with_sync(env_id: str) -> None:
    n = 3
    native = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point")
    sync = gym.vector.SyncVectorEnv([lambda: gym.make(env_id).unwrapped for _ in range(n)])
    o1, i1 = native.reset(seed=11)
    o2, i2 = sync.reset(seed=11)
    rng = np.random.default_rng(1)
    for _ in range(30):
        actions = np.stack(
            [_masked_action(native.single_action_space, {"action_mask": m}, rng) for m in i1["action_mask"]]
        )
        o1, r1, t1, u1, i1 = native.step(actions)
        o2, r2, t2, u2, i2 = sync.step(actions)
        for a, b in ((o1, o2), (r1, r2), (t1, t2), (u1, u2), (i1["action_mask"], i2["action_mask"])):
            if isinstance(a, dict):
                assert all(np.array_equal(a[k], b[k]) for k in a)
            else:
                assert np.array_equal(a, b)
