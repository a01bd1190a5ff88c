"""Play a puzzle in the terminal: as a person, with the exact solver, or with a trained checkpoint.

    python -m puzzles.play sudoku --agent human --box 2x3 --seed 0        # type "row col digit", undo, hint, quit
    python -m puzzles.play sudoku --agent solver --seed 3 --gif solve.gif
    python -m puzzles.play sudoku --agent model --checkpoint runs/my-run --box 2x3 --seed 1
    python -m puzzles.play maze --agent human --size 12                   # walk with w/a/s/d
    python -m puzzles.play maze --mode draw --agent model --checkpoint runs/maze-run --frames frames/

The game runs through the Gymnasium envs (``puzzles/Sudoku-v0``, ``puzzles/Maze-v0``), so what you see is what
an RL agent sees. ``undo`` replays the episode without its last move; ``hint`` shows the exact solver's next
move. At the end it prints whether the puzzle was solved, in how many steps, and how many moves were rejected;
``--json`` prints the same as JSON. ``--gif``/``--frames`` save the ``rgb_array`` frames of the episode.
Exit status: 0 when the episode ended, 2 for bad arguments (one-line error).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from puzzles.agents import AGENTS, MOVE_NAMES, HumanAgent, SolverAgent, env_kind, make_agent, sudoku_grid
from puzzles.errors import PuzzleError

SOLVED_RESULTS = ("solved", "goal")


def _box(text: str) -> tuple[int, int]:
    try:
        r, c = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"box must look like 3x3 or 2x3, got {text!r}") from None
    return r, c


def make_env(args: argparse.Namespace):
    """The env the arguments describe (``render_mode="ansi"``; frames are drawn with ``rgb_array`` on demand)."""
    import gymnasium as gym

    from puzzles.envs import register_envs

    register_envs()
    kw: dict[str, Any] = {"render_mode": "ansi"}
    if args.source:
        kw["source"] = args.source
    if args.max_steps:
        kw["max_episode_steps"] = args.max_steps
    if args.game == "sudoku":
        kw.update(box=args.box, profile=args.profile, teaching=args.teaching)
        return gym.make("puzzles/Sudoku-v0", **kw)
    kw.update(mode=args.mode, size=args.size, shaped=args.shaped)
    return gym.make("puzzles/Maze-v0", **kw)


def _frame(env) -> np.ndarray:
    u = env.unwrapped
    mode, u.render_mode = u.render_mode, "rgb_array"
    try:
        return np.asarray(u.render())
    finally:
        u.render_mode = mode


def _describe(kind: str, action: Any, n: int) -> str:
    if kind == "sudoku":
        r, c, k = (int(v) for v in np.asarray(action).reshape(-1)[:3])
        return f"{r + 1} {c + 1} {k + 1}"
    if kind == "maze-walk":
        return MOVE_NAMES[int(action)]
    return f"{int(action) // n + 1} {int(action) % n + 1}"


def _initial_puzzle(kind: str, obs: Any) -> dict:
    # What reset(options=...) needs to replay this very puzzle (for undo).
    if kind == "sudoku":
        return {"puzzle": sudoku_grid(obs)}
    grid = np.asarray(obs["grid"] if isinstance(obs, dict) else obs)
    return {"maze": grid.copy()}


def _hint(kind: str, obs: Any, info: dict, start: dict, hinter: SolverAgent, n: int) -> str:
    """The exact solver's next move; for Sudoku, first any placed digit that is not the solution's."""
    if kind == "sudoku":
        from puzzles.sudoku_solver import solve

        solution = np.asarray(solve(start["puzzle"]))
        board = sudoku_grid(obs)
        wrong = np.argwhere((board > 0) & (board != solution))
        if len(wrong):
            r, c = (int(v) + 1 for v in wrong[0])
            return f"the {board[r - 1, c - 1]} at row {r} column {c} is not the solution's digit: undo"
    try:
        return _describe(kind, hinter.act(obs, info), n)
    except PuzzleError as e:
        return f"none ({e})"


def play(args: argparse.Namespace, read=input, write=print) -> dict:
    """Run one episode as the arguments say; returns the summary (also printed)."""
    env = make_env(args)
    kind = env_kind(env)
    if args.agent == "human":
        agent: Any = HumanAgent(kind, read=read, write=write)
    elif args.agent == "solver":
        agent = SolverAgent(kind)
    else:
        # Any other registered agent plays a checkpoint (`puzzles.agents.AGENTS`; "model" is recursive_models').
        if not args.checkpoint:
            raise PuzzleError(f"--agent {args.agent} needs --checkpoint RUN_DIR (a recursive_models run or checkpoint)")
        agent = make_agent(args.agent, kind, checkpoint=args.checkpoint, device=args.device)
    hinter = SolverAgent(kind)
    obs, info = env.reset(seed=args.seed)
    n = env.unwrapped.size if kind != "sudoku" else math.isqrt(np.asarray(obs).size)
    start = _initial_puzzle(kind, obs)
    agent.reset()
    frames = [_frame(env)] if (args.gif or args.frames) else []
    history: list[Any] = []
    total, rejected, result = 0.0, 0, None
    terminated = truncated = quit_ = False
    show = args.agent == "human" or args.verbose
    if show:
        write(env.render())
    while not (terminated or truncated):
        action = agent.act(obs, info)
        if isinstance(action, str):  # a human's command
            if action == "quit":
                quit_ = True
                break
            if action == "hint":
                write(f"  hint: {_hint(kind, obs, info, start, hinter, n)}")
                continue
            if action == "undo":
                if not history:
                    write("  nothing to undo")
                    continue
                history.pop()
                obs, info = env.reset(seed=args.seed, options=start)
                hinter.reset()
                total, rejected = 0.0, 0
                for a in history:
                    obs, reward, terminated, truncated, info = env.step(a)
                    total += float(reward)
                    rejected += info.get("result") in ("invalid", "occupied", "conflict", "wrong", "blocked")
                write(env.render())
                continue
        obs, reward, terminated, truncated, info = env.step(action)
        history.append(action)
        total += float(reward)
        result = info.get("result")
        if result in ("invalid", "occupied", "conflict", "wrong", "blocked"):
            rejected += 1
            if show:
                write(f"  rejected ({result}): {_describe(kind, action, n)}")
        if frames:
            frames.append(_frame(env))
        if show:
            write(env.render())
    summary = {
        "game": kind,
        "agent": args.agent,
        "seed": args.seed,
        "solved": result in SOLVED_RESULTS,
        "steps": len(history),
        "rejected_moves": rejected,
        "return": round(total, 4),
        "ended": "solved" if result in SOLVED_RESULTS else "quit" if quit_ else "truncated" if truncated else result,
    }
    if not show:
        write(env.render())
    _save_frames(frames, args)
    env.close()
    if args.json:
        write(json.dumps(summary))
    else:
        verdict = "solved" if summary["solved"] else f"not solved ({summary['ended']})"
        write(f"{verdict} in {summary['steps']} steps, {rejected} rejected moves, return {summary['return']}")
    return summary


def _save_frames(frames: list[np.ndarray], args: argparse.Namespace) -> None:
    if not frames:
        return
    from PIL import Image

    images = [Image.fromarray(f.astype(np.uint8)) for f in frames]
    if args.frames:
        out = Path(args.frames)
        out.mkdir(parents=True, exist_ok=True)
        for i, im in enumerate(images):
            im.save(out / f"frame_{i:04d}.png")
    if args.gif:
        images[0].save(args.gif, save_all=True, append_images=images[1:], duration=args.frame_ms, loop=0)


def main(argv: list[str] | None = None, read=input, write=print) -> int:
    """Parse arguments and play one episode."""
    p = argparse.ArgumentParser(prog="python -m puzzles.play", description=__doc__.splitlines()[0])
    p.add_argument("game", choices=["sudoku", "maze"])
    p.add_argument("--agent", choices=sorted(AGENTS), default="human", help="who plays (puzzles.agents.AGENTS)")
    p.add_argument("--checkpoint", help="recursive_models run directory or checkpoint (for --agent model)")
    p.add_argument("--seed", type=int, default=0, help="which puzzle to draw (reproducible)")
    p.add_argument("--source", help="dataset folder or CSV to draw puzzles from (default: the generator)")
    p.add_argument("--box", type=_box, help="Sudoku box, e.g. 3x3 (9x9, the default), 2x3 (6x6), 2x2 (4x4)")
    p.add_argument("--profile", default="easy", help="Sudoku generator profile: any, easy, medium, extreme")
    p.add_argument("--teaching", action="store_true", help="Sudoku: only placements of the solution are legal")
    p.add_argument("--mode", choices=["walk", "draw"], default="walk", help="maze: walk from S, or draw the path")
    p.add_argument("--size", type=int, default=12, help="maze side")
    p.add_argument("--shaped", action="store_true", help="maze walk: reward progress towards G")
    p.add_argument("--max-steps", type=int, help="truncate the episode after this many steps")
    p.add_argument("--device", default="cpu", help="device of the model agent")
    p.add_argument("--gif", help="write the episode's frames as an animated GIF")
    p.add_argument("--frames", help="write the episode's frames as PNG files into this folder")
    p.add_argument("--frame-ms", type=int, default=300, help="GIF frame duration")
    p.add_argument("--verbose", action="store_true", help="print the board after every move of a non-human agent")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = p.parse_args(argv)
    try:
        play(args, read=read, write=write)
    except (ValueError, FileNotFoundError) as e:  # PuzzleError is a ValueError; so are bad env arguments
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (EOFError, KeyboardInterrupt):
        write("bye")
    return 0


if __name__ == "__main__":
    sys.exit(main())
