"""`fixed_point`: a differentiable fixed-point solve whose training memory does not grow with ``max_iter``.

The forward solve always runs without a graph (`equilibrium.solvers.solve`); a backward mode then attaches a
short, fixed-size graph at the detached fixed point ``z*``:

* ``"onestep"`` — Jacobian-free: ``out = f(z*)``; backward is one VJP through ``f`` (gradient ``∂f/∂θᵀ v``).
* ``"phantom"`` — ``k`` damped steps ``z ← τ f(z) + (1-τ) z`` from ``z*``, backpropagated through
  (Geng et al. 2021); memory is ``k`` copies of ``f``'s activations.
* ``"ift"`` — implicit differentiation: ``out = f(z*)`` and a hook on it replaces the incoming gradient
  ``v`` by the solution ``u`` of the adjoint fixed point ``u = Jᵀu + v`` (``J = ∂f/∂z`` at ``z*``), solved with
  the same solvers; optionally ``u`` is clipped per sample to ``ift_clip · ‖v‖``. Gradients w.r.t. the
  parameters and inputs ``f`` closes over are then exactly ``∂f/∂θᵀ (I - Jᵀ)⁻¹ v``.
* ``"neumann"`` — the adjoint ``(I - Jᵀ)⁻¹ v`` truncated to ``n = neumann_terms`` terms of its Neumann series,
  ``u = v + Jᵀv + … + (Jᵀ)ⁿ v`` (n VJPs through ``f(z*)``'s graph). ``n = 1`` is the one-step correction of the
  authors' Attractor LM (their ``backward_type="onestep"``: ``u = v + Jᵀv``), which differs from ``"onestep"``
  here (``u = v``).

No mode propagates gradient into ``z0`` (the fixed point does not depend on the initial guess).

    from equilibrium import fixed_point
    z, stats = fixed_point(lambda z: torch.tanh(z @ W.T + x), torch.zeros_like(x), backward="phantom")
    loss(z).backward()
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch

from equilibrium.diagnostics import hutchinson_at
from equilibrium.solvers import release_workspace, solve
from equilibrium.state import State, StatePacker
from equilibrium.stats import SolverStats

BACKWARD_MODES = ("onestep", "phantom", "ift", "neumann")
_SOLVE_OPTIONS = frozenset(p for p in inspect.signature(solve).parameters if p not in ("f", "z0"))


def fixed_point(
    f: Callable[[State], State],
    z0: State,
    *,
    backward: str = "phantom",
    phantom_steps: int = 3,
    phantom_tau: float = 0.5,
    ift_method: str = "anderson",
    ift_max_iter: int = 30,
    ift_tol: float = 1e-6,
    ift_clip: float | None = None,
    neumann_terms: int = 1,
    jacobian_penalty: bool = False,
    **solve_options: Any,
) -> tuple[State, SolverStats]:
    """Solve ``z* = f(z*)`` and make the result differentiable w.r.t. what ``f`` closes over.

    Args:
        f: the map, as for `solve`.
        z0: initial state, a tensor ``(B, ...)`` or a tuple of them.
        backward: ``"onestep"``, ``"phantom"`` or ``"ift"`` (see the module docstring).
        phantom_steps: number of damped steps ``k`` for ``"phantom"`` (>= 1).
        phantom_tau: damping ``τ`` in ``(0, 1]`` for ``"phantom"``.
        ift_method: solver for the adjoint system in ``"ift"``.
        ift_max_iter: iteration budget of the adjoint solve.
        ift_tol: relative tolerance of the adjoint solve.
        ift_clip: if set, rescale ``u`` per sample so that ``‖u‖ <= ift_clip · ‖v‖``.
        neumann_terms: ``n`` for ``"neumann"`` (>= 1): the adjoint series ``Σ_{i<=n} (Jᵀ)^i v``.
        jacobian_penalty: also return, in ``stats.jacobian_penalty``, a differentiable ``(B,)`` Hutchinson
            estimate of ``‖J‖_F² / D`` at the fixed point (Bai et al. 2021), reusing the backward graph.
        **solve_options: options of `solve` (``method``, ``max_iter``, ``tol``, ``stop_mode``, ``m``, ...).

    Returns:
        ``(z, stats)``: with grad enabled, ``z`` carries the backward mode's graph (its value is ``f(z*)``,
        or the last phantom step); with grad disabled, ``z = z*`` from the solver. ``stats`` are the forward
        solve's; for ``"ift"``, ``stats.backward`` is filled in when the backward pass runs.

    Raises:
        TypeError: for an option `solve` does not know (misspellings fail here, not silently).
        ValueError: for an unknown backward mode or an out-of-range option.
    """
    unknown = set(solve_options) - _SOLVE_OPTIONS
    if unknown:
        raise TypeError(
            f"fixed_point() got unknown option(s) {sorted(unknown)}; solver options are {sorted(_SOLVE_OPTIONS)}"
        )
    grad_options = {
        "backward": backward,
        "phantom_steps": phantom_steps,
        "phantom_tau": phantom_tau,
        "ift_method": ift_method,
        "ift_max_iter": ift_max_iter,
        "ift_tol": ift_tol,
        "ift_clip": ift_clip,
        "neumann_terms": neumann_terms,
        "jacobian_penalty": jacobian_penalty,
    }
    _check_backward(**grad_options)
    z_star, stats = solve(f, z0, **solve_options)
    if not torch.is_grad_enabled():
        return z_star, stats
    # Training: do not keep Anderson's CPU history buffer (2m states) allocated through the rest of the step,
    # where the backward pass usually has the peak; inference solves (no grad) keep it for speed.
    release_workspace()
    return _attach(f, z_star, stats, **grad_options), stats


def attach_backward(
    f: Callable[[State], State],
    z_star: State,
    stats: SolverStats,
    *,
    backward: str = "onestep",
    keep_value: bool = False,
    **options: Any,
) -> State:
    """Attach a backward mode of `fixed_point` to a fixed point ``z_star`` found by any solver.

    For solvers outside `equilibrium` (e.g. a reproduction of another code base's solver, run under
    ``torch.no_grad``). ``options`` are `fixed_point`'s gradient options (``phantom_steps``, ``ift_tol``,
    ``neumann_terms``, ...). With ``keep_value`` the returned value is ``z_star`` itself, bit for bit, and only
    the gradient comes from the backward mode's graph (``z* + (out - out.detach())``); otherwise the value is
    that of `fixed_point` (``f(z*)``, or the last phantom step). Without grad, ``z_star`` is returned as is.
    """
    unknown = set(options) - set(_GRAD_DEFAULTS)
    if unknown:
        raise TypeError(
            f"attach_backward() got unknown option(s) {sorted(unknown)}; options are {sorted(_GRAD_DEFAULTS)}"
        )
    grad_options = {**_GRAD_DEFAULTS, **options, "backward": backward}
    _check_backward(**grad_options)
    if not torch.is_grad_enabled():
        return z_star
    out = _attach(f, z_star, stats, **grad_options)
    if not keep_value:
        return out
    packer = StatePacker(z_star)
    x, o = packer.flatten(z_star).detach(), packer.flatten(out)
    return packer.unflatten(x + (o - o.detach()))


_GRAD_DEFAULTS: dict[str, Any] = {
    "phantom_steps": 3,
    "phantom_tau": 0.5,
    "ift_method": "anderson",
    "ift_max_iter": 30,
    "ift_tol": 1e-6,
    "ift_clip": None,
    "neumann_terms": 1,
    "jacobian_penalty": False,
}


def _check_backward(
    *,
    backward: str,
    phantom_steps: int,
    phantom_tau: float,
    ift_method: str,
    ift_max_iter: int,
    ift_tol: float,
    ift_clip: float | None,
    neumann_terms: int,
    jacobian_penalty: bool,
) -> None:
    if backward not in BACKWARD_MODES:
        raise ValueError(f"unknown backward mode {backward!r}; expected one of {BACKWARD_MODES}")
    if not isinstance(phantom_steps, int) or phantom_steps < 1:
        raise ValueError(f"phantom_steps must be a positive int, got {phantom_steps!r}")
    if not 0 < phantom_tau <= 1:
        raise ValueError(f"phantom_tau must be in (0, 1], got {phantom_tau!r}")
    if ift_clip is not None and not ift_clip > 0:
        raise ValueError(f"ift_clip must be > 0 or None, got {ift_clip!r}")
    if not isinstance(ift_max_iter, int) or ift_max_iter < 1:
        raise ValueError(f"ift_max_iter must be a positive int, got {ift_max_iter!r}")
    if not isinstance(neumann_terms, int) or neumann_terms < 1:
        raise ValueError(f"neumann_terms must be a positive int, got {neumann_terms!r}")


def _attach(
    f: Callable[[State], State],
    z_star: State,
    stats: SolverStats,
    *,
    backward: str,
    phantom_steps: int,
    phantom_tau: float,
    ift_method: str,
    ift_max_iter: int,
    ift_tol: float,
    ift_clip: float | None,
    neumann_terms: int,
    jacobian_penalty: bool,
) -> State:
    """The backward mode's fixed-size graph at the detached ``z_star`` (grad enabled)."""
    packer = StatePacker(z_star)
    f_flat = packer.wrap(f)
    x_star = packer.flatten(z_star).detach()  # (B, D)
    x_leaf = x_star.requires_grad_(backward in ("ift", "neumann") or jacobian_penalty)
    # Dropped at once: only the fixed-size graph built below is kept for backward.
    del z_star

    if backward == "phantom":
        x = x_leaf
        fx0 = None
        for _ in range(phantom_steps):
            fx = f_flat(x)
            fx0 = fx if fx0 is None else fx0
            x = fx if phantom_tau == 1.0 else torch.lerp(x, fx, phantom_tau)  # τ f(z) + (1-τ) z
        out, fx_at_star = x, fx0
    else:
        out = fx_at_star = f_flat(x_leaf)
        if backward == "ift":
            # The hook goes on a view of f(z*), not on f(z*) itself: the hook closure must reference f(z*)
            # for its VJPs, and a hook stored on f(z*)'s own graph node would close a reference cycle that
            # keeps the graph and stats alive until the garbage collector runs.
            out = fx_at_star.view_as(fx_at_star)
            _attach_ift_hook(out, fx_at_star, x_leaf, stats, ift_method, ift_max_iter, ift_tol, ift_clip)
        elif backward == "neumann":
            out = fx_at_star.view_as(fx_at_star)  # a view, for the same reason as ift's
            _attach_neumann_hook(out, fx_at_star, x_leaf, neumann_terms)

    if jacobian_penalty:
        stats.jacobian_penalty = hutchinson_at(fx_at_star, x_leaf)
    return packer.unflatten(out)


