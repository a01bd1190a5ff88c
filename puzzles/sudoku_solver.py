"""Exact Sudoku solver, solution counter and difficulty rater, compiled with numba.

Two engines share one API:

* **9x9 (3x3 boxes): a re-implementation of tdoku's ``solver_dpll_triad_simd``** (Tom Dillon,
  github.com/t-dillon/tdoku, BSD-2-Clause), written from its published algorithm in numba. Each
  box keeps 16 candidate sets (its 9 cells, 3 "negative horizontal triads" = values absent from a
  minirow, 3 negative vertical triads); each band/stack keeps, per value, which of the 6 ways of
  placing that value across its three boxes' minirows are still possible. Propagation is message
  passing between boxes and bands (naked singles, hidden singles, locked candidates / triads), in
  the same depth-first order as tdoku, and branching picks the band with the fewest
  configurations and the lowest value with exactly 2 configurations (else 3, else 4 or more),
  asserting the first configuration and then its negation, then choosing afresh. Because order
  and propagation strength are the same, the guess count equals tdoku's (the ``rating`` column of
  the reference CSVs) on every puzzle of top1465, the 17-clue list and the Sudoku-Extreme sample
  (see ``benchmarks/results/sudoku_solver.md``).
  Where tdoku uses 256-bit vectors, this engine uses SWAR ("SIMD within a register"): a box is
  four uint64 words of four 16-bit lanes, a band's six configuration sets are packed 9 bits each
  in one uint64, lane-wise popcounts and compares are branch-free bit tricks, and the message
  handlers are inlined into one loop over a flat state array. It runs within about 1.3x of
  tdoku's own compiled code (see the benchmark results for the measured ratios).
* **any box shape (4x4, 6x6, and 9x9 when a random digit order is wanted):** a bitmask DPLL with
  naked and hidden singles, branching on the first cell with the fewest candidates, digits in a
  given (default ascending, optionally random per cell) order. It counts one guess per digit tried
  at a branch point.

Usage::

    from puzzles.sudoku import parse_sudoku
    from puzzles.sudoku_solver import solve, count_solutions, rate, solve_batch
    g = parse_sudoku("4...3.......6..8..........1....5..9..8....6...7.2........1.27..5.3....4.9........")
    sol = solve(g)                 # (9, 9) int8
    count_solutions(g, limit=2)    # 1 -> unique
    rate(g)                        # 29 guesses, the CSV's rating of this puzzle
    sols, n, guesses = solve_batch(np.stack([g, g]))   # whole loop inside numba

All kernels use ``@njit(cache=True)``: the first call on a machine compiles them (about 6 s for
the 9x9 engine) and later imports load them from numba's cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from llvmlite import ir as llvm_ir
from numba import njit, types
from numba.extending import intrinsic

from puzzles.errors import NoSolutionError, PuzzleError, PuzzleFormatError
from puzzles.sudoku import as_grid, check_digit_array, validate_givens

# ---------------------------------------------------------------------------------------------
# 9x9 (tdoku-style) engine: state layout and SWAR constants
# ---------------------------------------------------------------------------------------------
#
# Why SWAR ("SIMD within a register"): tdoku keeps a box as one 256-bit vector of 16 uint16
# lanes. The first version of this file kept those 16 lanes in an int32 array and looped over
# them; profiling showed that numba did not vectorise any of those loops (table lookups for
# the popcounts, early exits inside lane loops) and paid refcount calls for every 2-D row view
# (``states[d]``, ``sc[sp]``). Here a box is four uint64 words, word i = row i of the 4x4 lane
# matrix (lanes 4i..4i+3 at bits 16j..16j+8), so one 64-bit operation does 4 lanes, a rotation of
# a word rotates a row, and the four words line up the columns. All state is one flat uint64
# array with manual offsets (no views, no refcounts in the hot loop).
#
# Per search depth (``_SW`` = 48 words): words 4b..4b+3 = box b; word 36+k = band k's 6
# configuration sets (9 bits each, packed: configuration c at bits 9c..9c+8); word 42+k = band
# k's pending eliminations in the same packing. Band k = vertical * 3 + index (k < 3: rows of
# boxes, else stacks). Box lane (i, j): i, j < 3 a cell; j == 3 the negative triad of minirow i
# ("value absent from it"); i == 3 the negative triad of minicolumn j; lane (3, 3) is unused and
# always holds every value. Minimum candidate counts: a cell 1, a negative triad 6.

_U = np.uint64
_SW = 48  # state words per depth
_CONF, _ELIM = 36, 42  # offsets of the band configuration / elimination words
_M9 = _U(0x1FF)
_L3 = _U(0x0000_0001_0001_0001)  # 1 in each of the three cell lanes of a row word
_CM = _U(0x0000_01FF_01FF_01FF)  # the three cell lanes of a row word
_ALL4 = _U(0x01FF_01FF_01FF_01FF)  # every value in every lane
_LANE3 = _U(0x01FF_0000_0000_0000)  # every value in lane 3 (the triad / unused lane)
_H4 = _U(0x8000_8000_8000_8000)  # bit 15 of every lane (borrow guard for lane-wise compares)
_H3 = _U(0x0000_8000_8000_8000)
_S3 = _U(0x0000_7FFF_7FFF_7FFF)
_MIN_ROW = _U(0x0006_0001_0001_0001)  # minimum counts of a cell row: 3 cells, 1 negative triad
_MIN_VT = _U(0x0000_0006_0006_0006)  # the row of negative vertical triads (lane 3 unused: 0)
_P1 = _U(0x5555_5555_5555_5555)
_P2 = _U(0x3333_3333_3333_3333)
_P4 = _U(0x0F0F_0F0F_0F0F_0F0F)
_P8 = _U(0x001F_001F_001F_001F)
_C1 = _U(0x0000_2010_0804_0201)  # bit 0 of each of the 6 packed configuration sets
_CONF_ALL = _U((1 << 54) - 1)  # every value in every configuration
_ONE = _U(1)
_ZERO = _U(0)
_TASK_CAP = 8192  # pending propagation messages; never more than ~3 per nesting level
_MAX_DEPTH = 200  # nested guesses; each fixes one (band, value) configuration, at most 54
# Band configuration c places a value in element (minirow / minicolumn) _ELEM[p, c] of peer box
# p: p0 -> 0 1 2 2 0 1, p1 -> 1 2 0 1 2 0, p2 -> 2 0 1 0 1 2 (tdoku's numbering). The functions
# below hard-code that table (``_cfg``, ``_band_task``) so no table is read in the hot loop.
_ELEM = np.array([[0, 1, 2, 2, 0, 1], [1, 2, 0, 1, 2, 0], [2, 0, 1, 0, 1, 2]], dtype=np.int64)
_POP = np.array([bin(i).count("1") for i in range(1 << 9)], dtype=np.int64)  # the generic engine's


@intrinsic
def _popcnt(typingctx, x):
    """Hardware popcount of a uint64 (LLVM ``ctpop``), as int64; numba has no builtin for it."""
    sig = types.int64(types.uint64)

    def codegen(context, builder, signature, args):
        fn = builder.module.declare_intrinsic("llvm.ctpop", [llvm_ir.IntType(64)])
        return builder.call(fn, args)

    return sig, codegen


@njit(cache=True, inline="always")
def _lane_pop(x):
    """Popcount of each 16-bit lane of ``x`` (lanes hold at most 9 bits), branch-free."""
    x = x - ((x >> 1) & _P1)
    x = (x & _P2) + ((x >> 2) & _P2)
    x = (x + (x >> 4)) & _P4
    return (x + (x >> 8)) & _P8


@njit(cache=True, inline="always")
def _once4(x):
    """Bits that occur in exactly one of the four lanes of row word ``x``, kept in that lane."""
    a1 = (x >> 16) | (x << 48)  # rotations of the row: LLVM emits single ``ror`` instructions
    a2 = (x >> 32) | (x << 32)
    a3 = (x >> 48) | (x << 16)
    two = (x & a1) | ((x | a1) & a2) | ((x | a1 | a2) & a3)
    return x & ~two


@njit(cache=True, inline="always")
def _unpack6(X):
    """The six 9-bit configuration sets of a band word (configuration c in bits 9c..9c+8)."""
    return X & _M9, (X >> 9) & _M9, (X >> 18) & _M9, (X >> 27) & _M9, (X >> 36) & _M9, (X >> 45) & _M9


@njit(cache=True, inline="always")
def _cfg(p, m0, m1, m2):
    """Pack per-element sets ``m0..m2`` of peer box ``p`` into configuration lanes (c -> m[_ELEM[p, c]])."""
    if p == 0:
        return m0 | (m1 << 9) | (m2 << 18) | (m2 << 27) | (m0 << 36) | (m1 << 45)
    if p == 1:
        return m1 | (m2 << 9) | (m0 << 18) | (m1 << 27) | (m2 << 36) | (m0 << 45)
    return m2 | (m0 << 9) | (m1 << 18) | (m0 << 27) | (m1 << 36) | (m2 << 45)


@njit(cache=True, inline="always")
def _push(sm, sw, sp, meta, word):
    """Queue a message: ``meta`` = index << 3 | aux << 1 | kind (0 box, 1 band); ``word`` = triads."""
    if sp >= sm.shape[0]:
        raise RuntimeError("sudoku solver: propagation stack overflow")
    sm[sp] = meta
    sw[sp] = word
    return sp + 1


@njit(cache=True, inline="always")
def _box_task(S, o, box, vertical, T, sm, sw, sp):
    """Restrict ``box`` to the positive triads ``T`` of one band, propagate inside it, queue its bands.

    ``T`` holds the triads t0, t1, t2 of the box's three elements in lanes 0..2. Propagation is
    tdoku's: a cell / negative triad at its minimum count asserts what it has left, a value left
    in only one lane of a row or column of the lane matrix is asserted there, and assertions
    become eliminations in the box and pending eliminations of its two bands, to a fixed point.
    Returns ``(ok, sp)``; ``ok`` is False when a cell or negative triad runs out of candidates.
    """
    if vertical == 0:
        # a minirow's cells may hold only its triad; its negative triad only the other two
        t0 = T & _M9
        t1 = (T >> 16) & _M9
        t2 = (T >> 32) & _M9
        c0 = (t0 * _L3) | ((t1 | t2) << 48)
        c1 = (t1 * _L3) | ((t2 | t0) << 48)
        c2 = (t2 * _L3) | ((t0 | t1) << 48)
        c3 = _ALL4
    else:
        c0 = T | _LANE3
        c1 = c0
        c2 = c0
        c3 = ((((T >> 16) | (T << 32)) | ((T >> 32) | (T << 16))) & _CM) | _LANE3
    q = o + 4 * box
    b0 = S[q]
    b1 = S[q + 1]
    b2 = S[q + 2]
    b3 = S[q + 3]
    # w*: eliminations accumulated over the rounds (applying a superset again is harmless)
    w0 = b0 & ~c0
    w1 = b1 & ~c1
    w2 = b2 & ~c2
    w3 = b3 & ~c3
    if (w0 | w1 | w2 | w3) == _ZERO:
        return True, sp
    bi = box // 3
    bj = box - 3 * bi
    ho = o + _ELIM + bi
    vo = o + _ELIM + 3 + bj
    while True:
        b0 &= ~w0
        b1 &= ~w1
        b2 &= ~w2
        b3 &= ~w3
        # lane-wise "count - minimum" with bit 15 set as a borrow guard: a lane whose bit 15 is
        # cleared is below its minimum (no branch per lane, one test for the whole box)
        d0 = (_lane_pop(b0) | _H4) - _MIN_ROW
        d1 = (_lane_pop(b1) | _H4) - _MIN_ROW
        d2 = (_lane_pop(b2) | _H4) - _MIN_ROW
        d3 = (_lane_pop(b3) | _H4) - _MIN_VT
        if (d0 & d1 & d2 & d3 & _H4) != _H4:
            return False, sp
        # lanes exactly at their minimum: d == 0x8000; e - (e >> 15) turns bit 15 into 0x7fff
        e0 = (((d0 ^ _H4) + ~_H4) & _H4) ^ _H4
        e1 = (((d1 ^ _H4) + ~_H4) & _H4) ^ _H4
        e2 = (((d2 ^ _H4) + ~_H4) & _H4) ^ _H4
        e3 = (((d3 ^ _H4) + ~_H4) & _H4) ^ _H4
        a0 = b0 & (e0 - (e0 >> 15))
        a1 = b1 & (e1 - (e1 >> 15))
        a2 = b2 & (e2 - (e2 >> 15))
        a3 = b3 & (e3 - (e3 >> 15))
        # exactly-one clauses along the rows (hidden single in a minirow, or "not in this
        # minirow" when only its negative triad allows the value) and the columns of the matrix
        a0 |= _once4(b0)
        a1 |= _once4(b1)
        a2 |= _once4(b2)
        a3 |= _once4(b3)
        two = (b0 & b1) | ((b0 | b1) & b2) | ((b0 | b1 | b2) & b3)
        a0 |= b0 & ~two
        a1 |= b1 & ~two
        a2 |= b2 & ~two
        a3 |= b3 & ~two
        # cell assertions: an asserted cell drops its other values, every other cell the asserted
        # ones; the row's / column's negative triad drops them too
        x0 = a0 & _CM
        x1 = a1 & _CM
        x2 = a2 & _CM
        r0 = (x0 | (x0 >> 16) | (x0 >> 32)) & _M9
        r1 = (x1 | (x1 >> 16) | (x1 >> 32)) & _M9
        r2 = (x2 | (x2 >> 16) | (x2 >> 32)) & _M9
        col = x0 | x1 | x2
        alls = (r0 | r1 | r2) * _L3
        n0 = (x0 + _S3) & _H3  # bit 15 of each asserted cell lane
        n1 = (x1 + _S3) & _H3
        n2 = (x2 + _S3) & _H3
        n0 = n0 - (n0 >> 15)
        n1 = n1 - (n1 >> 15)
        n2 = n2 - (n2 >> 15)
        w0 |= (n0 & (x0 ^ _CM)) | (alls & ~n0) | (r0 << 48)
        w1 |= (n1 & (x1 ^ _CM)) | (alls & ~n1) | (r1 << 48)
        w2 |= (n2 & (x2 ^ _CM)) | (alls & ~n2) | (r2 << 48)
        w3 |= col
        # band messages: a value asserted in minirow e (or its negative triad asserted) rules
        # out the configurations that put it elsewhere in this box
        h0 = (a0 >> 48) | r1 | r2
        h1 = (a1 >> 48) | r2 | r0
        h2 = (a2 >> 48) | r0 | r1
        k0 = col & _M9
        k1 = (col >> 16) & _M9
        k2 = (col >> 32) & _M9
        v0 = (a3 & _M9) | k1 | k2
        v1 = ((a3 >> 16) & _M9) | k2 | k0
        v2 = ((a3 >> 32) & _M9) | k0 | k1
        S[ho] |= _cfg(bj, h0, h1, h2)
        S[vo] |= _cfg(bi, v0, v1, v2)
        if ((w0 & b0) | (w1 & b1) | (w2 & b2) | (w3 & b3)) == _ZERO:
            break
    S[q] = b0
    S[q + 1] = b1
    S[q + 2] = b2
    S[q + 3] = b3
    # tdoku first messages the band whose orientation is opposite to the inbound one (LIFO)
    if vertical == 1:
        sp = _push(sm, sw, sp, ((3 + bj) << 3) | (bi << 1) | 1, _ZERO)
        sp = _push(sm, sw, sp, (bi << 3) | (bj << 1) | 1, _ZERO)
    else:
        sp = _push(sm, sw, sp, (bi << 3) | (bj << 1) | 1, _ZERO)
        sp = _push(sm, sw, sp, ((3 + bj) << 3) | (bi << 1) | 1, _ZERO)
    return True, sp


@njit(cache=True, inline="always")
def _triad3(t):
    """``t`` if the set has exactly 3 values (a minirow that must hold exactly those), else 0."""
    return t if _popcnt(t) == 3 else _ZERO


@njit(cache=True, inline="always")
def _band_task(S, o, band, from_peer, sm, sw, sp):
    """Apply a band's pending eliminations, one round of triad inference, and queue its 3 boxes."""
    ci = o + _CONF + band
    X = S[ci]
    if (X & S[ci + 6]) == _ZERO:
        return sp
    X &= ~S[ci + 6]
    # positive triads t[p][e] = values that may sit in element e of peer box p: the union of
    # the two configurations that put a value there
    x0, x1, x2, x3, x4, x5 = _unpack6(X)
    # an element that can only hold 3 values holds exactly those: drop the configurations that
    # put one of them elsewhere in its box (one round only, as tdoku does)
    a00 = _triad3(x0 | x4)
    a01 = _triad3(x1 | x5)
    a02 = _triad3(x2 | x3)
    a10 = _triad3(x2 | x5)
    a11 = _triad3(x0 | x3)
    a12 = _triad3(x1 | x4)
    a20 = _triad3(x1 | x3)
    a21 = _triad3(x2 | x4)
    a22 = _triad3(x0 | x5)
    m = _cfg(0, a01 | a02, a02 | a00, a00 | a01)
    m |= _cfg(1, a11 | a12, a12 | a10, a10 | a11)
    m |= _cfg(2, a21 | a22, a22 | a20, a20 | a21)
    X &= ~m
    S[ci] = X
    x0, x1, x2, x3, x4, x5 = _unpack6(X)
    vertical = band // 3
    bidx = band - 3 * vertical
    # queue box restrictions: peers from_peer+1, from_peer+2, then from_peer (LIFO: push reversed)
    for k in range(3):
        p = (from_peer + 3 - k) % 3
        if p == 0:
            T = (x0 | x4) | ((x1 | x5) << 16) | ((x2 | x3) << 32)
        elif p == 1:
            T = (x2 | x5) | ((x0 | x3) << 16) | ((x1 | x4) << 32)
        else:
            T = (x1 | x3) | ((x2 | x4) << 16) | ((x0 | x5) << 32)
        box = bidx * 3 + p if vertical == 0 else p * 3 + bidx
        sp = _push(sm, sw, sp, (box << 3) | (vertical << 1), T)
    return sp


