"""Shared pytest fixtures: the optional reference data in ``../shared/data``, small grids, a leaderboard test split."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
#: the vocabulary of the LM tests' synthetic corpus
LM_WORDS = "the king queen lord crown night sword love death friend speak thou thee art hath doth fair".split()


def write_synthetic_works(root: Path, lines_per_work: int, works: int = 6) -> Path:
    """``root/work{i}.txt``: ``works`` small 'works' of ``lines_per_work`` random sentences of `LM_WORDS` (seed 0).

    The LM tests' corpus; the same arguments always write the same bytes (recorded losses depend on them).
    """
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(works):
        lines = [" ".join(rng.choice(LM_WORDS, size=int(rng.integers(3, 9)))).capitalize() + "."
                 for _ in range(lines_per_work)]  # fmt: skip
        (root / f"work{i}.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The reference data folder; tests that use it are skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not found at {SHARED_DATA}")
    return SHARED_DATA


def pattern_solution(box: tuple[int, int]) -> np.ndarray:
    """A valid complete Sudoku grid for any box shape, from the classic shifting pattern."""
    br, bc = box
    n = br * bc
    r = np.arange(n)[:, None]
    c = np.arange(n)[None, :]
    return ((bc * (r % br) + r // br + c) % n + 1).astype(np.int8)


@pytest.fixture(scope="session")
def lb_data(tmp_path_factory):
    """The sudoku6@1 test split, built once; ``$LEADERBOARD_DATA`` points at it for the whole session."""
    root = tmp_path_factory.mktemp("lbdata")
    old = os.environ.get("LEADERBOARD_DATA")
    os.environ["LEADERBOARD_DATA"] = str(root)
    from leaderboard.tasks import get_task, prepare_test_data

    prepare_test_data(get_task("sudoku6"), progress=False)
    yield root
    if old is None:
        os.environ.pop("LEADERBOARD_DATA", None)
    else:
        os.environ["LEADERBOARD_DATA"] = old
