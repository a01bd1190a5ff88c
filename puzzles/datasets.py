"""Registry of the benchmark datasets: what each one is and how to generate, check and augment it.

A :class:`DatasetSpec` fixes everything that defines a dataset except its size and seed: the
puzzle kind and grid side, the Sudoku box shape and difficulty profile or the maze's minimum
path, and the augmentation that preserves validity. ``puzzles.build`` turns a spec plus
``--train/--test/--aug/--seed`` into a dataset folder; training code reads the folder.

================  =======================================================================
name              what it is
================  =======================================================================
sudoku-extreme    9×9, rating profile of Sudoku-Extreme (HRM/TRM/attractor paper)
sudoku6           6×6 (2×3 boxes), unique solution, for CPU-sized experiments
sudoku4           4×4 (2×2 boxes), unique solution, for tests and smoke runs
maze-hard         30×30, shortest path ≥ 110 cells (Maze-Hard, Searchformer procedure)
maze-small        12×12, minimum path scaled down, for CPU-sized experiments
================  =======================================================================

Example::

    from puzzles.datasets import get_dataset
    spec = get_dataset("sudoku6")
    table = spec.generate(100, seed=0)       # a PuzzleTable of 100 puzzles with solutions
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from puzzles.augment import augment_sudoku_copies, dihedral
from puzzles.errors import DatasetError, PuzzleConstraintError
from puzzles.formats import MAZE_CHARSET, Kind, PuzzleTable


@dataclass(frozen=True)
class DatasetSpec:
    """A named benchmark: the puzzle family and the parameters of its generator.

    Attributes:
        name: registry name, e.g. ``"sudoku-extreme"``.
        kind: ``"sudoku"`` or ``"maze"``.
        side: grid side ``N`` (sequence length is ``N * N``).
        description: one line for ``--help`` and READMEs.
        box: Sudoku box shape ``(rows, cols)``.
        profile: Sudoku difficulty profile name (see ``puzzles.sudoku_generator.PROFILES``).
        maze_preset: maze generator preset (see ``puzzles.maze_generator.MAZE_PRESETS``).
        max_aug: the most augmented copies per puzzle that are distinct transforms
            (7 for mazes: the non-identity dihedral transforms); ``None`` for no limit.
        generator_args: extra keyword arguments for the generator.
    """

    name: str
    kind: Kind
    side: int
    description: str
    box: tuple[int, int] | None = None
    profile: str | None = None
    maze_preset: str | None = None
    max_aug: int | None = None
    generator_args: dict = field(default_factory=dict)

    @property
    def seq_len(self) -> int:
        """Tokens per example (``N * N``)."""
        return self.side * self.side

    @property
    def vocab_size(self) -> int:
        """HRM/TRM vocabulary: Sudoku pad + blank + N digits; Maze pad + ``# SGo``."""
        return self.side + 2 if self.kind == "sudoku" else len(MAZE_CHARSET) + 1

    # ----------------------------------------------------------------------------------------
    def generate(self, n: int, seed: int = 0, workers: int | None = None, progress: bool = True) -> PuzzleTable:
        """Generate ``n`` puzzles with their solutions; the same seed gives the same table."""
        source = f"attractor-suite:{self.name}:seed={seed}"
        if self.kind == "sudoku":
            from puzzles.sudoku_generator import generate_sudoku

            batch = generate_sudoku(
                n,
                box=self.box,
                profile=self.profile,
                seed=seed,
                workers=workers,
                progress=progress,
                **self.generator_args,
            )
            return PuzzleTable(
                "sudoku", batch.puzzles, batch.solutions, batch.ratings, np.full(n, source, dtype=object)
            )
        from puzzles.maze_generator import MAZE_PRESETS, generate_mazes

        args = {**MAZE_PRESETS[self.maze_preset], **self.generator_args}
        batch = generate_mazes(n, seed=seed, workers=workers, progress=progress, **args)
        return PuzzleTable("maze", batch.inputs, batch.labels, batch.path_lengths, np.full(n, source, dtype=object))

    def augment(self, question: np.ndarray, answer: np.ndarray, rng: np.random.Generator, copies: int):
        """Return ``copies`` validity-preserving transforms of one puzzle, shape ``(copies, N, N)`` each.

        Sudoku draws random band/row/stack/column permutations, digit relabellings and
        transposes; mazes take the non-identity dihedral transforms in order (1..copies), as the
        reference Maze builder does with all 7 of them.
        """
        if self.kind == "sudoku":
            return augment_sudoku_copies(question, answer, rng, copies, self.box)
        if copies > 7:
            raise DatasetError(f"{self.name}: a maze has only 7 non-identity dihedral transforms, asked for {copies}")
        ks = range(1, copies + 1)
        return np.stack([dihedral(question, k) for k in ks]), np.stack([dihedral(answer, k) for k in ks])

    def check_table(self, table: PuzzleTable, what: str = "table", row_ids: np.ndarray | None = None) -> None:
        """Raise a clear error if any row of ``table`` is not a valid puzzle of this dataset.

        Sudoku: the answer is a complete valid grid that agrees with every given. Maze: the
        answer marks a valid shortest path of the question (any shortest path is accepted,
        not only the breadth-first one). Rows are checked vectorised where possible.

        Args:
            table: the puzzles to check.
            what: name of the source, for error messages.
            row_ids: the source's row number of each table row (errors name that row), when the
                table is a selection of a larger file.
        """
        if table.kind != self.kind:
            raise DatasetError(f"{what}: holds {table.kind} puzzles but {self.name} is a {self.kind} dataset")
        if table.questions.shape[1:] != (self.side, self.side):
            raise DatasetError(
                f"{what}: puzzles are {table.questions.shape[1]}×{table.questions.shape[2]} but {self.name} "
                f"is {self.side}×{self.side}"
            )
        if self.kind == "sudoku":
            bad = np.flatnonzero(~sudoku_solutions_valid(table.questions, table.answers, self.box))
            if bad.size:
                raise PuzzleConstraintError(
                    f"{what}: row {_row(bad, row_ids)} ({bad.size} rows in all): the answer does not solve the question"
                )
            return
        from puzzles.maze import check_predictions

        _, valid = check_predictions(table.questions, table.answers)
        bad = np.flatnonzero(~valid)
        if bad.size:
            raise PuzzleConstraintError(
                f"{what}: row {_row(bad, row_ids)} ({bad.size} rows in all): the answer does not mark a shortest path"
            )


