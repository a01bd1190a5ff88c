"""Tiny numpy raster helpers shared by the puzzle environments' ``rgb_array`` rendering.

Nothing here depends on a graphics library: images are ``uint8`` arrays of shape ``(H, W, 3)``
drawn with slicing. A board of ``rows x cols`` cells, each ``cell`` pixels apart, is an image of
``(rows * cell + 1, cols * cell + 1, 3)`` pixels; grid line ``i`` lies on pixel row/column
``i * cell``, so the interior of cell ``(r, c)`` is
``[r * cell + 1, (r + 1) * cell) x [c * cell + 1, (c + 1) * cell)``. Digits use a hand-made 5x7
bitmap font (:data:`FONT_5X7`) scaled up by whole pixels.

Usage::

    from puzzles.envs.render import BLACK, BLUE, new_canvas, draw_grid, draw_digit, fill_cells
    img = new_canvas(9, 9, cell=36)                        # white (325, 325, 3) uint8
    fill_cells(img, walls, cell=36, color=(40, 40, 40))    # walls: (9, 9) bool
    draw_grid(img, 9, 9, cell=36, thick_every=(3, 3))      # thin lines, thick box borders
    draw_digit(img, 0, 4, 7, cell=36, color=BLUE)          # a blue 7 in row 0, column 4
"""

from __future__ import annotations

import numpy as np

#: Colours as RGB triples.
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
BLUE = (30, 90, 220)
RED = (210, 40, 40)
GREEN = (40, 160, 60)
GREY = (170, 170, 170)

