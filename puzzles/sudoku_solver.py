"""Exact Sudoku solver, solution counter and difficulty rater, compiled with numba.

Two engines share one API:

* **9x9 (3x3 boxes): a re-implementation of tdoku's ``solver_dpll_triad_simd``** (Tom Dillon,
  github.com/t-dillon/tdoku, BSD-2-Clause), written from its published algorithm in plain scalar
  numba code. Each box keeps 16 candidate sets (its 9 cells, 3 "negative horizontal triads" =
  values absent from a minirow, 3 negative vertical triads); each band/stack keeps, per value, which
  of the 6 ways of placing that value across its three boxes' minirows are still possible.
  Propagation is message passing between boxes and bands (naked singles, hidden singles, locked
  candidates / triads), in the same depth-first order as tdoku, and branching picks the band with
  the fewest configurations and the value with the fewest (>= 2) configurations, asserting the
  first configuration and then its negation. Because order and propagation strength are the same,
  the guess count reproduces the ``rating`` column of the Sudoku-Extreme CSV (tdoku's guess count)
  exactly on the reference data (see ``benchmarks/results/sudoku_solver.md``).
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

All kernels use ``@njit(cache=True)``: the first import on a machine compiles them (a few seconds)
and later imports load them from numba's cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from numba import njit

from puzzles.errors import NoSolutionError, PuzzleError, PuzzleFormatError
from puzzles.sudoku import as_grid, check_digit_array, validate_givens

# ---------------------------------------------------------------------------------------------
# tables of the 9x9 (tdoku-style) engine
# ---------------------------------------------------------------------------------------------

K_ALL = 0x1FF
# state layout (int32 lanes holding 9-bit sets): 9 boxes x 16 lanes, then 6 bands x 8
# configuration lanes, then 6 bands x 8 pending-elimination lanes.
# Band k = vertical * 3 + index (k < 3: rows of boxes, else stacks).
_BOX_OFF, _CONF_OFF, _ELIM_OFF, _STATE_LEN = 0, 144, 192, 240
# box lane l = 4 * i + j: i, j < 3 a cell; j == 3 the negative triad of minirow i; i == 3 the negative
# triad of minicolumn j; lane 15 is unused. Minimum candidate counts: a cell needs 1 value, a
# negative triad 6 (a minirow holds exactly 3 of the 9 values).
_BOX_MIN = np.array([1, 1, 1, 6, 1, 1, 1, 6, 1, 1, 1, 6, 6, 6, 6, 0], dtype=np.int64)
# _ELEM[p, c]: in band configuration c, the minirow (element) that the value occupies in box p.
_ELEM = np.array([[0, 1, 2, 2, 0, 1], [1, 2, 0, 1, 2, 0], [2, 0, 1, 0, 1, 2]], dtype=np.int64)
# the two configurations that put the value in element e of peer box p
_TRI_A = np.zeros((3, 3), dtype=np.int64)
_TRI_B = np.zeros((3, 3), dtype=np.int64)
for _p in range(3):
    for _e in range(3):
        _cs = [c for c in range(6) if _ELEM[_p, c] == _e]
        _TRI_A[_p, _e], _TRI_B[_p, _e] = _cs
_POP = np.array([bin(i).count("1") for i in range(1 << 9)], dtype=np.int64)  # lanes hold 9-bit sets
_KIND_BOX, _KIND_BAND = 0, 1
_TASK_CAP = 8192  # pending propagation messages; never more than ~3 per nesting level
_MAX_DEPTH = 200  # nested guesses; each fixes one (band, value) configuration, at most 54


@njit(cache=True)
def _push_box(sk, sa, sb, sc, sp, box, vertical, t0, t1, t2):
    """Queue a restriction of ``box`` to the positive triads ``t0, t1, t2`` of one band."""
    if sp >= sk.shape[0]:
        raise RuntimeError("sudoku solver: propagation stack overflow")
    sk[sp] = _KIND_BOX
    sa[sp] = box
    sb[sp] = vertical
    row = sc[sp]
    t = (t0, t1, t2)
    if vertical == 0:
        for e in range(3):
            te = t[e]
            row[4 * e] = te
            row[4 * e + 1] = te
            row[4 * e + 2] = te
            # value absent from minirow e <=> it is in one of the two other minirows
            row[4 * e + 3] = t[(e + 1) % 3] | t[(e + 2) % 3]
        for j in range(12, 16):
            row[j] = K_ALL
    else:
        for i in range(3):
            for j in range(3):
                row[4 * i + j] = t[j]
            row[4 * i + 3] = K_ALL
        for j in range(3):
            row[12 + j] = t[(j + 1) % 3] | t[(j + 2) % 3]
        row[15] = K_ALL
    return sp + 1


@njit(cache=True)
def _push_band(sk, sa, sb, sp, band, from_peer):
    if sp >= sk.shape[0]:
        raise RuntimeError("sudoku solver: propagation stack overflow")
    sk[sp] = _KIND_BAND
    sa[sp] = band
    sb[sp] = from_peer
    return sp + 1


@njit(cache=True)
def _box_task(st, box, cand, from_vertical, sk, sa, sb, sc, sp, w):
    """Restrict one box to ``cand``, propagate inside it, then queue its two bands.

    ``w[0:16]`` accumulates the box's eliminations, ``w[16:32]`` holds the assertions of one round.
    Returns ``(ok, sp)``; ``ok`` is False when a cell or negative triad runs out of candidates.
    """
    base = box * 16
    anyel = 0
    for lane in range(16):
        e = st[base + lane] & (cand[lane] ^ 0xFFFF)
        w[lane] = e
        anyel |= e
    if anyel == 0:
        return True, sp
    box_i = box // 3
    box_j = box % 3
    ho = _ELIM_OFF + box_i * 8
    vo = _ELIM_OFF + (3 + box_j) * 8
    while True:
        # apply eliminations; a cell / negative triad at its minimum asserts what it has left
        for lane in range(16):
            x = st[base + lane] & (w[lane] ^ 0xFFFF)
            st[base + lane] = x
            c = _POP[x]
            m = _BOX_MIN[lane]
            if c < m:
                return False, sp
            w[16 + lane] = x if c == m else 0
        # exactly-one clauses along each row and column of the 4x4 lane matrix: a value left in
        # only one lane of a row/column is asserted there (hidden singles within a minirow, and
        # "value not in this minirow" when only the negative triad still allows it)
        for r in range(4):
            b = base + 4 * r
            x0 = st[b]
            x1 = st[b + 1]
            x2 = st[b + 2]
            x3 = st[b + 3]
            two = (x0 & x1) | ((x0 | x1) & x2) | ((x0 | x1 | x2) & x3)
            nt = two ^ 0xFFFF
            w[16 + 4 * r] |= x0 & nt
            w[17 + 4 * r] |= x1 & nt
            w[18 + 4 * r] |= x2 & nt
            w[19 + 4 * r] |= x3 & nt
        for j in range(4):
            x0 = st[base + j]
            x1 = st[base + 4 + j]
            x2 = st[base + 8 + j]
            x3 = st[base + 12 + j]
            two = (x0 & x1) | ((x0 | x1) & x2) | ((x0 | x1 | x2) & x3)
            nt = two ^ 0xFFFF
            w[16 + j] |= x0 & nt
            w[20 + j] |= x1 & nt
            w[24 + j] |= x2 & nt
            w[28 + j] |= x3 & nt
        # cell assertions -> eliminations in the box, positive / negative triads -> band messages
        r0 = w[16] | w[17] | w[18]
        r1 = w[20] | w[21] | w[22]
        r2 = w[24] | w[25] | w[26]
        c0 = w[16] | w[20] | w[24]
        c1 = w[17] | w[21] | w[25]
        c2 = w[18] | w[22] | w[26]
        allr = r0 | r1 | r2
        for i in range(3):
            ri = r0 if i == 0 else (r1 if i == 1 else r2)
            for j in range(3):
                lane = 4 * i + j
                ai = w[16 + lane]
                if ai != 0:
                    w[lane] |= 0xFFFF ^ ai
                else:
                    w[lane] |= allr | ri
            w[4 * i + 3] |= ri
        w[12] |= c0
        w[13] |= c1
        w[14] |= c2
        nh0 = w[19]
        nh1 = w[23]
        nh2 = w[27]
        nv0 = w[28]
        nv1 = w[29]
        nv2 = w[30]
        for c in range(6):
            e = _ELEM[box_j, c]
            if e == 0:
                st[ho + c] |= nh0 | r1 | r2
            elif e == 1:
                st[ho + c] |= nh1 | r2 | r0
            else:
                st[ho + c] |= nh2 | r0 | r1
            e = _ELEM[box_i, c]
            if e == 0:
                st[vo + c] |= nv0 | c1 | c2
            elif e == 1:
                st[vo + c] |= nv1 | c2 | c0
            else:
                st[vo + c] |= nv2 | c0 | c1
        more = 0
        for lane in range(16):
            more |= w[lane] & st[base + lane]
        if more == 0:
            break
    # tdoku first messages the band whose orientation is opposite to the inbound one
    if from_vertical == 1:
        sp = _push_band(sk, sa, sb, sp, 3 + box_j, box_i)
        sp = _push_band(sk, sa, sb, sp, box_i, box_j)
    else:
        sp = _push_band(sk, sa, sb, sp, box_i, box_j)
        sp = _push_band(sk, sa, sb, sp, 3 + box_j, box_i)
    return True, sp


@njit(cache=True)
def _band_task(st, band, from_peer, sk, sa, sb, sc, sp):
    """Apply a band's pending eliminations, one round of triad inference, and queue its 3 boxes."""
    co = _CONF_OFF + band * 8
    eo = _ELIM_OFF + band * 8
    anyel = 0
    for c in range(6):
        e = st[co + c] & st[eo + c]
        anyel |= e
        st[co + c] ^= e
    if anyel == 0:
        return True, sp
    vertical = band // 3
    bidx = band % 3
    # a (box, minirow) that can only hold 3 values must hold exactly those 3: drop configurations
    # that put one of them elsewhere in that box (one round only, as tdoku does)
    m0 = 0
    m1 = 0
    m2 = 0
    m3 = 0
    m4 = 0
    m5 = 0
    for p in range(3):
        for e in range(3):
            t = st[co + _TRI_A[p, e]] | st[co + _TRI_B[p, e]]
            if _POP[t] == 3:
                # configurations with value in another element of box p lose the bits in t
                for c in range(6):
                    if _ELEM[p, c] != e:
                        if c == 0:
                            m0 |= t
                        elif c == 1:
                            m1 |= t
                        elif c == 2:
                            m2 |= t
                        elif c == 3:
                            m3 |= t
                        elif c == 4:
                            m4 |= t
                        else:
                            m5 |= t
    st[co + 0] &= m0 ^ 0xFFFF
    st[co + 1] &= m1 ^ 0xFFFF
    st[co + 2] &= m2 ^ 0xFFFF
    st[co + 3] &= m3 ^ 0xFFFF
    st[co + 4] &= m4 ^ 0xFFFF
    st[co + 5] &= m5 ^ 0xFFFF
    # queue box restrictions: peers from_peer+1, from_peer+2, then from_peer (LIFO: push reversed)
    for k in range(3):
        p = (from_peer + 3 - k) % 3  # k = 0, 1, 2 -> from_peer, from_peer + 2, from_peer + 1
        t0 = st[co + _TRI_A[p, 0]] | st[co + _TRI_B[p, 0]]
        t1 = st[co + _TRI_A[p, 1]] | st[co + _TRI_B[p, 1]]
        t2 = st[co + _TRI_A[p, 2]] | st[co + _TRI_B[p, 2]]
        box = bidx * 3 + p if vertical == 0 else p * 3 + bidx
        sp = _push_box(sk, sa, sb, sc, sp, box, vertical, t0, t1, t2)
    return True, sp


