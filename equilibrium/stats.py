"""`SolverStats`: what a fixed-point solve reports, per sample.

Every solver in `equilibrium.solvers` returns ``(z_star, stats)``. Residuals are measured on the step that
produced the returned state: for a sample that converged at iteration ``k`` the solver returns ``f(z_k)`` and
reports ``‖f(z_k) - z_k‖``. Non-convergence is reported here (``converged`` is False), never raised.

    from equilibrium import solve
    z, stats = solve(f, z0)
    logger.log(stats.summary())        # {"solver/nstep_mean": ..., "solver/rel_residual_max": ..., ...}
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class SolverStats:
    """Per-sample statistics of one fixed-point solve.

    Attributes:
        nstep: ``(B,)`` int64, number of evaluations of ``f`` a sample took (its convergence iteration, or
            the number of iterations run if it did not converge).
        abs_residual: ``(B,)`` float32 ``‖f(z) - z‖`` over all non-batch dims; ``(B, T)`` per token when
            the solve ran with ``per_token=True``.
        rel_residual: same shape, ``‖f(z) - z‖ / (‖f(z)‖ + 1e-9)``.
        converged: ``(B,)`` bool, whether the stopping criterion was met within ``max_iter``.
        method: solver name (``"picard"``, ``"anderson"``, ...).
        stop_mode: ``"rel"`` or ``"abs"``: which residual ``tol`` applied to.
        tol: the tolerance.
        max_iter: the iteration budget.
        abs_trace: optional ``(B, n_iter)`` absolute residual at every iteration (the maximum over tokens
            with ``per_token=True``); frozen samples repeat their final value.
        rel_trace: optional ``(B, n_iter)`` relative residual, likewise.
        backward: for ``backward="ift"``, the stats of the adjoint solve, filled in when backward runs.
        jacobian_penalty: ``(B,)`` Hutchinson estimate of ``‖J‖_F² / D`` at the fixed point, differentiable,
            when ``fixed_point(..., jacobian_penalty=True)``.
    """

    nstep: torch.Tensor
    abs_residual: torch.Tensor
    rel_residual: torch.Tensor
    converged: torch.Tensor
    method: str
    stop_mode: str
    tol: float
    max_iter: int
    abs_trace: torch.Tensor | None = None
    rel_trace: torch.Tensor | None = None
    backward: SolverStats | None = field(default=None, repr=False)
    jacobian_penalty: torch.Tensor | None = None

    @property
    def residual(self) -> torch.Tensor:
        """The residual the stopping criterion used (``rel_residual`` or ``abs_residual``)."""
        return self.rel_residual if self.stop_mode == "rel" else self.abs_residual

    def summary(self, prefix: str = "solver/") -> dict[str, float]:
        """Batch aggregates as plain floats, keyed in the suite's ``solver/`` metric namespace.

        Args:
            prefix: key prefix; ``"solver/"`` for the forward solve, e.g. ``"solver_bwd/"`` for the adjoint.

        Returns:
            Mean and max step counts, mean and max of the stopping residual, and the converged fraction.
            With a backward solve attached and already run, its summary is merged under ``prefix + "bwd_"``.
        """
        nstep = self.nstep.float()
        res = self.residual.float()
        out = {
            f"{prefix}nstep_mean": nstep.mean().item(),
            f"{prefix}nstep_max": nstep.max().item(),
            f"{prefix}{self.stop_mode}_residual_mean": res.mean().item(),
            f"{prefix}{self.stop_mode}_residual_max": res.max().item(),
            f"{prefix}converged_frac": self.converged.float().mean().item(),
        }
        if self.backward is not None:
            out.update(self.backward.summary(prefix + "bwd_"))
        return out
