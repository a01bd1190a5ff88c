"""Tests of puzzles.sudoku_generator: uniqueness, seeding, profiles.

Run: ``pytest tests/test_sudoku_generator.py`` (about 15 s on 2 cores; ``-m slow`` adds a
1,000-puzzle "extreme" run compared with the real rating and givens distributions, about a minute).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from puzzles.sudoku import check_solution, is_solution
from puzzles.sudoku_generator import (
    _EXTREME_GIVENS_COUNTS,
    _EXTREME_RATING_COUNTS,
    PROFILES,
    DifficultyProfile,
    _extreme_targets,
    _grid_key,
    _grid_taken,
    _on_own_grid,
    _random_symmetry,
    _relax_and_constrain,
    _value_move,
    generate_sudoku,
    givens_stats,
    rating_stats,
    two_sample,
)
from puzzles.sudoku_solver import _scratch9, count_solutions, rate_batch, solve_batch

BOXES = [(2, 2), (2, 3), (3, 3)]


@pytest.mark.parametrize("box", BOXES)
@pytest.mark.parametrize("minimal", [False, True])
def test_generated_puzzles_are_unique_and_consistent(box, minimal):
    b = generate_sudoku(12, box=box, profile="any", seed=7, workers=1, progress=False, minimal=minimal)
    n = box[0] * box[1]
    assert b.puzzles.shape == (12, n, n) and b.puzzles.dtype == np.int8
    sols, counts, _guesses = solve_batch(b.puzzles, limit=2, box=box)
    assert (counts == 1).all()
    assert np.array_equal(sols, b.solutions)
    assert np.array_equal(rate_batch(b.puzzles, box=box), b.ratings)
    for p, s in zip(b.puzzles, b.solutions, strict=True):
        assert is_solution(s, box)
        check_solution(p, s, box)
    if minimal:
        # no single given can be removed without losing uniqueness
        for p in b.puzzles[:4]:
            idx = np.argwhere(p != 0)
            trials = np.repeat(p[None], len(idx), axis=0)
            trials[np.arange(len(idx)), idx[:, 0], idx[:, 1]] = 0
            assert (solve_batch(trials, limit=2, box=box)[1] == 2).all()


def test_reproducible_and_independent_of_workers():
    a = generate_sudoku(10, profile="medium", seed=11, workers=1, progress=False)
    b = generate_sudoku(10, profile="medium", seed=11, workers=2, progress=False)
    c = generate_sudoku(10, profile="medium", seed=12, workers=1, progress=False)
    assert np.array_equal(a.puzzles, b.puzzles) and np.array_equal(a.ratings, b.ratings)
    assert not np.array_equal(a.puzzles, c.puzzles)
    # item i depends only on (seed, i): a prefix of a longer batch is the shorter batch
    d = generate_sudoku(4, profile="medium", seed=11, workers=1, progress=False)
    assert np.array_equal(d.puzzles, a.puzzles[:4])


def test_profiles_hit_their_bins():
    b = generate_sudoku(12, profile="medium", seed=0, workers=1, progress=False)
    assert ((b.ratings >= 1) & (b.ratings <= 7)).all()
    e = generate_sudoku(12, profile="easy", seed=0, workers=1, progress=False)
    assert (e.ratings == 0).all()
    target = DifficultyProfile("t", ((8, 15),), (1.0,), "test")
    h = generate_sudoku(3, profile=target, seed=0, workers=1, progress=False)
    assert ((h.ratings >= 8) & (h.ratings <= 15)).all()
    assert (h.target_bins == [8, 15]).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown profile"):
        generate_sudoku(1, profile="nope", progress=False)
    with pytest.raises(ValueError, match="solved by propagation"):
        generate_sudoku(1, box=(2, 3), profile="extreme", progress=False)
    with pytest.raises(ValueError, match="sum to 1"):
        DifficultyProfile("bad", ((0, 1),), (0.5,), "")


def test_extreme_profile_matches_real_sample():
    p = PROFILES["extreme"]
    assert abs(sum(p.probs) - 1) < 1e-9
    # the bins are the real sample's distribution: 13% zero guesses, ~49% with 16 or more
    assert p.probs[0] == pytest.approx(0.13)
    assert sum(pr for (lo, _), pr in zip(p.bins, p.probs, strict=True) if lo >= 16) == pytest.approx(0.493)


def test_extreme_chunks_reproducible_unique_and_on_target():
    # a small search (few steps) keeps this fast; the chunking does not depend on workers
    kw = {"profile": "extreme", "seed": 3, "progress": False, "extreme_iters": 300, "extreme_pool": 8}
    a = generate_sudoku(60, workers=1, **kw)
    b = generate_sudoku(60, workers=2, **kw)
    assert np.array_equal(a.puzzles, b.puzzles) and np.array_equal(a.ratings, b.ratings)
    d = generate_sudoku(7, workers=1, **kw)
    assert np.array_equal(d.puzzles, a.puzzles[:7])
    sols, counts, _ = solve_batch(a.puzzles, limit=2)
    assert (counts == 1).all() and np.array_equal(sols, a.solutions)
    assert np.array_equal(rate_batch(a.puzzles), a.ratings)
    # stratified targets: ~13% zero-guess items per chunk, and most items rated within their bin
    assert 0.08 <= (a.ratings == 0).mean() <= 0.2
    assert a.target_bins.shape == (60, 2)
    assert generate_sudoku(0, workers=1, **kw).puzzles.shape == (0, 9, 9)
    # givens follow the real set's: zero-rated targets may ask for non-minimal 33-35-given puzzles
    g = (a.puzzles != 0).sum(axis=(1, 2))
    assert 24 <= g.mean() <= 27
    assert (a.ratings[g >= 30] == 0).all()
    # the default puts no two puzzles of a chunk on one grid: distinct keys prove them non-isomorphic (the key
    # is invariant under the symmetries)
    for chunk in (a.solutions[:50], a.solutions[50:]):
        assert len({_key(s.reshape(81)).tobytes() for s in chunk}) == len(chunk)
    # shared grids (own_grids=False): same contract (unique, rated as stored, reproducible, independent of
    # workers), and the check above can fail: a chunk shares the search's lineage grids
    o = generate_sudoku(60, workers=1, own_grids=False, **kw)
    o2 = generate_sudoku(60, workers=2, own_grids=False, **kw)
    assert np.array_equal(o.puzzles, o2.puzzles) and not np.array_equal(o.puzzles, a.puzzles)
    sols, counts, _ = solve_batch(o.puzzles, limit=2)
    assert (counts == 1).all() and np.array_equal(sols, o.solutions)
    assert np.array_equal(rate_batch(o.puzzles), o.ratings)
    assert len({_key(s.reshape(81)).tobytes() for s in o.solutions[:50]}) < 50


def test_extreme_targets_follow_the_real_tables():
    ratings = np.repeat(*np.array(_EXTREME_RATING_COUNTS).T)
    t, g, _ = _extreme_targets(0, 0, 1000)
    # stratified: every 0.1% quantile of the real table is hit once
    assert np.array_equal(np.sort(t), np.sort(ratings))
    real_givens = {v for row in _EXTREME_GIVENS_COUNTS for v, _ in row}
    assert set(g.tolist()) <= real_givens and 24.5 <= g.mean() <= 26
    t2, _, s2 = _extreme_targets(0, 1, 50)
    assert not np.array_equal(t2, t[:50]) and _extreme_targets(0, 1, 50)[2] == s2  # per-chunk, seeded


def _key(s):
    k = np.zeros(72, np.int64)
    _grid_key(s, k)
    return k


def _is_relabel(a, b):
    """Whether grid ``b`` is grid ``a`` with its digits renamed (the same grid up to symmetry)."""
    m = {}
    return all(m.setdefault(int(x), int(y)) == int(y) for x, y in zip(a, b, strict=True)) and len(set(m.values())) == 9


def test_grid_key_is_a_symmetry_invariant_that_tells_grids_apart():
    b = generate_sudoku(40, profile="any", seed=2, workers=1, progress=False)
    sols = b.solutions.reshape(-1, 81)
    q, t = np.zeros(81, np.int8), np.zeros(81, np.int8)
    for s in sols[:10]:
        for _ in range(5):  # band/row/stack/column permutations, relabelling, transposition
            _random_symmetry(s, s, q, t, 3, 3)
            assert np.array_equal(_key(t), _key(s))
        assert np.array_equal(_key(s.reshape(9, 9).T.reshape(81)), _key(s))
    keys = np.stack([_key(s) for s in sols])
    assert len({k.tobytes() for k in keys}) == len(sols)  # 40 random grids, 40 keys
    assert _grid_taken(keys[3], keys, 4) and not _grid_taken(keys[3], keys, 3)


def test_value_move_gives_a_unique_puzzle_on_another_grid():
    b = generate_sudoku(20, profile="any", seed=1, workers=1, progress=False, minimal=True)
    s9 = _scratch9()
    tmp, q, s2 = np.zeros(81, np.int8), np.zeros(81, np.int8), np.zeros(81, np.int8)
    moves = 0
    for p, sol in zip(b.puzzles.reshape(-1, 81), b.solutions.reshape(-1, 81), strict=True):
        pp, ss = p.copy(), sol.copy()
        moved, calls = _value_move(pp, ss, q, s2, tmp, s9)
        assert calls >= 0
        if not moved:
            assert np.array_equal(pp, p) and np.array_equal(ss, sol)
            continue
        moves += 1
        assert is_solution(ss.reshape(9, 9)) and count_solutions(pp.reshape(9, 9)) == 1
        assert np.array_equal(solve_batch(pp.reshape(1, 9, 9))[0].reshape(81), ss)
        keep = pp != 0
        assert np.array_equal(pp[keep], ss[keep])  # the givens are the new grid's
        assert 4 <= (ss != sol).sum() and not _is_relabel(sol, ss)  # another grid, not the same one renamed
        assert keep.sum() <= (p != 0).sum()  # one given changed, then minimised (it may drop several)
        assert all(count_solutions(np.where(np.arange(81) == c, 0, pp).reshape(9, 9)) > 1 for c in np.flatnonzero(keep))
    assert moves >= 15  # a minimal puzzle nearly always has a unique one-given move


def test_relax_and_constrain_gives_a_unique_puzzle_of_the_same_solution():
    # the search's step before minimising: drop 1-3 givens, re-add givens of the solution (where the other
    # solution found differs) until unique; the result is a unique puzzle of the same grid
    b = generate_sudoku(20, profile="any", seed=5, workers=1, progress=False, minimal=True)
    s9 = _scratch9()
    tmp = np.zeros(81, np.int8)
    for p, sol in zip(b.puzzles.reshape(-1, 81), b.solutions.reshape(-1, 81), strict=True):
        for _ in range(5):
            child = p.copy()
            calls = _relax_and_constrain(child, sol, tmp, s9)
            keep = child != 0
            assert calls >= 1 and count_solutions(child.reshape(9, 9)) == 1
            assert np.array_equal(child[keep], sol[keep])
            assert np.array_equal(solve_batch(child.reshape(1, 9, 9))[0].reshape(81), sol)
            # each failed check added one given (possibly where one was dropped), after 1-3 were dropped
            assert 1 <= (p != 0).sum() - keep.sum() + calls - 1 <= 3


def test_on_own_grid_walks_off_taken_grids():
    b = generate_sudoku(10, profile="any", seed=4, workers=1, progress=False, minimal=True)
    s9 = _scratch9()
    tmp, q, s2, key = np.zeros(81, np.int8), np.zeros(81, np.int8), np.zeros(81, np.int8), np.zeros(72, np.int64)
    hits = 0
    for p, sol in zip(b.puzzles.reshape(-1, 81), b.solutions.reshape(-1, 81), strict=True):
        keys = _key(sol)[None]
        pp, ss = p.copy(), sol.copy()
        ok, _ = _on_own_grid(pp, ss, keys, 1, 50, key, q, s2, tmp, s9)
        if ok:
            hits += 1
            assert not _grid_taken(_key(ss), keys, 1) and np.array_equal(key, _key(ss))
            assert count_solutions(pp.reshape(9, 9)) == 1
            assert np.array_equal(solve_batch(pp.reshape(1, 9, 9))[0].reshape(81), ss)
    assert hits >= 8
    pp, ss = b.puzzles[0].reshape(81).copy(), b.solutions[0].reshape(81).copy()
    other = _key(b.solutions[1].reshape(81))[None]
    assert _on_own_grid(pp, ss, other, 1, 5, key, q, s2, tmp, s9) == (True, 0)  # already on a new grid
    assert np.array_equal(pp, b.puzzles[0].reshape(81))


def test_distribution_report_helpers():
    b = generate_sudoku(20, profile="any", seed=0, workers=1, progress=False, minimal=True)
    gs = givens_stats(b.puzzles)
    assert gs["frac_minimal"] == 1.0 and 17 <= gs["mean"] <= 40
    assert givens_stats(b.solutions[:1])["frac_minimal"] == 0.0
    pytest.importorskip("scipy")
    same = two_sample(np.arange(100) % 7, np.arange(100) % 7)
    assert same["ks_statistic"] == 0 and same["ks_pvalue"] == 1
    far = two_sample(np.zeros(200), np.full(200, 30))
    assert far["ks_pvalue"] < 1e-6 and far["ad_pvalue"] <= 0.001
    assert {"n", "mean", "median", "frac_zero", "quantiles", "max"} <= set(rating_stats(b.ratings))


def test_stale_kernel_cache_is_dropped(monkeypatch):
    import puzzles.sudoku_generator as gen

    stamp = Path(gen._extreme_chunk._cache._cache_path) / "sudoku_generator.solver.sha256"
    flushed = []
    monkeypatch.setattr(type(gen._extreme_chunk._cache), "flush", lambda self: flushed.append(self))
    stamp.write_text("an older solver")
    gen._drop_stale_kernel_cache()
    assert flushed and stamp.read_text() != "an older solver"  # flushed, and the new digest recorded
    flushed.clear()
    gen._drop_stale_kernel_cache()
    assert not flushed  # same solver: the cache stays


@pytest.mark.slow
def test_extreme_distribution_1000_matches_the_real_sample():
    # the check, 1,000 puzzles of the default (own grids) against the real 1k sample, on seed 2, the
    # furthest off of the six measured at 91390ca (KS p 0.37, AD p 0.18; deciles up to 3 below the real ones,
    # q0.7 25 vs 28; benchmarks/results/sudoku_extreme_distribution.md). Givens: 24.2 against 25.2, a gap
    # issue 22 stays open on; the bound below only guards against it growing.
    from puzzles.sudoku_generator import compare_with_real, default_real_sample

    if not default_real_sample().exists():
        pytest.skip("../shared/data is absent")
    pytest.importorskip("scipy")
    d = compare_with_real(1000, seed=2)
    gen, real = d["generated"], d["real_csv_rating"]
    assert d["two_sample_vs_real_csv"]["ks_pvalue"] > 0.05 and d["two_sample_vs_real_csv"]["ad_pvalue"] > 0.05
    for q in ("0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9"):
        assert abs(gen["quantiles"][q] - real["quantiles"][q]) <= max(3, 0.1 * real["quantiles"][q]), q
    assert gen["quantiles"]["0.99"] >= 0.75 * real["quantiles"]["0.99"]
    assert gen["givens"]["mean"] >= d["real_givens"]["mean"] - 1.2
    assert gen["givens"]["frac_minimal"] >= 0.95


def test_cli_refuses_a_missing_out_folder_before_generating(tmp_path, capsys):
    from puzzles.formats import write_text_atomic
    from puzzles.sudoku_generator import main

    with pytest.raises(SystemExit) as e:
        main(["--n", "5", "--out", str(tmp_path / "missing" / "gen.json")])
    assert e.value.code == 2 and "no such folder" in capsys.readouterr().err
    write_text_atomic(tmp_path / "a.json", "{}\n")
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary sibling left behind
