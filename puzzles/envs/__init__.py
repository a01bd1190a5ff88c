"""Gymnasium environments over the benchmark puzzles, registered as ``puzzles/Sudoku-v0`` and ``puzzles/Maze-v0``.

Registration happens when `puzzles` is imported (the env modules themselves load on first ``make``)::

    import gymnasium as gym
    import puzzles  # noqa: F401 -- registers the envs
    env = gym.make("puzzles/Sudoku-v0", box=(2, 3), profile="easy", render_mode="ansi")
    obs, info = env.reset(seed=0)
    envs = gym.make_vec("puzzles/Maze-v0", num_envs=8, vectorization_mode="vector_entry_point", size=12)

Files: ``sudoku_env.py`` (`SudokuEnv`, `SudokuVectorEnv`), ``maze_env.py`` (`MazeEnv`, `MazeVectorEnv`),
``render.py`` (shared ``rgb_array`` drawing).
"""

from __future__ import annotations

ENV_IDS = ("puzzles/Sudoku-v0", "puzzles/Maze-v0")


def register_envs() -> None:
    """Register the suite's environments with Gymnasium (idempotent)."""
    from gymnasium.envs.registration import register, registry

    specs = {
        "puzzles/Sudoku-v0": ("puzzles.envs.sudoku_env:SudokuEnv", "puzzles.envs.sudoku_env:SudokuVectorEnv"),
        "puzzles/Maze-v0": ("puzzles.envs.maze_env:MazeEnv", "puzzles.envs.maze_env:MazeVectorEnv"),
    }
    for env_id, (entry, vector_entry) in specs.items():
        if env_id not in registry:
            register(id=env_id, entry_point=entry, vector_entry_point=vector_entry, max_episode_steps=None)