@njit(cache=True)
def _run(S, o, sm, sw, sp):
    """Process queued messages depth-first until none are left; False on a contradiction."""
    while sp > 0:
        sp -= 1
        m = sm[sp]
        if m & 1 == 0:
            ok, sp = _box_task(S, o, m >> 3, (m >> 1) & 3, sw[sp], sm, sw, sp)
            if not ok:
                return False
        else:
            sp = _band_task(S, o, m >> 3, (m >> 1) & 3, sm, sw, sp)
    return True


@njit(cache=True)
def _init_state(S, o, grid81):
    """Load the givens (row-major 81 digits, 0 = blank) at state offset ``o`` without propagating."""
    for i in range(36):
        S[o + i] = _ALL4
    for k in range(6):
        S[o + _CONF + k] = _CONF_ALL
        S[o + _ELIM + k] = _ZERO
    for pos in range(81):
        d = grid81[pos]
        if d == 0:
            continue
        bit = _ONE << (d - 1)
        bi = pos // 27
        bj = (pos % 9) // 3
        ei = (pos // 9) % 3
        ej = pos % 3
        q = o + 4 * (bi * 3 + bj)
        # the given's value leaves the other cells of the box, its minirow's and minicolumn's
        # negative triads; its own cell keeps only that value (0 if it was already excluded)
        keep = S[q + ei] & (bit << (16 * ej))
        for r in range(3):
            S[q + r] &= ~(bit * _L3)
        S[q + ei] = (S[q + ei] & ~(_M9 << (16 * ej)) & ~(bit << 48)) | keep
        S[q + 3] &= ~(bit << (16 * ej))
        mh = (bit if ei != 0 else _ZERO, bit if ei != 1 else _ZERO, bit if ei != 2 else _ZERO)
        mv = (bit if ej != 0 else _ZERO, bit if ej != 1 else _ZERO, bit if ej != 2 else _ZERO)
        S[o + _ELIM + bi] |= _cfg(bj, mh[0], mh[1], mh[2])
        S[o + _ELIM + 3 + bj] |= _cfg(bi, mv[0], mv[1], mv[2])


@njit(cache=True)
def _extract(S, o, out81):
    for pos in range(81):
        box = (pos // 27) * 3 + (pos % 9) // 3
        x = (S[o + 4 * box + (pos // 9) % 3] >> (16 * (pos % 3))) & _M9
        out81[pos] = _popcnt((x & (~x + _ONE)) - _ONE) + 1 if x != _ZERO else 0


@njit(cache=True)
def _choose(S, o):
    """Return ``(band, value)`` to branch on, or ``(-1, -1)`` when every band is fixed."""
    best_band = -1
    best_count = 1 << 30
    for k in range(6):
        n = _popcnt(S[o + _CONF + k])
        # a fixed band has exactly one configuration per value (9 in all)
        if n >= 10 and n < best_count:
            best_count = n
            best_band = k
    if best_band < 0:
        return -1, -1
    X = S[o + _CONF + best_band]
    # tdoku's value rule: the lowest value with exactly 2 configurations, else the lowest with
    # exactly 3, else the lowest with 4 or more (not the one with the fewest: tdoku's bit-parallel
    # counter stops at 4, and matching it is what reproduces its guess counts)
    best_value = -1
    best_rank = 5
    for v in range(9):
        n = _popcnt(X & (_C1 << v))
        rank = n if n < 4 else 4
        if n >= 2 and rank < best_rank:
            best_rank = rank
            best_value = v
    return best_band, best_value


@njit(cache=True)
def _solve9(grid81, limit, out81, S, sm, sw, bv):
    """Count solutions of a 9x9 puzzle up to ``limit``; returns ``(n_solutions, guesses)``.

    ``out81`` receives the first solution found (unchanged when there is none). ``S`` holds one
    ``_SW``-word state per search depth, ``sm``/``sw`` the message stack, ``bv`` the (band,
    value) branched on at each depth (see :func:`_scratch9`).
    """
    _init_state(S, 0, grid81)
    # six batched band updates, in tdoku's order (band, inbound peer); pushed reversed (LIFO)
    sp = 0
    sp = _push(sm, sw, sp, (5 << 3) | 1, _ZERO)
    sp = _push(sm, sw, sp, (2 << 3) | 1, _ZERO)
    sp = _push(sm, sw, sp, (4 << 3) | (2 << 1) | 1, _ZERO)
    sp = _push(sm, sw, sp, (1 << 3) | (2 << 1) | 1, _ZERO)
    sp = _push(sm, sw, sp, (3 << 3) | (1 << 1) | 1, _ZERO)
    sp = _push(sm, sw, sp, (0 << 3) | (1 << 1) | 1, _ZERO)
    if not _run(S, 0, sm, sw, sp):
        return 0, 0
    nsol = 0
    guesses = 0
    d = 0
    depth_cap = S.shape[0] // _SW
    # actions: 0 = choose a branch at depth d, 1 = guess (assert first config) at d,
    # 2 = negate the first config at d, 3 = return from depth d
    action = 0
    while True:
        o = d * _SW
        if action == 0:
            band, value = _choose(S, o)
            if band < 0:
                if nsol == 0:
                    _extract(S, o, out81)
                nsol += 1
                if nsol >= limit:
                    break
                action = 3
            else:
                bv[2 * d] = band
                bv[2 * d + 1] = value
                action = 1
        elif action == 1:
            guesses += 1
            if d + 1 >= depth_cap:
                raise RuntimeError("sudoku solver: search too deep")
            # the child state is a copy (384 bytes, a vectorised loop); the parent stays for
            # the negation branch
            for i in range(_SW):
                S[o + _SW + i] = S[o + i]
            band = bv[2 * d]
            vc = S[o + _CONF + band] & (_C1 << bv[2 * d + 1])
            # assert the first configuration by eliminating the others
            S[o + _SW + _ELIM + band] |= vc & (vc - _ONE)
            sp = _push(sm, sw, 0, (band << 3) | 1, _ZERO)
            if _run(S, o + _SW, sm, sw, sp):
                d += 1
                action = 0
            else:
                action = 2
        elif action == 2:
            band = bv[2 * d]
            vc = S[o + _CONF + band] & (_C1 << bv[2 * d + 1])
            S[o + _ELIM + band] |= vc & (~vc + _ONE)  # negate the first configuration
            sp = _push(sm, sw, 0, (band << 3) | 1, _ZERO)
            # after the negation, choose afresh (tdoku recurses into a new choice; guessing again
            # on the same band and value would be a different search)
            action = 0 if _run(S, o, sm, sw, sp) else 3
        else:
            if d == 0:
                break
            d -= 1
            action = 2
    return nsol, guesses


@njit(cache=True)
def _scratch9():
    """Scratch of :func:`_solve9`: ``(states, message kinds, message words, branch log)``."""
    S = np.empty(_MAX_DEPTH * _SW, dtype=np.uint64)
    sm = np.empty(_TASK_CAP, dtype=np.int64)
    sw = np.empty(_TASK_CAP, dtype=np.uint64)
    bv = np.empty(2 * _MAX_DEPTH, dtype=np.int64)
    return S, sm, sw, bv


@njit(cache=True)
def _solve9_batch(grids, limit, out, nsols, guesses):
    S, sm, sw, bv = _scratch9()
    for i in range(grids.shape[0]):
        n, g = _solve9(grids[i], limit, out[i], S, sm, sw, bv)
        nsols[i] = n
        guesses[i] = g


@njit(cache=True)
def _solve9_s(grid81, limit, out81, s9):
    """:func:`_solve9` with the scratch tuple of :func:`_scratch9` (the generator's entry point)."""
    S, sm, sw, bv = s9
    return _solve9(grid81, limit, out81, S, sm, sw, bv)


# ---------------------------------------------------------------------------------------------
# generic engine (any r x c box): bitmask DPLL with naked / hidden singles
# ---------------------------------------------------------------------------------------------


@cache
def unit_tables(box: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(units, peers)`` index tables of a sudoku with the given box shape.

    ``units`` is ``(3N, N)``: the flat cell indices of every row, column and box. ``peers`` is
    ``(N*N, P)``: the cells sharing a unit with each cell (``P = 3N - br - bc - 1``).
    """
    br, bc = box
    n = br * bc
    units = []
    for r in range(n):
        units.append([r * n + c for c in range(n)])
    for c in range(n):
        units.append([r * n + c for r in range(n)])
    for b in range(n):
        r0, c0 = (b // br) * br, (b % br) * bc
        units.append([(r0 + i) * n + c0 + j for i in range(br) for j in range(bc)])
    peers = []
    for cell in range(n * n):
        ps = sorted({x for u in units if cell in u for x in u} - {cell})
        peers.append(ps)
    return np.array(units, dtype=np.int64), np.array(peers, dtype=np.int64)


@njit(cache=True)
def _g_propagate(cand, done, units, peers, full):
    """Naked and hidden singles to a fixed point; False on a contradiction."""
    nn = cand.shape[0]
    changed = True
    while changed:
        changed = False
        for cell in range(nn):
            x = cand[cell]
            if x == 0:
                return False
            if done[cell] == 0 and _POP[x] == 1:
                done[cell] = 1
                for k in range(peers.shape[1]):
                    q = peers[cell, k]
                    if cand[q] & x:
                        cand[q] &= x ^ 0xFFFF
                        if cand[q] == 0:
                            return False
                        changed = True
        for u in range(units.shape[0]):
            one = 0
            two = 0
            for k in range(units.shape[1]):
                x = cand[units[u, k]]
                two |= one & x
                one |= x
            if one != full:
                return False
            hidden = one & (two ^ 0xFFFF)
            if hidden == 0:
                continue
            for k in range(units.shape[1]):
                q = units[u, k]
                x = cand[q]
                h = x & hidden
                if h != 0 and x != h:
                    if _POP[h] > 1:
                        return False
                    cand[q] = h
                    changed = True
    return True


@njit(cache=True)
def _g_solve(grid, limit, order, units, peers, n, out, cands, dones, rem, cells, max_guesses):
    """Count solutions up to ``limit`` (first one into ``out``); returns ``(n_solutions, guesses)``.

    ``order[cell]`` lists the digits (1..n) in the order they are tried at that cell. The search
    stops early (returning what it has) after ``max_guesses`` guesses when that is positive.
    """
    nn = n * n
    full = (1 << n) - 1
    c0 = cands[0]
    d0 = dones[0]
    for i in range(nn):
        c0[i] = full if grid[i] == 0 else 1 << (grid[i] - 1)
        d0[i] = 0
    if not _g_propagate(c0, d0, units, peers, full):
        return 0, 0
    nsol = 0
    guesses = 0
    d = 0
    expand = True
    while True:
        if expand:
            c = cands[d]
            best = -1
            bestn = 99
            for i in range(nn):
                k = _POP[c[i]]
                if k > 1 and k < bestn:
                    bestn = k
                    best = i
                    if k == 2:
                        break
            if best < 0:
                if nsol == 0:
                    for i in range(nn):
                        x = c[i]
                        v = 0
                        while not (x >> v) & 1:
                            v += 1
                        out[i] = v + 1
                nsol += 1
                if nsol >= limit:
                    break
                expand = False
                d -= 1
                if d < 0:
                    break
                continue
            cells[d] = best
            rem[d] = c[best]
        # try the next remaining digit of the branch cell at depth d
        cell = cells[d]
        tried = False
        while rem[d] != 0:
            if max_guesses > 0 and guesses >= max_guesses:
                return nsol, guesses
            bit = 0
            for k in range(n):
                b = 1 << (order[cell, k] - 1)
                if rem[d] & b:
                    bit = b
                    break
            rem[d] &= bit ^ 0xFFFF
            guesses += 1
            if d + 1 >= cands.shape[0]:
                raise RuntimeError("sudoku solver: search too deep")
            cands[d + 1][:] = cands[d]
            dones[d + 1][:] = dones[d]
            cands[d + 1][cell] = bit
            if _g_propagate(cands[d + 1], dones[d + 1], units, peers, full):
                d += 1
                tried = True
                break
        if tried:
            expand = True
            continue
        expand = False
        d -= 1
        if d < 0:
            break
    return nsol, guesses


@njit(cache=True)
def _g_solve_batch(grids, limit, order, units, peers, n, out, nsols, guesses):
    nn = n * n
    cands = np.empty((nn + 2, nn), dtype=np.int32)
    dones = np.empty((nn + 2, nn), dtype=np.uint8)
    rem = np.empty(nn + 2, dtype=np.int64)
    cells = np.empty(nn + 2, dtype=np.int64)
    for i in range(grids.shape[0]):
        a, g = _g_solve(grids[i], limit, order, units, peers, n, out[i], cands, dones, rem, cells, 0)
        nsols[i] = a
        guesses[i] = g


@njit(cache=True)
def _givens_ok_batch(grids, units):
    """Index of the first grid with a repeated given in some unit, or -1."""
    for i in range(grids.shape[0]):
        g = grids[i]
        for u in range(units.shape[0]):
            seen = 0
            for k in range(units.shape[1]):
                v = g[units[u, k]]
                if v != 0:
                    b = 1 << v
                    if seen & b:
                        return i
                    seen |= b
    return -1


# ---------------------------------------------------------------------------------------------
# Python API
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SolveResult:
    """Outcome of :func:`solve_full`.

    Attributes:
        solution: ``(N, N)`` int8, the first solution found (all zeros when there is none).
        n_solutions: number of solutions found, capped at the requested ``limit``.
        guesses: branching decisions made (for 9x9, tdoku's guess count = Sudoku-Extreme rating).
    """

    solution: np.ndarray
    n_solutions: int
    guesses: int

    @property
    def unique(self) -> bool:
        """Whether exactly one solution exists (meaningful when ``limit >= 2``)."""
        return self.n_solutions == 1


def _identity_order(n: int) -> np.ndarray:
    return np.tile(np.arange(1, n + 1, dtype=np.int64), (n * n, 1))


def _check_batch(grids: np.ndarray, box: tuple[int, int] | None) -> tuple[np.ndarray, tuple[int, int]]:
    a = np.asarray(grids)
    if a.ndim != 3:
        raise PuzzleFormatError(f"a batch of sudoku grids must have shape (B, N, N), got {a.shape}")
    a, box = check_digit_array(a, box)
    n = a.shape[1]
    g = a.reshape(a.shape[0], n * n)
    units, _ = unit_tables(box)
    i = _givens_ok_batch(g, units)
    if i >= 0:
        try:
            validate_givens(a[i], box)
        except PuzzleError as e:  # name the offending grid, keep the error type
            raise type(e)(f"grid {i}: {e}") from None
    return g, box


def solve_batch(
    grids: np.ndarray, limit: int = 1, box: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Solve (or count solutions of) a batch of puzzles in one compiled loop.

    Args:
        grids: ``(B, N, N)`` integer array, 0 = blank.
        limit: stop counting a puzzle's solutions at this many (1 = first solution; 2 = uniqueness).
        box: box shape; default from N.

    Returns:
        ``(solutions (B, N, N) int8, n_solutions (B,) int32, guesses (B,) int64)``; a puzzle with no
        solution gets an all-zero grid and ``n_solutions == 0``.

    Raises:
        PuzzleFormatError, PuzzleConstraintError: a malformed grid (the message names its index).
    """
    if int(limit) < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    g, box = _check_batch(grids, box)
    b, nn = g.shape
    n = box[0] * box[1]
    out = np.zeros((b, nn), dtype=np.int8)
    nsols = np.zeros(b, dtype=np.int32)
    guesses = np.zeros(b, dtype=np.int64)
    if box == (3, 3):
        _solve9_batch(g, int(limit), out, nsols, guesses)
    else:
        units, peers = unit_tables(box)
        _g_solve_batch(g, int(limit), _identity_order(n), units, peers, n, out, nsols, guesses)
    return out.reshape(b, n, n), nsols, guesses


def rate_batch(grids: np.ndarray, box: tuple[int, int] | None = None) -> np.ndarray:
    """Guesses to the first solution for each puzzle (``(B,)`` int64); see :func:`rate`."""
    return solve_batch(grids, 1, box)[2]


def solve_full(grid: np.ndarray, limit: int = 1, box: tuple[int, int] | None = None) -> SolveResult:
    """Solve one puzzle, counting solutions up to ``limit`` and guesses.

    Raises:
        PuzzleFormatError, PuzzleConstraintError: malformed grid or repeated givens.
    """
    g = as_grid(grid, box)
    sols, nsols, guesses = solve_batch(g[None], limit, box)
    return SolveResult(sols[0], int(nsols[0]), int(guesses[0]))


def solve(grid: np.ndarray, box: tuple[int, int] | None = None) -> np.ndarray:
    """Return a solution of ``grid`` (the first one found) as an ``(N, N)`` int8 array.

    Raises:
        NoSolutionError: the puzzle has no solution.
        PuzzleFormatError, PuzzleConstraintError: malformed grid or repeated givens.
    """
    res = solve_full(grid, 1, box)
    if res.n_solutions == 0:
        raise NoSolutionError("the sudoku has no solution (its givens are consistent but contradictory)")
    return res.solution


def count_solutions(grid: np.ndarray, limit: int = 2, box: tuple[int, int] | None = None) -> int:
    """Number of solutions, counted up to ``limit`` (``limit=2`` answers "is it unique?")."""
    return solve_full(grid, limit, box).n_solutions


def rate(grid: np.ndarray, box: tuple[int, int] | None = None) -> int:
    """Difficulty rating: guesses to the first solution of the puzzle as stored.

    For 9x9 this is tdoku's guess count, the ``rating`` column of the Sudoku-Extreme CSV; it
    depends on the orientation and digit labels (an augmented copy can rate differently).
    """
    return solve_full(grid, 1, box).guesses


def random_solution(rng: np.random.Generator, box: tuple[int, int] = (3, 3)) -> np.ndarray:
    """Draw a random complete grid (random digit order per cell in a DPLL search on an empty grid)."""
    br, bc = box
    n = br * bc
    units, peers = unit_tables((br, bc))
    order = np.argsort(rng.random((n * n, n)), axis=1).astype(np.int64) + 1
    out = np.zeros((1, n * n), dtype=np.int8)
    nsols = np.zeros(1, dtype=np.int32)
    guesses = np.zeros(1, dtype=np.int64)
    _g_solve_batch(np.zeros((1, n * n), np.int8), 1, order, units, peers, n, out, nsols, guesses)
    return out.reshape(n, n)
