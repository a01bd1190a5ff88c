"""Shared pytest fixtures: the optional reference data in ``../shared/data`` and small grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


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