@njit(cache=True)
def _run(st, sk, sa, sb, sc, sp, w):
    """Process queued messages depth-first until none are left; False on a contradiction."""
    while sp > 0:
        sp -= 1
        if sk[sp] == _KIND_BOX:
            ok, sp = _box_task(st, sa[sp], sc[sp], sb[sp], sk, sa, sb, sc, sp, w)
        else:
            ok, sp = _band_task(st, sa[sp], sb[sp], sk, sa, sb, sc, sp)
        if not ok:
            return False
    return True


@njit(cache=True)
def _init_state(st, grid81):
    """Load the givens (row-major 81 digits, 0 = blank) without propagating."""
    for lane in range(144):
        st[lane] = K_ALL
    for k in range(6):
        for c in range(8):
            st[_CONF_OFF + k * 8 + c] = K_ALL if c < 6 else 0
            st[_ELIM_OFF + k * 8 + c] = 0
    for pos in range(81):
        d = grid81[pos]
        if d == 0:
            continue
        bit = 1 << (d - 1)
        box_i = pos // 27
        box_j = (pos % 9) // 3
        base = (box_i * 3 + box_j) * 16
        ei = (pos // 9) % 3
        ej = pos % 3
        elem = ei * 4 + ej
        for j in range(15):
            if j == elem:
                st[base + j] &= bit
            elif (j // 4 < 3 and j % 4 < 3) or j // 4 == ei or j % 4 == ej:
                st[base + j] &= bit ^ 0xFFFF
        ho = _ELIM_OFF + box_i * 8
        vo = _ELIM_OFF + (3 + box_j) * 8
        for c in range(6):
            if _ELEM[box_j, c] != ei:
                st[ho + c] |= bit
            if _ELEM[box_i, c] != ej:
                st[vo + c] |= bit


@njit(cache=True)
def _extract(st, out81):
    for pos in range(81):
        box = (pos // 27) * 3 + (pos % 9) // 3
        x = st[box * 16 + ((pos // 9) % 3) * 4 + pos % 3]
        d = 0
        while d < 9 and not (x >> d) & 1:
            d += 1
        out81[pos] = d + 1 if d < 9 else 0


@njit(cache=True)
def _choose(st):
    """Return ``(band, value)`` to branch on, or ``(-1, -1)`` when every band is fixed."""
    best_band = -1
    best_count = 1 << 30
    for k in range(6):
        n = 0
        for c in range(6):
            n += _POP[st[_CONF_OFF + k * 8 + c]]
        # a fixed band has exactly one configuration per value (9 in all)
        if n >= 10 and n < best_count:
            best_count = n
            best_band = k
    if best_band < 0:
        return -1, -1
    co = _CONF_OFF + best_band * 8
    best_value = -1
    best_vc = 1 << 30
    for v in range(8):
        n = 0
        for c in range(6):
            n += (st[co + c] >> v) & 1
        if n >= 2 and n < best_vc:
            best_vc = n
            best_value = v
    n8 = 0
    for c in range(6):
        n8 += (st[co + c] >> 8) & 1
    # tdoku looks at value 8 only when no value 0..7 is binary, and takes it on a strict win
    if best_value < 0 or (best_vc > 2 and n8 > 1 and n8 < best_vc):
        best_value = 8
    return best_band, best_value


@njit(cache=True)
def _solve9(grid81, limit, out81, states, sk, sa, sb, sc, w):
    """Count solutions of a 9x9 puzzle up to ``limit``; returns ``(n_solutions, guesses)``.

    ``out81`` receives the first solution found (unchanged when there is none).
    """
    st = states[0]
    _init_state(st, grid81)
    sp = 0
    # six batched band updates, in tdoku's order (band, inbound peer); pushed reversed (LIFO)
    sp = _push_band(sk, sa, sb, sp, 5, 0)
    sp = _push_band(sk, sa, sb, sp, 2, 0)
    sp = _push_band(sk, sa, sb, sp, 4, 2)
    sp = _push_band(sk, sa, sb, sp, 1, 2)
    sp = _push_band(sk, sa, sb, sp, 3, 1)
    sp = _push_band(sk, sa, sb, sp, 0, 1)
    if not _run(st, sk, sa, sb, sc, sp, w):
        return 0, 0
    nsol = 0
    guesses = 0
    d = 0
    bands = np.empty(states.shape[0], dtype=np.int64)
    values = np.empty(states.shape[0], dtype=np.int64)
    # actions: 0 = choose a branch at depth d, 1 = guess (assert first config) at d,
    # 2 = negate the first config at d, 3 = return from depth d
    action = 0
    while True:
        if action == 0:
            band, value = _choose(states[d])
            if band < 0:
                if nsol == 0:
                    _extract(states[d], out81)
                nsol += 1
                if nsol >= limit:
                    break
                action = 3
            else:
                bands[d] = band
                values[d] = value
                action = 1
        elif action == 1:
            guesses += 1
            if d + 1 >= states.shape[0]:
                raise RuntimeError("sudoku solver: search too deep")
            src = states[d]
            dst = states[d + 1]
            dst[:] = src
            co = _CONF_OFF + bands[d] * 8
            eo = _ELIM_OFF + bands[d] * 8
            bit = 1 << values[d]
            first = True
            for c in range(6):
                if dst[co + c] & bit:
                    if first:
                        first = False
                    else:
                        dst[eo + c] |= bit
            sp = _push_band(sk, sa, sb, 0, bands[d], 0)
            if _run(dst, sk, sa, sb, sc, sp, w):
                d += 1
                action = 0
            else:
                action = 2
        elif action == 2:
            st = states[d]
            co = _CONF_OFF + bands[d] * 8
            eo = _ELIM_OFF + bands[d] * 8
            bit = 1 << values[d]
            for c in range(6):
                if st[co + c] & bit:
                    st[eo + c] |= bit
                    break
            sp = _push_band(sk, sa, sb, 0, bands[d], 0)
            if _run(st, sk, sa, sb, sc, sp, w):
                left = 0
                for c in range(6):
                    left += (st[co + c] >> values[d]) & 1
                # one configuration left: continue as a tail call; else guess again on it
                action = 0 if left == 1 else 1
            else:
                action = 3
        else:
            if d == 0:
                break
            d -= 1
            action = 2
    return nsol, guesses


@njit(cache=True)
def _solve9_batch(grids, limit, out, nsols, guesses):
    b = grids.shape[0]
    states = np.empty((_MAX_DEPTH, _STATE_LEN), dtype=np.int32)
    sk = np.empty(_TASK_CAP, dtype=np.int64)
    sa = np.empty(_TASK_CAP, dtype=np.int64)
    sb = np.empty(_TASK_CAP, dtype=np.int64)
    sc = np.empty((_TASK_CAP, 16), dtype=np.int32)
    w = np.empty(64, dtype=np.int32)
    for i in range(b):
        n, g = _solve9(grids[i], limit, out[i], states, sk, sa, sb, sc, w)
        nsols[i] = n
        guesses[i] = g


@njit(cache=True)
def _scratch9():
    states = np.empty((_MAX_DEPTH, _STATE_LEN), dtype=np.int32)
    sk = np.empty(_TASK_CAP, dtype=np.int64)
    sa = np.empty(_TASK_CAP, dtype=np.int64)
    sb = np.empty(_TASK_CAP, dtype=np.int64)
    sc = np.empty((_TASK_CAP, 16), dtype=np.int32)
    w = np.empty(64, dtype=np.int32)
    return states, sk, sa, sb, sc, w


@njit(cache=True)
def _solve9_s(grid81, limit, out81, s9):
    """:func:`_solve9` with the scratch tuple of :func:`_scratch9` (the generator's entry point)."""
    states, sk, sa, sb, sc, w = s9
    return _solve9(grid81, limit, out81, states, sk, sa, sb, sc, w)


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
