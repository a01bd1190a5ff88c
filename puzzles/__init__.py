"""Sudoku-Extreme and Maze-Hard: generators, exact solvers, raters, data formats and datasets."""
