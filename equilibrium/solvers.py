"""Fixed-point solvers for ``z* = f(z*)``: Picard and Anderson iteration, and the `solve` dispatcher.

Solvers are pure functions of a flat ``(B, D)`` state (see `equilibrium.state`) that return the fixed point
and `SolverStats`; `solve` packs tensor or tuple states, validates every option and runs without an
autograd graph. Gradients are a separate, orthogonal choice (`equilibrium.backward.fixed_point`).

    from equilibrium import solve
    z_star, stats = solve(lambda z: torch.cos(z), torch.zeros(8, 3), method="anderson", tol=1e-6)

Per-sample convergence: a sample whose residual falls below ``tol`` (at or after ``min_iter``) is frozen:
its returned value is ``f(z_k)`` from the iteration ``k`` where it converged, and later iterations do not
change it. ``f`` is still evaluated on the whole batch (it closes over batch-shaped inputs), so freezing
saves no FLOPs; it keeps results and step counts well-defined. The loop ends when every sample has
converged or after ``max_iter`` evaluations. On CUDA the "all converged?" test, which needs a host sync,
runs every ``check_every`` iterations (default 4); masks and step counts stay exact on the device.

Causal rows (``causal_group=T``): when the batch is ``B·T`` positions of causal sequences (row ``t`` of ``f``'s
output reads rows ``<= t`` of its input, in consecutive groups of ``T``), a row may only freeze once every earlier
row of its sequence has frozen (now or before). Otherwise a frozen row would keep a value computed from earlier
rows that were still moving, and be stale at the end. Frozen rows are therefore always a prefix of each sequence.

Anderson (type II, window ``m``, damping ``beta``) minimises ``‖Σ α_i g_i‖² + λ‖α‖²`` subject to ``Σ α_i = 1``
over the last ``m`` residuals ``g_i = f(z_i) - z_i`` and steps to ``Σ α_i (f(z_i) - (1 - β) g_i)``. Three
choices make it fast and robust:

* ``λ = lam · mean_i ‖g_i‖²`` is relative to the residuals in the window (default 1e-7, see `DEFAULT_LAM`).
  torchdeq's absolute ``lam=1e-4`` dominates the Gram matrix once ``‖g‖² ≪ 1e-4`` and turns Anderson into
  averaging, slower than Picard.
* The Gram matrix is updated by one row per iteration (``G @ g_new``) instead of recomputed, and the
  ``m × m`` system is solved in float64 whatever the state dtype; a singular or non-finite system falls
  back to a plain step for that sample.
* History lives in one preallocated ``(B, 2m, D)`` buffer written in place (``f(z_i)`` in slots ``[0, m)``,
  ``g_i`` in ``[m, 2m)``), used as a ring buffer. The constrained least-squares problem is invariant
  to the order of the history, so after the ring wraps, slots are used as they are; only slots that
  have been written are ever read (the reference Attractor code read empty slots; see the tests).

CPU memory reuse. The CPU has no caching allocator: glibc serves blocks above 32 MiB with a fresh ``mmap``, so
a new history buffer is page-faulted in on every solve (53 MB for the benchmark's 64×81×256 state at m=5:
17-27 ms, 10% of a 9-iteration solve), and a fresh iterate per iteration cost another ~1.4 ms. So on CPU
the history buffer is kept per thread and reused by the next solve of the same shape and dtype
(`release_workspace` frees it, `set_cpu_workspace(False)` turns the reuse off; a solve nested inside ``f``
gets its own buffer), and the mix writes each new iterate over the previous one. ``f`` receives a view of
that iterate: it must not keep a reference to its input past its return (no module in the suite does;
autograd is off during the solve).
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from equilibrium.state import State, StatePacker
from equilibrium.stats import SolverStats

FlatFn = Callable[[torch.Tensor], torch.Tensor]

STOP_MODES = ("rel", "abs")
_REL_EPS = 1e-9  # denominator guard of the relative residual, as in torchdeq
# Anderson's default regularisation, relative to the mean ‖g_i‖² of the window. The Gram entries come from
# float32 inner products, so relative to that scale they carry ~1e-7 (float32 unit roundoff, 6e-8) of
# rounding noise: λ at that level only damps directions that are noise, while a larger λ (1e-6 before) also
# damps the small but real eigen-directions of a nearly collinear window, which is exactly the slow-mode case
# (slow_mode/s=0.1: 31 iterations at 1e-6, 30 at 1e-7 and unchanged down to 1e-10; the other five benchmark
# problems are unchanged or one iteration faster; other seeds of that problem are insensitive to λ in this
# range, so this is a safe default rather than a tuned one). Singular systems still fall back to a plain step.
DEFAULT_LAM = 1e-7


# --------------------------------------------------------------------------------------------------------
# Convergence monitor shared by all solvers
# --------------------------------------------------------------------------------------------------------


class Monitor:
    """Tracks residuals, per-sample convergence, step counts and non-finite states for one solve.

    Solvers call `update` once per evaluation of ``f`` and `finished` at the end of the iteration. On CPU
    every check is free, so masks that are known to be empty are returned as ``None`` and the solver skips
    the masked writes; on CUDA masks are always tensors and only `finished` syncs with the host.

    Args:
        residual: ``(g, fx, g_sq) -> (abs, rel)`` with ``g = f(z) - z`` and both ``(B, D)``, ``g_sq`` an
            optional precomputed ``‖g‖²`` (B,) or None; returns float32 ``(B,)`` or ``(B, T)`` norms.
        batch: batch size ``B``.
        device: the state's device.
        max_iter: iteration budget.
        min_iter: no sample is declared converged before this many iterations.
        tol: tolerance on the ``stop_mode`` residual (the max over tokens for per-token residuals).
        stop_mode: ``"rel"`` or ``"abs"``.
        check_every: host-sync cadence of the all-converged / non-finite test.
        keep_trace: record ``(B, n_iter)`` residual traces.
        causal_group: rows are consecutive groups of this many causal positions; a row freezes only with its
            whole prefix (see the module docstring). ``None``: every row freezes on its own residual.
    """

    def __init__(
        self,
        residual: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor]],
        *,
        batch: int,
        device: torch.device,
        max_iter: int,
        min_iter: int,
        tol: float,
        stop_mode: str,
        check_every: int,
        keep_trace: bool,
        causal_group: int | None = None,
    ):
        self.residual = residual
        self.causal_group = causal_group
        self.max_iter, self.min_iter, self.tol = max_iter, min_iter, tol
        self.rel = stop_mode == "rel"
        self.check_every = check_every
        self.cpu = device.type == "cpu"
        self.done = torch.zeros(batch, dtype=torch.bool, device=device)
        self.nstep = torch.zeros(batch, dtype=torch.int64, device=device)
        self.bad_iter = torch.zeros(batch, dtype=torch.int64, device=device)  # first non-finite iteration
        self.any_done = False  # host-side: may some sample be frozen? (exact on CPU, conservative on CUDA)
        self.abs: torch.Tensor | None = None
        self.rel_res: torch.Tensor | None = None
        self.traces: list[tuple[torch.Tensor, torch.Tensor]] | None = [] if keep_trace else None

    def update(
        self, k: int, g: torch.Tensor, fx: torch.Tensor, g_sq: torch.Tensor | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Record iteration ``k`` (0-based) and return ``(newly_converged, frozen_before)`` masks ``(B,)``.

        ``g_sq`` optionally gives ``‖g‖²`` per sample (B,), already computed by the solver (Anderson has it
        on the diagonal of its Gram matrix); whole-sample residuals then skip their own pass over ``g``.

        ``newly_converged`` marks samples that meet the tolerance now (their result is this ``fx``);
        ``frozen_before`` marks samples frozen at an earlier iteration (their result must not change).
        Either is ``None`` when it is known to be empty.
        """
        abs_r, rel_r = self.residual(g, fx, g_sq)
        if self.any_done:
            active = ~self.done
            keep = active if abs_r.ndim == 1 else active[:, None]
            abs_r = torch.where(keep, abs_r, self.abs)
            rel_r = torch.where(keep, rel_r, self.rel_res)
            self.nstep.masked_fill_(active, k + 1)
            frozen_before: torch.Tensor | None = self.done
        else:
            active = None
            self.nstep.fill_(k + 1)
            frozen_before = None
        self.abs, self.rel_res = abs_r, rel_r
        crit = rel_r if self.rel else abs_r
        if crit.ndim == 2:  # per-token residuals: a sample converges when all its tokens have
            crit = crit.amax(dim=1)
        bad = ~torch.isfinite(crit)
        if active is not None:
            bad &= active
        self.bad_iter = torch.where(bad & (self.bad_iter == 0), k + 1, self.bad_iter)
        newly = None
        if k + 1 >= self.min_iter:
            newly = crit < self.tol
            if self.causal_group is not None:
                # A row is final only with its whole prefix: frozen before, or meeting the tolerance now.
                ok = (newly | self.done).view(-1, self.causal_group)
                newly = ok.cumprod(dim=1, dtype=torch.int32).bool().view(-1)
            if active is not None:
                newly &= active
            self.done = self.done | newly
            if self.cpu:
                if not bool(newly.any()):
                    newly = None
                else:
                    self.any_done = True
            else:
                self.any_done = True  # no host sync on CUDA: assume some may be frozen from now on
        if self.traces is not None:
            a, r = (abs_r, rel_r) if abs_r.ndim == 1 else (abs_r.amax(1), rel_r.amax(1))
            self.traces.append((a, r))
        return newly, frozen_before

    def finished(self, k: int) -> bool:
        """After iteration ``k``: True when every sample has converged. Syncs only every ``check_every``.

        Raises:
            FloatingPointError: if an active sample's residual became NaN or Inf.
        """
        if (k + 1) % self.check_every != 0 and k + 1 < self.max_iter:
            return False
        bad = self.bad_iter > 0
        if bool(bad.any()):
            first = int(self.bad_iter[bad].min())
            raise FloatingPointError(
                f"non-finite fixed-point state: {int(bad.sum())} sample(s) have a NaN/Inf residual, first at "
                f"iteration {first} (samples {bad.nonzero().flatten()[:8].tolist()}); f diverged or produced NaN"
            )
        return bool(self.done.all())

    def stats(self, method: str, stop_mode: str) -> SolverStats:
        """Assemble `SolverStats` from what was recorded."""
        assert self.abs is not None and self.rel_res is not None, "no iteration was recorded"
        abs_trace = rel_trace = None
        if self.traces:
            abs_trace = torch.stack([a for a, _ in self.traces], dim=1)
            rel_trace = torch.stack([r for _, r in self.traces], dim=1)
        return SolverStats(
            nstep=self.nstep,
            abs_residual=self.abs,
            rel_residual=self.rel_res,
            converged=self.done,
            method=method,
            stop_mode=stop_mode,
            tol=self.tol,
            max_iter=self.max_iter,
            abs_trace=abs_trace,
            rel_trace=rel_trace,
        )