_FONT_ROWS = {
    0: (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    1: ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    2: (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    3: ("#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."),
    4: ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    5: ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    6: ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    7: ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    8: (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    9: (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
}

#: ``(10, 7, 5)`` bool: ``FONT_5X7[d]`` is the bitmap of digit ``d`` (7 rows, 5 columns, True = ink).
FONT_5X7: np.ndarray = np.array(
    [[[ch == "#" for ch in row] for row in _FONT_ROWS[d]] for d in range(10)],
    dtype=bool,
)
FONT_5X7.setflags(write=False)


def glyph(digit: int, scale: int = 1) -> np.ndarray:
    """Bitmap of one digit scaled by a whole factor.

    Args:
        digit: 0..9.
        scale: pixels per font pixel (>= 1).

    Returns:
        ``(7 * scale, 5 * scale)`` bool array.
    """
    if not 0 <= int(digit) <= 9:
        raise ValueError(f"the 5x7 font has digits 0-9 only, got {digit}")
    scale = max(1, int(scale))
    return np.kron(FONT_5X7[int(digit)], np.ones((scale, scale), dtype=bool))


def number_glyph(value: int, scale: int = 1) -> np.ndarray:
    """Bitmap of a non-negative integer written in decimal, one blank font column between digits.

    Returns:
        ``(7 * scale, (6 * len(str(value)) - 1) * scale)`` bool array.
    """
    if int(value) < 0:
        raise ValueError(f"number_glyph draws non-negative integers, got {value}")
    parts = []
    for i, ch in enumerate(str(int(value))):
        if i:
            parts.append(np.zeros((7, 1), dtype=bool))
        parts.append(FONT_5X7[int(ch)])
    return np.kron(np.hstack(parts), np.ones((max(1, int(scale)),) * 2, dtype=bool))


def new_canvas(rows: int, cols: int, cell: int, color: tuple[int, int, int] = WHITE) -> np.ndarray:
    """A blank image for a board of ``rows x cols`` cells.

    Returns:
        ``(rows * cell + 1, cols * cell + 1, 3)`` uint8, filled with ``color``.
    """
    img = np.empty((rows * cell + 1, cols * cell + 1, 3), dtype=np.uint8)
    img[:] = np.asarray(color, dtype=np.uint8)
    return img


def cell_bounds(r: int, c: int, cell: int) -> tuple[int, int, int, int]:
    """Interior pixel bounds ``(y0, y1, x0, x1)`` (half-open, grid lines excluded) of cell ``(r, c)``."""
    return r * cell + 1, (r + 1) * cell, c * cell + 1, (c + 1) * cell


def fill_cells(img: np.ndarray, mask: np.ndarray, cell: int, color: tuple[int, int, int]) -> np.ndarray:
    """Paint every cell where ``mask`` is True (vectorised; grid lines drawn later stay on top).

    Args:
        img: ``(rows * cell + 1, cols * cell + 1, 3)`` uint8 canvas, modified in place.
        mask: ``(rows, cols)`` bool.
        cell: cell pitch in pixels.
        color: RGB.

    Returns:
        ``img``.
    """
    mask = np.asarray(mask, dtype=bool)
    rows, cols = mask.shape
    big = np.kron(mask, np.ones((cell, cell), dtype=bool))
    img[: rows * cell, : cols * cell][big] = np.asarray(color, dtype=np.uint8)
    return img


def draw_grid(
    img: np.ndarray,
    rows: int,
    cols: int,
    cell: int,
    *,
    color: tuple[int, int, int] = GREY,
    thick_every: tuple[int, int] | None = None,
    thick_color: tuple[int, int, int] = BLACK,
    thick: int = 3,
) -> np.ndarray:
    """Draw 1-pixel cell lines, and thicker lines every ``thick_every = (rows, cols)`` cells and on the border.

    Args:
        img: ``(rows * cell + 1, cols * cell + 1, 3)`` uint8 canvas, modified in place.
        rows: board height in cells.
        cols: board width in cells.
        cell: cell pitch in pixels.
        color: colour of the thin lines.
        thick_every: box shape ``(box_rows, box_cols)``; ``None`` draws only the thick outer border.
        thick_color: colour of the thick lines.
        thick: width of the thick lines in pixels (centred on the thin line, clipped at the edge).

    Returns:
        ``img``.
    """
    h, w = rows * cell + 1, cols * cell + 1
    img[::cell, :w] = color
    img[:h, ::cell] = color
    br, bc = thick_every if thick_every is not None else (rows, cols)
    half = thick // 2
    for i in range(0, rows + 1, br):
        y = i * cell
        img[max(0, y - half) : min(h, y + thick - half), :w] = thick_color
    for j in range(0, cols + 1, bc):
        x = j * cell
        img[:h, max(0, x - half) : min(w, x + thick - half)] = thick_color
    return img


def draw_mask_in_cell(img: np.ndarray, r: int, c: int, cell: int, mask: np.ndarray, color) -> np.ndarray:
    """Paint a bool bitmap centred in cell ``(r, c)``; the bitmap is cropped if larger than the cell."""
    y0, y1, x0, x1 = cell_bounds(r, c, cell)
    mh, mw = min(mask.shape[0], y1 - y0), min(mask.shape[1], x1 - x0)
    oy, ox = y0 + (y1 - y0 - mh) // 2, x0 + (x1 - x0 - mw) // 2
    region = img[oy : oy + mh, ox : ox + mw]
    region[mask[:mh, :mw]] = np.asarray(color, dtype=np.uint8)
    return img


def digit_scale(cell: int) -> int:
    """Font scale that makes a digit about 60% of a cell tall."""
    return max(1, (cell * 3 // 5) // 7)


def draw_digit(
    img: np.ndarray, r: int, c: int, digit: int, cell: int, color=BLACK, scale: int | None = None
) -> np.ndarray:
    """Draw ``digit`` (0..9, or a larger integer as several digits) centred in cell ``(r, c)``.

    Args:
        img: canvas from :func:`new_canvas`, modified in place.
        r: cell row.
        c: cell column.
        digit: the number to draw.
        cell: cell pitch in pixels.
        color: RGB.
        scale: font scale; default :func:`digit_scale` of ``cell``.

    Returns:
        ``img``.
    """
    scale = digit_scale(cell) if scale is None else scale
    bitmap = glyph(digit, scale) if 0 <= int(digit) <= 9 else number_glyph(digit, scale)
    return draw_mask_in_cell(img, r, c, cell, bitmap, color)
