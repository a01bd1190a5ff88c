"""Tests of puzzles.augment: Sudoku symmetries keep grids valid; dihedral ids match HRM's."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import pattern_solution
from hypothesis import given
from hypothesis import strategies as st

from puzzles.augment import (
    apply_sudoku_permutation,
    augment_sudoku,
    augment_sudoku_copies,
    dihedral,
    inverse_dihedral,
    sudoku_permutation,
)
from puzzles.datasets import sudoku_solutions_valid
from puzzles.errors import PuzzleFormatError

BOXES = [(2, 2), (2, 3), (3, 2), (3, 3)]


@pytest.mark.parametrize("box", BOXES)
@given(seed=st.integers(0, 2**32 - 1))
def test_sudoku_augmentation_preserves_validity(box, seed):
    rng = np.random.default_rng(seed)
    sol = pattern_solution(box)
    puzzle = np.where(rng.random(sol.shape) < 0.6, 0, sol).astype(np.int8)
    p, s = augment_sudoku(puzzle, sol, rng, box)
    assert sudoku_solutions_valid(p[None], s[None], box).all()
    assert (p == 0).sum() == (puzzle == 0).sum()  # blanks stay blanks, givens stay givens
    ps, ss = augment_sudoku_copies(puzzle, sol, rng, 16, box)
    assert ps.shape == (16, *sol.shape)
    assert sudoku_solutions_valid(ps, ss, box).all()
    assert ((ps == 0).sum(axis=(1, 2)) == (puzzle == 0).sum()).all()


def test_sudoku_augmentation_covers_the_group():
    # Over many draws every cell reaches every row band and digits get relabelled.
    rng = np.random.default_rng(0)
    sol = pattern_solution((3, 3))
    copies, _ = augment_sudoku_copies(sol, sol, rng, 2000)
    assert len({c.tobytes() for c in copies}) == 2000
    firsts = {int(c[0, 0]) for c in copies}
    assert firsts == set(range(1, 10))


def test_transpose_only_for_square_boxes():
    rng = np.random.default_rng(0)
    for _ in range(50):
        assert sudoku_permutation(rng, (2, 3))[2] is False
    assert any(sudoku_permutation(rng, (3, 3))[2] for _ in range(50))


def test_apply_matches_definition():
    rng = np.random.default_rng(1)
    g = pattern_solution((3, 3))
    rp, cp, t, dm = sudoku_permutation(rng, (3, 3))
    out = apply_sudoku_permutation(g, rp, cp, t, dm)
    src = g.T if t else g
    for i in range(9):
        for j in range(9):
            assert out[i, j] == dm[src[rp[i], cp[j]]]


def test_augment_shape_error():
    with pytest.raises(PuzzleFormatError, match=r"shape \(9, 9\)"):
        augment_sudoku(np.zeros((9, 9), np.int8), np.zeros((9, 9), np.int8), np.random.default_rng(0), (2, 3))


def test_dihedral_group():
    g = np.arange(12).reshape(3, 4)
    outs = [dihedral(g, k) for k in range(8)]
    assert len({(o.shape, o.tobytes()) for o in outs}) == 8
    # Same numbering as HRM's dataset/common.py dihedral_transform.
    ref = [
        g,
        np.rot90(g, 1),
        np.rot90(g, 2),
        np.rot90(g, 3),
        np.fliplr(g),
        np.flipud(g),
        g.T,
        np.fliplr(np.rot90(g, 1)),
    ]
    for k in range(8):
        assert (outs[k] == ref[k]).all()
        assert (inverse_dihedral(outs[k], k) == g).all()
    batch = np.stack([g, g + 1])
    assert (dihedral(batch, 1)[1] == np.rot90(g + 1)).all()
    with pytest.raises(ValueError, match=r"0\.\.7"):
        dihedral(g, 8)