def _where_rows(mask: torch.Tensor | None, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Rows of ``a`` where ``mask`` (B,) else rows of ``b``; ``b`` itself when the mask is None."""
    if mask is None:
        return b
    return torch.where(mask[:, None], a, b)


def _assign_rows_(dst: torch.Tensor, mask: torch.Tensor | None, src: torch.Tensor, cpu: bool) -> torch.Tensor:
    """In-place ``dst[mask] = src[mask]`` for a ``dst`` the solver owns.

    On CPU boolean indexing touches only the selected rows; on CUDA it would sync (nonzero), so a
    full-size ``torch.where`` is used instead.
    """
    if mask is None:
        return dst
    if cpu:
        dst[mask] = src[mask]
        return dst
    return torch.where(mask[:, None], src, dst)


# --------------------------------------------------------------------------------------------------------
# Solvers
# --------------------------------------------------------------------------------------------------------


def picard(f: FlatFn, x0: torch.Tensor, monitor: Monitor, *, max_iter: int, beta: float = 1.0) -> torch.Tensor:
    """Damped Picard iteration ``z ← β f(z) + (1 - β) z``.

    Args:
        f: ``(B, D) -> (B, D)``.
        x0: ``(B, D)`` initial state.
        monitor: convergence bookkeeping for this solve.
        max_iter: maximum evaluations of ``f``.
        beta: damping; 1 is plain iteration.

    Returns:
        ``(B, D)``: ``f(z_k)`` for each sample's final iteration ``k``.
    """
    x = x0
    g = torch.empty_like(x0)  # (B, D) residual, rewritten in place every iteration
    for k in range(max_iter):
        fx = f(x)
        torch.sub(fx, x, out=g)
        newly, frozen = monitor.update(k, g, fx)
        # A never-modified fx is returned when possible; masked rows go through torch.where (a new tensor),
        # since fx may alias something of f's (e.g. a constant map).
        # The last iteration returns f(z_k) undamped, so the reported residual belongs to the returned step.
        last = k == max_iter - 1
        x_next = fx if beta == 1.0 or last else _where_rows(newly, fx, torch.add(x, g, alpha=beta))
        x = _where_rows(frozen, x, x_next)
        if monitor.finished(k):
            break
    return x


class _Workspace(threading.local):
    """The CPU history buffer kept for the next solve, per thread (see the module docstring)."""

    def __init__(self) -> None:
        self.buf: torch.Tensor | None = None
        self.busy = False


_WORKSPACE = _Workspace()
_WORKSPACE_ENABLED = True


def release_workspace() -> None:
    """Free the history buffer kept by Anderson on CPU for this thread (it is reallocated when next needed)."""
    _WORKSPACE.buf = None


def set_cpu_workspace(enabled: bool) -> bool:
    """Turn the reuse of Anderson's CPU history buffer between solves on or off (all threads).

    Returns the previous setting. Off, every solve allocates its own buffer and frees it on return: lower
    memory between solves, slower large CPU solves. (Training solves, `fixed_point` with grad enabled, never
    keep it.)
    """
    global _WORKSPACE_ENABLED
    previous, _WORKSPACE_ENABLED = _WORKSPACE_ENABLED, bool(enabled)
    if not enabled:
        release_workspace()
    return previous


def _acquire_history(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, bool]:
    """An uninitialised history buffer, and whether it is the thread's workspace (to hand back afterwards)."""
    ws = _WORKSPACE
    # CUDA has a caching allocator; a solve nested inside f gets its own buffer.
    if device.type != "cpu" or ws.busy or not _WORKSPACE_ENABLED:
        return torch.empty(shape, dtype=dtype, device=device), False
    # A buffer made under torch.inference_mode is an inference tensor, which a solve outside it may not write
    # in place (and vice versa the mode is part of what makes a buffer reusable).
    inference = torch.is_inference_mode_enabled()
    if ws.buf is None or ws.buf.shape != shape or ws.buf.dtype != dtype or ws.buf.is_inference() != inference:
        ws.buf = None  # drop the old one first, so that both are never held at once
        ws.buf = torch.empty(shape, dtype=dtype, device=device)
    ws.busy = True
    return ws.buf, True


def _anderson_weights(h: torch.Tensor, lam: float, newest: int, eye: torch.Tensor, ones: torch.Tensor) -> torch.Tensor:
    """Weights ``α`` (B, n) minimising ``αᵀ(H + λI)α`` subject to ``Σα = 1``.

    The solution is ``α = w / Σw`` with ``(H + λI) w = 1`` (the bordered ``(n+1)×(n+1)`` KKT system,
    eliminated). Samples whose system is singular or gives non-finite weights take a plain step on the
    newest iterate instead.

    Args:
        h: ``(B, n, n)`` Gram matrix ``G Gᵀ`` of the residuals in the window, float64.
        lam: regularisation relative to the mean squared residual norm in the window.
        newest: slot of the newest iterate (the fallback).
        eye: ``(n, n)`` float64 identity (built once per solve).
        ones: ``(B, n, 1)`` float64 ones (built once per solve).
    """
    n = h.shape[1]
    scale = h.diagonal(dim1=1, dim2=2).mean(dim=1).clamp_min(torch.finfo(h.dtype).tiny)  # (B,)
    a = torch.addcmul(h, (lam * scale)[:, None, None], eye)  # H + λ·scale·I, (B, n, n)
    w, info = torch.linalg.solve_ex(a, ones)
    w = w.squeeze(2)
    alpha = w / w.sum(dim=1, keepdim=True)
    ok = (info == 0) & torch.isfinite(alpha).all(dim=1)  # (B,)
    fallback = torch.nn.functional.one_hot(torch.tensor(newest, device=h.device), n).to(h.dtype)  # (n,)
    return torch.where(ok[:, None], alpha, fallback)


def anderson(
    f: FlatFn,
    x0: torch.Tensor,
    monitor: Monitor,
    *,
    max_iter: int,
    m: int = 5,
    beta: float = 1.0,
    lam: float = DEFAULT_LAM,
) -> torch.Tensor:
    """Type-II Anderson acceleration with window ``m``, damping ``beta`` and relative regularisation ``lam``.

    Memory: one ``(B, 2m, D)`` history buffer (on CPU the thread's reused workspace), the iterate and
    ``f``'s own temporaries.

    Args:
        f: ``(B, D) -> (B, D)``.
        x0: ``(B, D)`` initial state.
        monitor: convergence bookkeeping for this solve.
        max_iter: maximum evaluations of ``f``.
        m: history window (number of past iterates mixed).
        beta: damping of the mixed step; 1 mixes ``f(z_i)`` only.
        lam: Tikhonov regularisation relative to the mean ``‖g_i‖²`` of the window.

    Returns:
        ``(B, D)`` fixed-point estimate (``f(z_k)`` at each sample's final iteration ``k``).
    """
    hist, owned = _acquire_history((x0.shape[0], 2 * m, x0.shape[1]), x0.dtype, x0.device)
    try:
        return _anderson(f, x0, monitor, hist, max_iter=max_iter, m=m, beta=beta, lam=lam)
    finally:
        if owned:
            _WORKSPACE.busy = False


def _anderson(
    f: FlatFn, x0: torch.Tensor, monitor: Monitor, hist: torch.Tensor, *, max_iter: int, m: int, beta: float, lam: float
) -> torch.Tensor:
    """`anderson` with its ``(B, 2m, D)`` history buffer given (contents irrelevant)."""
    b = x0.shape[0]
    dev = x0.device
    fhist, ghist = hist[:, :m], hist[:, m:]  # (B, m, D) views: [f(z_i) | g_i]
    gram = torch.zeros(b, m, m, dtype=torch.float64, device=dev)  # (B, m, m) G Gᵀ, float64
    eyes = [torch.eye(n, dtype=torch.float64, device=dev) for n in range(1, m + 1)]
    ones = torch.ones(b, m, 1, dtype=torch.float64, device=dev)
    # bf16/fp16 histories: the Gram row is accumulated in float32 so that it carries enough bits.
    low_precision = x0.dtype in (torch.bfloat16, torch.float16)
    x = x0
    for k in range(max_iter):
        s, n = k % m, min(k + 1, m)  # ring slot written now; number of valid slots (all once wrapped)
        fx = f(x)
        f_s, g_s = fhist[:, s], ghist[:, s]  # (B, D) views into the buffer
        f_s.copy_(fx)
        torch.sub(fx, x, out=g_s)
        del fx  # the buffer holds it; dropping it keeps the peak at (2m + 1) states plus f's temporaries

        # New Gram row/column for slot s: <g_j, g_s> for the n valid slots j. Order is irrelevant.
        # Written as (B, 1, D) @ (B, D, n): on CPU this orientation is ~5x faster than (B, n, D) @ (B, D, 1).
        if low_precision:
            row = torch.bmm(g_s.float().unsqueeze(1), ghist[:, :n].float().transpose(1, 2)).squeeze(1)
        else:
            row = torch.bmm(g_s.unsqueeze(1), ghist[:, :n].transpose(1, 2)).squeeze(1)  # (B, n)
        # row[:, s] = ‖g_s‖²: the residual norm comes with the Gram row, saving the monitor a pass over g.
        newly, frozen = monitor.update(k, g_s, f_s, g_sq=row[:, s])
        row = row.to(torch.float64)
        gram[:, s, :n] = row
        gram[:, :n, s] = row
        if k == max_iter - 1:
            # Out of budget: return the last evaluated f(z_k), whose residual is the one reported, rather than
            # an extrapolation nobody has checked. (A copy: a view would keep the whole history alive.)
            x_next = f_s.clone()
        else:
            alpha = _anderson_weights(gram[:, :n, :n], lam, s, eyes[n - 1], ones[:, :n])
            alpha = alpha.to(x0.dtype).unsqueeze(1)  # (B, 1, n)
            if monitor.cpu:
                # The iterate is dead once g_s is written, so the mix overwrites it (after the first iteration,
                # when it is still the caller's z0); only the rows of frozen samples are kept aside.
                kept = x[frozen] if frozen is not None else None
                x_next = x if k > 0 else torch.empty_like(x0)
                torch.bmm(alpha, fhist[:, :n], out=x_next.unsqueeze(1))  # (B, D) Σ α_i f(z_i)
            else:
                kept, x_next = None, torch.bmm(alpha, fhist[:, :n]).squeeze(1)
            if beta != 1.0:  # Σ α_i (f(z_i) - (1 - β) g_i), accumulated in place
                x_next.unsqueeze(1).baddbmm_(alpha, ghist[:, :n], alpha=beta - 1.0)
            x_next = _assign_rows_(x_next, newly, f_s, monitor.cpu)
            if kept is not None:
                x_next[frozen] = kept
                frozen = None
        x = _assign_rows_(x_next, frozen, x, monitor.cpu)
        if monitor.finished(k):
            break
    return x


# --------------------------------------------------------------------------------------------------------
# Registry and dispatcher
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SolverSpec:
    """A registered solver: ``fn(f_flat, x0, monitor, max_iter=..., **options)`` and the options it takes."""

    fn: Callable[..., torch.Tensor]
    options: tuple[str, ...]


SOLVERS: dict[str, SolverSpec] = {
    "picard": SolverSpec(picard, ("beta",)),
    "anderson": SolverSpec(anderson, ("m", "beta", "lam")),
}


def register_solver(name: str, fn: Callable[..., torch.Tensor]) -> None:
    """Register a solver under ``name`` for ``solve(method=name)``.

    Its keyword options are read from its signature (everything after ``monitor`` except ``max_iter``)
    and must be among `solve`'s own solver options (``m``, ``beta``, ``lam``).

    Raises:
        ValueError: if the name is taken or the solver takes an option `solve` cannot pass.
    """
    if name in SOLVERS:
        raise ValueError(f"solver {name!r} is already registered")
    params = list(inspect.signature(fn).parameters)[3:]
    options = tuple(p for p in params if p != "max_iter")
    unknown = set(options) - {"m", "beta", "lam"}
    if unknown:
        raise ValueError(f"solver {name!r} takes options solve() cannot pass: {sorted(unknown)}")
    SOLVERS[name] = SolverSpec(fn, options)


def _make_residual(
    packer: StatePacker, per_token: bool
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor]]:
    """Residual norms over all non-batch dims, or per token (dim 1 of every state part).

    A precomputed ``g_sq = ‖g‖²`` (B,) replaces the pass over ``g`` for whole-sample residuals; per-token
    residuals ignore it.
    """
    acc = torch.promote_types(packer.dtype, torch.float32)  # bf16 states are reduced in float32

    if not per_token:

        def residual(
            g: torch.Tensor, fx: torch.Tensor, g_sq: torch.Tensor | None = None
        ) -> tuple[torch.Tensor, torch.Tensor]:
            if g_sq is None:
                a = torch.linalg.vector_norm(g, dim=1, dtype=acc)
            else:
                a = g_sq.to(acc).clamp_min(0.0).sqrt()
            return a, a / (torch.linalg.vector_norm(fx, dim=1, dtype=acc) + _REL_EPS)

        return residual

    def token_residual(
        g: torch.Tensor, fx: torch.Tensor, g_sq: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # Sum of squares per (sample, token) over every part of the state: (B, T).
        g2 = sum(torch.linalg.vector_norm(p, dim=2, dtype=acc).square() for p in packer.token_views(g))
        f2 = sum(torch.linalg.vector_norm(p, dim=2, dtype=acc).square() for p in packer.token_views(fx))
        a = g2.sqrt()
        return a, a / (f2.sqrt() + _REL_EPS)

    packer.token_views(torch.empty(1, packer.dim, device="meta"))  # validate the layout now, not mid-solve
    return token_residual


def _check_options(
    method: str,
    max_iter: int,
    min_iter: int,
    tol: float,
    stop_mode: str,
    m: int,
    beta: float,
    lam: float,
    check_every: int | None,
) -> None:
    if method not in SOLVERS:
        raise ValueError(f"unknown method {method!r}; registered solvers: {sorted(SOLVERS)}")
    if stop_mode not in STOP_MODES:
        raise ValueError(f"unknown stop_mode {stop_mode!r}; expected one of {STOP_MODES}")
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive int, got {max_iter!r}")
    if not isinstance(min_iter, int) or not 0 <= min_iter <= max_iter:
        raise ValueError(f"min_iter must be an int in [0, max_iter={max_iter}], got {min_iter!r}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    if not isinstance(m, int) or m < 1:
        raise ValueError(f"m must be a positive int, got {m!r}")
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta!r}")
    if not lam >= 0:
        raise ValueError(f"lam must be >= 0, got {lam!r}")
    if check_every is not None and (not isinstance(check_every, int) or check_every < 1):
        raise ValueError(f"check_every must be a positive int or None, got {check_every!r}")


def solve(
    f: Callable[[State], State],
    z0: State,
    *,
    method: str = "anderson",
    max_iter: int = 30,
    min_iter: int = 0,
    tol: float = 1e-4,
    stop_mode: str = "rel",
    m: int = 5,
    beta: float = 1.0,
    lam: float = DEFAULT_LAM,
    per_token: bool = False,
    causal_group: int | None = None,
    check_every: int | None = None,
    return_trace: bool = False,
) -> tuple[State, SolverStats]:
    """Find ``z* = f(z*)`` without building an autograd graph.

    Args:
        f: maps a state shaped like ``z0`` to the same shape; closes over its inputs and parameters. Under
            autocast, ``f`` runs in the caller's autocast context while the solver's own linear algebra
            runs with autocast disabled; the state keeps the dtype of ``z0``.
        z0: initial state, ``(B, ...)`` or a tuple of such tensors (same ``B``, dtype and device).
        method: a registered solver: ``"anderson"`` or ``"picard"``.
        max_iter: maximum evaluations of ``f``.
        min_iter: no sample is declared converged before this many evaluations.
        tol: tolerance on the ``stop_mode`` residual.
        stop_mode: ``"rel"`` (``‖f(z)-z‖ / ‖f(z)‖``) or ``"abs"`` (``‖f(z)-z‖``), per sample.
        m: Anderson history window.
        beta: damping (Picard and Anderson); 1 means none.
        lam: Anderson regularisation, relative to the mean squared residual of the window.
        per_token: residuals per token (dim 1 of every state part) instead of per sample; a sample
            converges when all its tokens have; stats residuals are then ``(B, T)``.
        causal_group: the ``B`` rows are consecutive groups of this many positions of causal sequences (e.g. a
            ``(N, T, D)`` sequence state flattened to ``(N·T, D)``, ``causal_group=T``): a row freezes only when
            every earlier row of its group has, so no frozen row is computed from a still-moving prefix.
        check_every: iterations between host syncs for the all-converged test; default 1 on CPU, 4 on CUDA.
        return_trace: also record ``(B, n_iter)`` residual traces in the stats.

    Returns:
        ``(z_star, stats)``: the fixed point shaped like ``z0`` (detached) and `SolverStats`.

    Raises:
        ValueError: for an unknown method or stop mode, or an option out of range.
        FloatingPointError: when the state becomes NaN/Inf (the message gives the iteration).
    """
    _check_options(method, max_iter, min_iter, tol, stop_mode, m, beta, lam, check_every)
    packer = StatePacker(z0)
    if causal_group is not None and (
        not isinstance(causal_group, int) or causal_group < 1 or packer.batch % causal_group
    ):
        raise ValueError(f"causal_group must be a positive int dividing the batch {packer.batch}, got {causal_group!r}")
    device = packer.device
    f_flat = packer.wrap(f)
    if torch.is_autocast_enabled(device.type):
        # Keep the caller's autocast for f, but run Gram products and solves in full precision.
        ac_dtype = torch.get_autocast_dtype(device.type)
        inner = f_flat

        def f_flat(x: torch.Tensor) -> torch.Tensor:
            with torch.autocast(device.type, dtype=ac_dtype):
                return inner(x)

    monitor = Monitor(
        _make_residual(packer, per_token),
        batch=packer.batch,
        device=device,
        max_iter=max_iter,
        min_iter=min_iter,
        tol=tol,
        stop_mode=stop_mode,
        check_every=check_every or (1 if device.type == "cpu" else 4),
        keep_trace=return_trace,
        causal_group=causal_group,
    )
    spec = SOLVERS[method]
    given: dict[str, Any] = {"m": m, "beta": beta, "lam": lam}
    options = {k: given[k] for k in spec.options}
    with torch.no_grad(), torch.autocast(device.type, enabled=False):
        x0 = packer.flatten(z0).detach()
        x_star = spec.fn(f_flat, x0, monitor, max_iter=max_iter, **options)
    return packer.unflatten(x_star), monitor.stats(method, stop_mode)