def _row(bad: np.ndarray, row_ids: np.ndarray | None) -> int:
    """The source row number of the first bad row (the smallest, when rows were reordered)."""
    return int(bad[0]) if row_ids is None else int(np.min(row_ids[bad]))


def sudoku_solutions_valid(puzzles: np.ndarray, solutions: np.ndarray, box: tuple[int, int]) -> np.ndarray:
    """Vectorised check of many Sudoku solutions: ``(B,)`` bool, True where the row is valid.

    Valid means every row, column and box of the solution holds each digit 1..N once, and the
    solution agrees with every given of the puzzle.
    """
    br, bc = box
    n = br * bc
    b = len(solutions)
    sol = np.asarray(solutions, dtype=np.int8)  # int8 keeps a 3.8M-row check at ~300 MB per copy
    full = np.arange(1, n + 1, dtype=np.int8)
    rows_ok = (np.sort(sol, axis=2) == full).all(axis=(1, 2))
    cols_ok = (np.sort(sol, axis=1) == full[:, None]).all(axis=(1, 2))
    boxes = sol.reshape(b, n // br, br, n // bc, bc).transpose(0, 1, 3, 2, 4).reshape(b, n, n)
    boxes_ok = (np.sort(boxes, axis=2) == full).all(axis=(1, 2))
    givens_ok = ((puzzles == 0) | (puzzles == solutions)).all(axis=(1, 2))
    return rows_ok & cols_ok & boxes_ok & givens_ok


DATASETS: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add a spec to :data:`DATASETS` (names are unique)."""
    if spec.name in DATASETS:
        raise ValueError(f"dataset {spec.name!r} is already registered")
    DATASETS[spec.name] = spec
    return spec


def get_dataset(name: str) -> DatasetSpec:
    """Look a spec up by name; an unknown name raises an error listing the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}") from None


register(
    DatasetSpec(
        "sudoku-extreme",
        "sudoku",
        9,
        "9×9 Sudoku whose rating (guesses to first solution) follows Sudoku-Extreme's distribution",
        box=(3, 3),
        profile="extreme",
    )
)
register(
    DatasetSpec("sudoku6", "sudoku", 6, "6×6 Sudoku (2×3 boxes) with a unique solution", box=(2, 3), profile="any")
)
register(
    DatasetSpec("sudoku4", "sudoku", 4, "4×4 Sudoku (2×2 boxes) with a unique solution", box=(2, 2), profile="any")
)
register(
    DatasetSpec(
        "maze-hard", "maze", 30, "30×30 maze, shortest path ≥ 110 cells (Maze-Hard)", maze_preset="maze-hard", max_aug=7
    )
)
register(
    DatasetSpec("maze-small", "maze", 12, "12×12 maze with a long shortest path", maze_preset="maze-small", max_aug=7)
)