def _attach_ift_hook(
    out: torch.Tensor,
    fx: torch.Tensor,
    x_leaf: torch.Tensor,
    stats: SolverStats,
    method: str,
    max_iter: int,
    tol: float,
    clip: float | None,
) -> None:
    """On ``out`` (a view of ``fx = f(x_leaf)``), replace the incoming gradient ``v`` by ``u = Jᵀu + v``.

    The VJPs reuse ``fx``'s graph (``retain_graph``), so IFT keeps one graph of ``f``, like one-step; a
    second backward through a retained graph gets the implicit gradient again.
    """

    def hook(v: torch.Tensor | None) -> torch.Tensor | None:
        if v is None:  # an undefined gradient (gradcheck probes those)
            return None

        def adjoint(u: torch.Tensor) -> torch.Tensor:
            (jtu,) = torch.autograd.grad(fx, x_leaf, u, retain_graph=True)
            return jtu + v

        u, bstats = solve(adjoint, v.detach(), method=method, max_iter=max_iter, tol=tol, stop_mode="rel")
        release_workspace()  # as after the forward solve: not held through the rest of the backward
        if clip is not None:
            acc = torch.promote_types(v.dtype, torch.float32)
            limit = clip * torch.linalg.vector_norm(v, dim=1, dtype=acc)
            norm = torch.linalg.vector_norm(u, dim=1, dtype=acc)
            u = u * (limit / norm.clamp_min(torch.finfo(acc).tiny)).clamp(max=1.0).to(u.dtype)[:, None]
        stats.backward = bstats
        return u

    out.register_hook(hook)


def _attach_neumann_hook(out: torch.Tensor, fx: torch.Tensor, x_leaf: torch.Tensor, terms: int) -> None:
    """On ``out`` (a view of ``fx = f(x_leaf)``), replace the incoming ``v`` by ``Σ_{i<=terms} (Jᵀ)^i v``."""

    def hook(v: torch.Tensor | None) -> torch.Tensor | None:
        if v is None:
            return None
        u, w = v, v
        for _ in range(terms):
            (w,) = torch.autograd.grad(fx, x_leaf, w, retain_graph=True)
            u = u + w
        return u

    out.register_hook(hook)
