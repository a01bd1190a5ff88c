"""Diagnostics at a fixed point: Jacobian spectral radius (power iteration) and Hutchinson Jacobian penalty.

    from equilibrium import solve, spectral_radius, jacobian_penalty
    z_star, _ = solve(f, z0)
    rho = spectral_radius(f, z_star)          # (B,): < 1 means locally contractive
    loss = task_loss + gamma * jacobian_penalty(f, z_star).mean()   # Bai et al. 2021 regulariser

Both use vector-Jacobian products (``Jᵀ`` has the spectrum of ``J``), so they cost one graph of ``f``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from equilibrium.state import State, StatePacker


def spectral_radius(
    f: Callable[[State], State],
    z: State,
    *,
    n_iter: int = 30,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per-sample estimate of the largest ``|eigenvalue|`` of ``J = ∂f/∂z`` at ``z`` by power iteration.

    Power iteration converges to the modulus of a dominant real eigenvalue; with a dominant complex pair it
    still bounds it within the oscillation. Assumes ``f`` treats samples independently.

    Args:
        f: the fixed-point map.
        z: the point, usually ``z*``; a tensor ``(B, ...)`` or a tuple.
        n_iter: power iterations (one VJP each).
        generator: for the random start vector.

    Returns:
        ``(B,)`` float32 estimates, detached.
    """
    packer = StatePacker(z)
    f_flat = packer.wrap(f)
    x = packer.flatten(z).detach().requires_grad_()
    with torch.enable_grad():
        fx = f_flat(x)  # (B, D)
    v = torch.randn(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device)
    acc = torch.promote_types(x.dtype, torch.float32)
    rho = torch.zeros(x.shape[0], dtype=acc, device=x.device)
    for _ in range(n_iter):
        v = v / torch.linalg.vector_norm(v, dim=1, dtype=acc).clamp_min(1e-30).to(v.dtype)[:, None]
        (w,) = torch.autograd.grad(fx, x, v, retain_graph=True)
        rho = torch.linalg.vector_norm(w, dim=1, dtype=acc)  # ‖Jᵀv‖ with ‖v‖ = 1
        v = w
    return rho.float().detach()


def jacobian_penalty(
    f: Callable[[State], State],
    z: State,
    *,
    n_samples: int = 1,
    create_graph: bool = True,
) -> torch.Tensor:
    """Hutchinson estimate of ``‖J‖_F² / D`` per sample (Bai et al. 2021, "Stabilizing Equilibrium Models").

    ``E_ε ‖εᵀJ‖² = ‖J‖_F²`` for ``ε ~ N(0, I)``; dividing by ``D`` keeps the scale independent of the width.
    `fixed_point(..., jacobian_penalty=True)` computes the same quantity on the graph it already builds.

    Args:
        f: the fixed-point map.
        z: the point (usually the detached fixed point).
        n_samples: number of probe vectors averaged.
        create_graph: keep the graph so the penalty can be backpropagated to ``f``'s parameters.

    Returns:
        ``(B,)`` estimates, differentiable when ``create_graph``.
    """
    packer = StatePacker(z)
    f_flat = packer.wrap(f)
    x = packer.flatten(z).detach().requires_grad_()
    with torch.enable_grad():
        return hutchinson_at(f_flat(x), x, n_samples=n_samples, create_graph=create_graph)


def hutchinson_at(fx: torch.Tensor, x: torch.Tensor, *, n_samples: int = 1, create_graph: bool = True) -> torch.Tensor:
    """`jacobian_penalty` on an existing graph ``fx = f(x)``, both ``(B, D)``; ``x`` must require grad."""
    acc = torch.promote_types(fx.dtype, torch.float32)
    total = torch.zeros(x.shape[0], dtype=acc, device=x.device)
    for _ in range(n_samples):
        (vjp,) = torch.autograd.grad(fx, x, torch.randn_like(fx), retain_graph=True, create_graph=create_graph)
        total = total + vjp.to(acc).square().sum(dim=1) / x.shape[1]
    return total / n_samples
