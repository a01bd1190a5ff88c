"""Tests of the maze engine (puzzles.maze) and the Maze-Hard generator (puzzles.maze_generator).

Run: ``pytest tests/test_maze.py`` (about 30 s on 2 cores, most of it numba compiling on a fresh
checkout); ``pytest -m slow tests/test_maze.py`` adds a 1000-maze statistics check against the
real split. Tests that read the real Maze-Hard split in ``../shared/data/maze`` skip when it is
absent.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from puzzles.augment import dihedral
from puzzles.errors import NoSolutionError, PuzzleConstraintError, PuzzleError, PuzzleFormatError
from puzzles.maze import (
    CHARSET,
    GOAL,
    OPEN,
    PATH,
    START,
    WALL,
    PathCheck,
    as_maze,
    check_prediction,
    check_predictions,
    distances,
    format_maze,
    parse_maze,
    path_length,
    pretty_maze,
    shortest_path,
    solve_maze,
    solve_mazes,
)
from puzzles.maze_generator import MAZE_PRESETS, MazeBatch, generate_mazes, maze_preset

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "maze"
REAL = "maze-30x30-hard-1k_train"
needs_real = pytest.mark.skipif(not (DATA / f"{REAL}_all__inputs.npy").exists(), reason="no ../shared/data/maze")
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- independent reference code


def ref_bfs(grid: np.ndarray) -> tuple[int, list[tuple[int, int]] | None]:
    """Plain-Python BFS from S: (moves to G, path S..G) or (-1, None); down, left, right, up."""
    n = grid.shape[0]
    start = tuple(int(x) for x in np.argwhere(grid == START)[0])
    goal = tuple(int(x) for x in np.argwhere(grid == GOAL)[0])
    parent = {start: None}
    queue = deque([start])
    while queue:
        u = queue.popleft()
        if u == goal:
            path = [u]
            while parent[path[-1]] is not None:
                path.append(parent[path[-1]])
            return len(path) - 1, path[::-1]
        for dr, dc in ((1, 0), (0, -1), (0, 1), (-1, 0)):
            v = (u[0] + dr, u[1] + dc)
            if 0 <= v[0] < n and 0 <= v[1] < n and grid[v] != WALL and v not in parent:
                parent[v] = u
                queue.append(v)
    return -1, None


def other_shortest_path(maze: np.ndarray) -> np.ndarray:
    """A shortest path chosen with the opposite preference (up, right, left, down), as a label."""
    ds, dg = distances(maze), distances(_swap_start_goal(maze))
    d = ds[tuple(np.argwhere(maze == GOAL)[0])]
    r, c = (int(x) for x in np.argwhere(maze == START)[0])
    out = maze.copy()
    for step in range(1, d):
        for dr, dc in ((-1, 0), (0, 1), (0, -1), (1, 0)):
            rr, cc = r + dr, c + dc
            if 0 <= rr < len(maze) and 0 <= cc < len(maze) and ds[rr, cc] == step and dg[rr, cc] == d - step:
                r, c = rr, cc
                break
        out[r, c] = PATH
    return out


def _swap_start_goal(maze: np.ndarray) -> np.ndarray:
    out = maze.copy()
    out[maze == START], out[maze == GOAL] = GOAL, START
    return out


@st.composite
def mazes(draw, min_side: int = 2, max_side: int = 10) -> np.ndarray:
    """Random valid mazes: any side, any wall density, S and G on distinct cells."""
    n = draw(st.integers(min_side, max_side))
    p = draw(st.sampled_from([0.0, 0.2, 0.35, 0.5, 0.7]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    grid = np.where(rng.random((n, n)) < p, WALL, OPEN).astype(np.uint8)
    s, g = rng.choice(n * n, size=2, replace=False)
    grid.flat[s], grid.flat[g] = START, GOAL
    return grid


# ---------------------------------------------------------------- parsing and formatting


@FAST
@given(mazes(max_side=12))
def test_parse_format_roundtrip(grid):
    line = format_maze(grid)
    assert len(line) == grid.size and set(line) <= set(CHARSET)
    assert np.array_equal(parse_maze(line), grid)
    assert np.array_equal(parse_maze(pretty_maze(grid) + "\n"), grid)
    assert np.array_equal(parse_maze(pretty_maze(grid).replace("\n", "\r\n")), grid)
    assert format_maze(parse_maze(line)) == line
    assert np.array_equal(as_maze(grid.ravel().astype(np.int64)), grid)


def test_spaces_are_cells_not_padding():
    # A first row of only open cells must survive parsing of the multi-line form.
    text = "   \nS#G\n   "
    grid = parse_maze(text)
    assert grid.shape == (3, 3) and (grid[0] == OPEN).all()
    assert pretty_maze(grid) == text


@FAST
@given(st.text(alphabet="# SGo\nx.0", max_size=40), st.sampled_from([None, 3, 4]))
def test_malformed_text_raises_only_documented_errors(text, size):
    try:
        grid = parse_maze(text, size=size)
    except (PuzzleFormatError, PuzzleConstraintError) as e:
        assert str(e)
    else:
        assert (grid == START).sum() == 1 and (grid == GOAL).sum() == 1
        assert set(text.replace("\n", "")) <= set(CHARSET)


@pytest.mark.parametrize(
    ("text", "error", "words"),
    [
        ("", PuzzleFormatError, "empty"),
        ("S G x    ", PuzzleFormatError, "'x' at row 1, column 1"),
        ("S G#G", PuzzleFormatError, "not a square"),
        ("S G#\n  ", PuzzleFormatError, "line 1 has 2"),
        ("SG \n   ", PuzzleFormatError, "square"),
        ("SSG      ", PuzzleConstraintError, "2 start 'S' cells at (0, 0), (0, 1)"),
        ("S        ", PuzzleConstraintError, "0 goal 'G'"),
    ],
)
def test_parse_errors_name_the_problem(text, error, words):
    with pytest.raises(error) as info:
        parse_maze(text)
    assert words in str(info.value)


def test_parse_size_and_type_checks():
    with pytest.raises(PuzzleFormatError, match="expected 4×4"):
        parse_maze("SG  ", size=4)
    with pytest.raises(PuzzleFormatError, match="must be a str"):
        parse_maze(b"SG  ")


@FAST
@given(
    st.lists(st.integers(1, 5), min_size=1, max_size=4).flatmap(
        lambda shape: st.lists(st.integers(-3, 300), min_size=int(np.prod(shape)), max_size=int(np.prod(shape))).map(
            lambda v, shape=shape: np.array(v, dtype=np.int64).reshape(shape)
        )
    )
)
def test_malformed_arrays_raise_only_documented_errors(arr):
    try:
        grid = as_maze(arr)
    except (PuzzleFormatError, PuzzleConstraintError) as e:
        assert str(e)
    else:
        assert grid.dtype == np.uint8 and grid.shape[0] == grid.shape[1]
    # As a prediction the same garbage is scored, never raised.
    check = check_prediction(SQUARE, arr)
    assert isinstance(check, PathCheck) and isinstance(check.reason, str)


@pytest.mark.parametrize(
    ("arr", "error", "words"),
    [
        (np.array([[3, 4], [2, 0]]), PuzzleFormatError, "token 0 at row 1, column 1"),
        (np.array([[3, 4], [2, 6]]), PuzzleFormatError, "token 6"),
        (np.array([[3.0, 4.0], [2.0, 2.0]]), PuzzleFormatError, "dtype float64"),
        (np.array([3, 4, 2]), PuzzleFormatError, "not a square"),
        (np.ones((2, 3), dtype=np.uint8), PuzzleFormatError, "shape (2, 3)"),
        (np.array([[3, 3], [4, 2]]), PuzzleConstraintError, "2 start"),
        (np.array([[3, 2], [2, 2]]), PuzzleConstraintError, "0 goal"),
    ],
)
def test_as_maze_errors(arr, error, words):
    with pytest.raises(error) as info:
        as_maze(arr)
    assert words in str(info.value)


def test_errors_are_value_errors():
    for e in (PuzzleFormatError, PuzzleConstraintError, NoSolutionError):
        assert issubclass(e, PuzzleError) and issubclass(e, ValueError)


# ---------------------------------------------------------------- BFS solver


@FAST
@given(mazes())
def test_bfs_matches_independent_reference(grid):
    moves, ref_path = ref_bfs(grid)
    if moves < 0:
        for solve in (shortest_path, solve_maze, path_length):
            with pytest.raises(NoSolutionError):
                solve(grid)
        return
    path = shortest_path(grid)
    assert [tuple(p) for p in path] == ref_path  # same tie-breaking, hence the same label
    assert path_length(grid) == moves + 1 == len(path)
    # A path of adjacent open cells from S to G.
    assert (np.abs(np.diff(path, axis=0)).sum(axis=1) == 1).all()
    assert grid[tuple(path[0])] == START and grid[tuple(path[-1])] == GOAL
    assert (grid[path[:, 0], path[:, 1]] != WALL).all()
    label = solve_maze(grid)
    expected = grid.copy()
    expected[path[1:-1, 0], path[1:-1, 1]] = PATH
    assert np.array_equal(label, expected)
    assert check_prediction(grid, label) == PathCheck(True, True, "ok")
    assert distances(grid)[tuple(path[-1])] == moves


def test_path_tokens_in_input_are_open_cells():
    grid = parse_maze("S  \n## \nG  ")
    label = solve_maze(grid)
    assert format_maze(label) == "Soo##oGoo"
    assert np.array_equal(solve_maze(label), label)  # idempotent: old marks are recomputed
    stale = parse_maze("Soo\n##o\nGoo")
    stale[0, 1] = OPEN  # a broken old path does not matter
    assert np.array_equal(solve_maze(stale), label)


def test_solve_mazes_batch_equals_single_and_reports_unsolvable():
    rng = np.random.default_rng(1)
    grids = []
    while len(grids) < 40:
        g = np.where(rng.random((8, 8)) < 0.25, WALL, OPEN).astype(np.uint8)
        s, t = rng.choice(64, 2, replace=False)
        g.flat[s], g.flat[t] = START, GOAL
        if ref_bfs(g)[0] >= 0:
            grids.append(g)
    batch = np.stack(grids)
    labels, lengths = solve_mazes(batch)
    assert lengths.dtype == np.int32
    for g, lab, n in zip(batch, labels, lengths, strict=True):
        assert np.array_equal(lab, solve_maze(g)) and n == path_length(g)
    flat_labels, _ = solve_mazes(batch.reshape(40, -1))
    assert flat_labels.shape == (40, 64) and np.array_equal(flat_labels.reshape(labels.shape), labels)
    blocked = batch.copy()
    blocked[7] = OPEN
    blocked[7, 0, :2], blocked[7, 1, 0] = (START, WALL), WALL  # S walled into its corner
    blocked[7, 7, 7] = GOAL
    with pytest.raises(NoSolutionError, match=r"\[7\]"):
        solve_mazes(blocked)
    bad = batch.copy()
    bad[3][bad[3] == GOAL] = START
    with pytest.raises(PuzzleConstraintError, match="maze 3 has 2 start"):
        solve_mazes(bad)


@pytest.mark.parametrize("k", range(8))
def test_dihedral_keeps_maze_valid_and_path_length(k):
    rng = np.random.default_rng(k)
    for _ in range(20):
        g = np.where(rng.random((9, 9)) < 0.3, WALL, OPEN).astype(np.uint8)
        s, t = rng.choice(81, 2, replace=False)
        g.flat[s], g.flat[t] = START, GOAL
        if ref_bfs(g)[0] < 0:
            continue
        t_maze = as_maze(dihedral(g, k))
        assert path_length(t_maze) == path_length(g)
        # The transformed label is still a shortest path, though BFS may now prefer another.
        assert check_prediction(t_maze, dihedral(solve_maze(g), k)).valid_shortest


# ---------------------------------------------------------------- verifier

SQUARE = parse_maze("S  \n   \n  G")  # 4 moves, six shortest paths


def test_verifier_alternative_shortest_path():
    label = solve_maze(SQUARE)
    assert format_maze(label) == "S  o  ooG"  # down, down, then right: the DLRU BFS choice
    alt = parse_maze("Soo\n  o\n  G")
    check = check_prediction(SQUARE, alt)
    assert check.valid_shortest and not check.matches_label and "differing" in check.reason
    assert check_prediction(SQUARE, alt, label=alt).matches_label


@pytest.mark.parametrize(
    ("prediction", "reason"),
    [
        ("Soo\n  o\no G", "extra cells"),  # a shortest path plus a detached cell
        ("Soo\n oo\n  G", "single simple path"),  # a branch
        ("So \n   \n  G", "single simple path"),  # a dead end
        ("So \n   \n oG", "single simple path"),  # two fragments
        ("Soo\nooo\n  G", "single simple path"),  # two ways out of S
    ],
)
def test_verifier_rejects_broken_paths(prediction, reason):
    check = check_prediction(SQUARE, parse_maze(prediction))
    assert not check.valid_shortest and not check.matches_label
    assert reason in check.reason


def test_verifier_rejects_long_path_and_walls():
    maze = parse_maze("S   \n ## \n    \nG   ")
    assert path_length(maze) == 4
    long_way = parse_maze("Sooo\n ##o\noooo\nG   ")  # simple and connected, but 10 cells
    check = check_prediction(maze, long_way)
    assert not check.valid_shortest and "longer" in check.reason
    through_wall = parse_maze("S   \no## \no   \nG   ")
    through_wall[1, 1] = PATH
    assert not check_prediction(maze, through_wall).valid_shortest
    assert "walls" in check_prediction(maze, through_wall).reason
    moved_goal = solve_maze(maze)
    moved_goal[3, 0], moved_goal[3, 1] = OPEN, GOAL
    assert not check_prediction(maze, moved_goal).valid_shortest


@pytest.mark.parametrize(
    ("prediction", "reason"),
    [
        (np.zeros((4, 4), dtype=np.uint8), "shape"),
        (np.full(8, 2), "shape"),
        (np.full((3, 3), 2.0), "dtype"),
        ("garbage", "dtype"),
        (None, "dtype"),
        (np.array([[3, 2, 2], [2, 9, 2], [2, 2, 4]]), "open cell"),
        (np.array([[3, 2, 2], [2, -1, 2], [2, 2, 4]]), "open cell"),
    ],
)
def test_verifier_survives_garbage(prediction, reason):
    check = check_prediction(SQUARE, prediction)
    assert check.matches_label is False and check.valid_shortest is False
    assert reason in check.reason


def test_verifier_on_unreachable_goal():
    maze = parse_maze("S#\n#G")
    check = check_prediction(maze, maze)
    assert not check.valid_shortest and "unreachable" in check.reason


def test_check_predictions_batch():
    label = solve_maze(SQUARE)
    alt = parse_maze("Soo\n  o\n  G")
    preds = np.stack([label, alt, SQUARE, np.full((3, 3), 9, dtype=np.uint8)]).astype(np.int64)
    mazes_ = np.stack([SQUARE] * 4)
    matches, valid = check_predictions(mazes_, preds)
    assert matches.tolist() == [True, False, False, False]
    assert valid.tolist() == [True, True, False, False]
    matches, _ = check_predictions(mazes_.reshape(4, 9), preds.reshape(4, 9), labels=np.stack([alt] * 4))
    assert matches.tolist() == [False, True, False, False]
    with pytest.raises(PuzzleFormatError, match="predictions have shape"):
        check_predictions(mazes_, preds[:3])


# ---------------------------------------------------------------- generator


def _assert_valid_batch(batch: MazeBatch, size: int, min_cells: int) -> None:
    assert batch.inputs.shape[1:] == (size, size) and batch.inputs.dtype == np.uint8
    labels, lengths = solve_mazes(batch.inputs)
    assert np.array_equal(labels, batch.labels)
    assert np.array_equal(lengths, batch.path_lengths)
    assert (batch.path_lengths >= min_cells).all()
    assert len({x.tobytes() for x in batch.inputs}) == len(batch)
    assert set(np.unique(batch.inputs)) <= {WALL, OPEN, START, GOAL}


@pytest.mark.parametrize("name", sorted(MAZE_PRESETS))
def test_every_preset_generates_valid_mazes(name):
    kw = maze_preset(name)
    batch = generate_mazes(4, **kw, seed=3, workers=1, progress=False)
    assert len(batch) == 4
    _assert_valid_batch(batch, kw["size"], kw["min_path_cells"])


def test_generator_reproducible_and_independent_of_workers():
    kw = dict(**maze_preset("maze-small"), progress=False)
    one = generate_mazes(40, seed=11, workers=1, **kw)
    two = generate_mazes(40, seed=11, workers=2, **kw)
    again = generate_mazes(25, seed=11, workers=1, **kw)
    other = generate_mazes(40, seed=12, workers=1, **kw)
    for field in ("inputs", "labels", "path_lengths"):
        assert np.array_equal(getattr(one, field), getattr(two, field))
        assert np.array_equal(getattr(one, field)[:25], getattr(again, field))  # a prefix
    assert not np.array_equal(one.inputs, other.inputs)
    _assert_valid_batch(one, 12, kw["min_path_cells"])
    assert 0.3 - 0.1 < one.wall_fractions.min() and one.wall_fractions.max() < 0.5 + 0.1


@pytest.mark.parametrize("sampling", ["bernoulli", "exact"])
def test_generator_parameters(sampling):
    batch = generate_mazes(
        20, size=8, min_path_cells=12, wall_range=(0.2, 0.3), seed=0, workers=1, progress=False,
        wall_sampling=sampling,
    )  # fmt: skip
    _assert_valid_batch(batch, 8, 12)
    walls = (batch.inputs == WALL).sum(axis=(1, 2))
    if sampling == "exact":
        # An exact count in round(0.2 * 64)..round(0.3 * 64) walls.
        assert walls.min() >= 13 and walls.max() <= 19
    assert len(generate_mazes(0, size=8, min_path_cells=12, progress=False)) == 0


@pytest.mark.parametrize(
    "kw",
    [
        dict(n=-1),
        dict(size=1),
        dict(min_path_cells=1),
        dict(size=5, min_path_cells=26),
        dict(wall_range=(0.5, 0.3)),
        dict(wall_range=(0.3, 1.0)),
        dict(wall_sampling="poisson"),
        dict(attempts_per_layout=0),
        dict(workers=0),
    ],
)
def test_generator_rejects_bad_arguments(kw):
    args = dict(n=1, size=8, min_path_cells=10, progress=False) | kw
    with pytest.raises(ValueError):
        generate_mazes(args.pop("n"), **args)


def test_unknown_preset():
    with pytest.raises(KeyError, match="known presets"):
        maze_preset("maze-huge")


def test_generator_gives_up_with_a_clear_error():
    # A 6×6 maze cannot hold a 30-cell shortest path with 30-50% walls.
    with pytest.raises(PuzzleError, match="found only 0 of 2"):
        generate_mazes(2, size=6, min_path_cells=30, max_layouts=5000, workers=1, progress=False)


# ---------------------------------------------------------------- the real Maze-Hard split


@pytest.fixture(scope="module")
def real():
    pd = pytest.importorskip("pandas")
    inputs = np.load(DATA / f"{REAL}_all__inputs.npy")
    labels = np.load(DATA / f"{REAL}_all__labels.npy")
    csv = pd.read_csv(DATA / f"{REAL}_reconstructed.csv")
    return inputs, labels, csv


@needs_real
def test_real_labels_reproduced_exactly(real):
    inputs, labels, csv = real
    ours, lengths = solve_mazes(inputs)
    assert (ours == labels).all(axis=1).sum() == 1000
    assert np.array_equal(lengths, csv["rating"].to_numpy())
    matches, valid = check_predictions(inputs, labels)
    assert matches.all() and valid.all()
    for i in range(0, 1000, 97):
        assert format_maze(inputs[i]) == csv["question"][i]
        assert format_maze(labels[i]) == csv["answer"][i]
        assert np.array_equal(parse_maze(csv["question"][i]).ravel(), inputs[i])


@needs_real
def test_real_mazes_have_other_shortest_paths(real):
    inputs, labels, _ = real
    for i in range(0, 1000, 50):
        maze = inputs[i].reshape(30, 30)
        alt = other_shortest_path(maze)
        check = check_prediction(maze, alt)
        assert check.valid_shortest and not check.matches_label, (i, check)
        broken = labels[i].reshape(30, 30).copy()
        broken[tuple(shortest_path(maze)[50])] = OPEN
        check = check_prediction(maze, broken)
        assert not check.valid_shortest and not check.matches_label


@needs_real
def test_real_dihedral_augmentations(real):
    inputs, _, csv = real
    for i in range(0, 1000, 125):
        maze = inputs[i].reshape(30, 30)
        for k in range(8):
            assert path_length(dihedral(maze, k)) == csv["rating"][i]


@pytest.mark.slow
@needs_real
def test_generated_statistics_match_real_split(real):
    inputs, _, csv = real
    batch = generate_mazes(1000, **MAZE_PRESETS["maze-hard"], seed=0, progress=False)
    _assert_valid_batch(batch, 30, 110)
    real_walls = (inputs == WALL).mean(axis=1)
    assert abs(batch.wall_fractions.mean() - real_walls.mean()) < 0.005
    assert abs(batch.path_lengths.mean() - csv["rating"].mean()) < 1.5
    assert np.median(batch.path_lengths) == pytest.approx(np.median(csv["rating"]), abs=1)
