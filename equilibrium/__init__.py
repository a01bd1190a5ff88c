"""equilibrium: the suite's fixed-point solver core (Picard / Anderson; one-step, phantom and IFT gradients).

Every recurrent model in the suite solves ``z* = f(z*)`` through this package.

    from equilibrium import solve, fixed_point, SolverStats
    z_star, stats = solve(f, z0, method="anderson", max_iter=30, tol=1e-4)             # no graph
    z_star, stats = fixed_point(f, z0, backward="phantom", phantom_steps=3)            # differentiable

Layout: ``solvers.py`` (Picard, Anderson, `solve`, solver registry), ``backward.py`` (`fixed_point` and the
three gradient modes), ``stats.py`` (`SolverStats`), ``state.py`` (tuple states as one ``(B, D)`` matrix),
``diagnostics.py`` (spectral radius, Hutchinson penalty), ``profiling.py`` (memory accounting).
Tests: ``pytest tests/test_equilibrium*.py``.
"""

from equilibrium.backward import BACKWARD_MODES, attach_backward, fixed_point
from equilibrium.diagnostics import jacobian_penalty, spectral_radius
from equilibrium.solvers import (
    SOLVERS,
    anderson,
    picard,
    register_solver,
    release_workspace,
    set_cpu_workspace,
    solve,
)
from equilibrium.stats import SolverStats

__all__ = [
    "BACKWARD_MODES",
    "SOLVERS",
    "SolverStats",
    "anderson",
    "attach_backward",
    "fixed_point",
    "jacobian_penalty",
    "picard",
    "register_solver",
    "release_workspace",
    "set_cpu_workspace",
    "solve",
    "spectral_radius",
]
