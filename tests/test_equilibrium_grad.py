"""Gradients and memory of `equilibrium.fixed_point`, and the diagnostics.

Exact implicit gradients, the phantom and one-step formulas, gradcheck, constant saved-for-backward memory.

Run: ``pytest tests/test_equilibrium_grad.py``.
"""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

from equilibrium import BACKWARD_MODES, fixed_point, jacobian_penalty, solve, spectral_radius
from equilibrium.profiling import SavedTensorBytes

F64 = torch.float64


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.flatten() @ b.flatten()) / (a.norm() * b.norm()))


def make_problem(d: int = 10, batch: int = 4, seed: int = 0, rho: float = 0.8):
    """Parameters of f(z) = tanh(z Wᵀ + x Uᵀ): W (d, d) with spectral norm rho, U (d, d), x (B, d)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, d, generator=g, dtype=F64)
    w = (w * rho / torch.linalg.matrix_norm(w, ord=2)).requires_grad_()
    u = (torch.randn(d, d, generator=g, dtype=F64) / d**0.5).requires_grad_()
    x = torch.randn(batch, d, generator=g, dtype=F64).requires_grad_()
    probe = torch.randn(batch, d, generator=g, dtype=F64)  # loss = <probe, z*>
    return w, u, x, probe


def f_of(w, u, x):
    return lambda z: torch.tanh(z @ w.T + x @ u.T)


def exact_implicit_grads(w, u, x, probe):
    """d<probe, z*>/d(w, u, x) by the implicit function theorem with explicit per-sample Jacobians."""
    f = f_of(w, u, x)
    z_star, stats = solve(f, torch.zeros_like(x), tol=1e-14, stop_mode="abs", max_iter=500)
    assert stats.converged.all()
    z_star = z_star.detach()
    d = x.shape[1]
    # J_b = ∂f/∂z at z*_b = diag(1 - f²) W; solve (I - J_b)ᵀ u_b = v_b exactly.
    s = 1 - torch.tanh(z_star @ w.detach().T + x.detach() @ u.detach().T) ** 2  # (B, d)
    jac = s[:, :, None] * w.detach()[None]  # (B, d, d)
    adj = torch.linalg.solve((torch.eye(d, dtype=F64) - jac).transpose(1, 2), probe[:, :, None])[:, :, 0]
    out = f(z_star)  # one graph of f at z*, fed the adjoint vector
    return torch.autograd.grad(out, (w, u, x), adj)


# ------------------------------------------------------------------ gradient correctness


@pytest.mark.parametrize("ift_method", ["anderson", "picard"])
def test_ift_matches_exact_implicit_gradient(ift_method):
    w, u, x, probe = make_problem()
    exact = exact_implicit_grads(w, u, x, probe)
    z, stats = fixed_point(
        f_of(w, u, x),
        torch.zeros_like(x),
        backward="ift",
        tol=1e-12,
        max_iter=300,
        ift_method=ift_method,
        ift_tol=1e-12,
        ift_max_iter=500,
    )
    got = torch.autograd.grad((probe * z).sum(), (w, u, x))
    for g_got, g_exact in zip(got, exact, strict=True):
        assert cosine(g_got, g_exact) >= 0.9999
        torch.testing.assert_close(g_got, g_exact, atol=1e-8, rtol=1e-7)
    assert stats.backward is not None and stats.backward.converged.all()


def test_ift_linear_map_closed_form():
    """f(z) = z Aᵀ + b: z* = b (I - A)⁻ᵀ, so the gradient is available by differentiating the closed form."""
    g = torch.Generator().manual_seed(1)
    a = torch.randn(8, 8, generator=g, dtype=F64)
    a = (0.9 * a / torch.linalg.matrix_norm(a, ord=2)).requires_grad_()
    b = torch.randn(3, 8, generator=g, dtype=F64).requires_grad_()
    probe = torch.randn(3, 8, generator=g, dtype=F64)
    closed = torch.linalg.solve(torch.eye(8, dtype=F64) - a, b.T).T
    exact = torch.autograd.grad((probe * closed).sum(), (a, b))
    z, _ = fixed_point(
        lambda z: z @ a.T + b,
        torch.zeros_like(b),
        backward="ift",
        tol=1e-13,
        max_iter=500,
        ift_tol=1e-13,
        ift_max_iter=500,
    )
    got = torch.autograd.grad((probe * z).sum(), (a, b))
    for g_got, g_exact in zip(got, exact, strict=True):
        assert cosine(g_got, g_exact) >= 0.9999
        torch.testing.assert_close(g_got, g_exact, atol=1e-9, rtol=1e-8)


def test_ift_gradcheck():
    w, u, x, _ = make_problem(d=5, batch=2, seed=2, rho=0.6)
    w, u = w.detach(), u.detach()

    def fn(x_in, w_in):
        z, _ = fixed_point(
            f_of(w_in, u, x_in),
            torch.zeros_like(x_in),
            backward="ift",
            tol=1e-15,
            stop_mode="abs",
            max_iter=300,
            ift_tol=1e-14,
            ift_max_iter=300,
        )
        return z

    assert torch.autograd.gradcheck(fn, (x.detach().requires_grad_(), w.requires_grad_()), eps=1e-6, atol=1e-6)


def test_phantom_equals_explicit_damped_steps():
    w, u, x, probe = make_problem(seed=3)
    f = f_of(w, u, x)
    z, _ = fixed_point(f, torch.zeros_like(x), backward="phantom", phantom_steps=3, phantom_tau=0.5, tol=1e-6)
    got = torch.autograd.grad((probe * z).sum(), (w, u, x))

    z_star, _ = solve(f, torch.zeros_like(x), tol=1e-6)
    zk = z_star.detach()
    for _ in range(3):
        zk = 0.5 * f(zk) + 0.5 * zk
    torch.testing.assert_close(z, zk, atol=0, rtol=0)
    expected = torch.autograd.grad((probe * zk).sum(), (w, u, x))
    for g_got, g_exp in zip(got, expected, strict=True):
        torch.testing.assert_close(g_got, g_exp, atol=1e-14, rtol=1e-12)


def test_onestep_equals_formula():
    """One-step gradient: (∂f/∂θ)ᵀ v at z*, i.e. the implicit gradient with (I - J)⁻¹ replaced by I."""
    w, u, x, probe = make_problem(seed=4)
    f = f_of(w, u, x)
    z, _ = fixed_point(f, torch.zeros_like(x), backward="onestep", tol=1e-10, max_iter=200)
    got = torch.autograd.grad((probe * z).sum(), (w, u, x))
    z_star, _ = solve(f, torch.zeros_like(x), tol=1e-10, max_iter=200)
    # The explicit formula: for f = tanh(a), a = z Wᵀ + x Uᵀ, v_a = v ⊙ (1 - f²).
    fz = torch.tanh(z_star @ w.detach().T + x.detach() @ u.detach().T)
    va = probe * (1 - fz**2)
    expected = (va.T @ z_star, va.T @ x.detach(), va @ u.detach())
    for g_got, g_exp in zip(got, expected, strict=True):
        torch.testing.assert_close(g_got, g_exp, atol=1e-12, rtol=1e-10)
    # And it is not the implicit gradient (the test could fail).
    assert cosine(got[0], exact_implicit_grads(w, u, x, probe)[0]) < 0.9999


def test_ift_clip_bounds_adjoint():
    """For f(z) = z Aᵀ + x the gradient w.r.t. x is the adjoint u itself, so the clip is visible."""
    g = torch.Generator().manual_seed(5)
    a = torch.randn(6, 6, generator=g, dtype=F64)
    a = 0.95 * a / torch.linalg.matrix_norm(a, ord=2)
    x = torch.randn(3, 6, generator=g, dtype=F64, requires_grad=True)
    v = torch.randn(3, 6, generator=g, dtype=F64)
    # ‖u‖ = ‖(I - Aᵀ)⁻¹ v‖ >= ‖v‖ / (1 + ‖A‖) > 0.5 ‖v‖, so a clip at 0.5 must act on every sample.
    for clip in (None, 0.5):
        x.grad = None
        z, _ = fixed_point(
            lambda z: z @ a.T + x,
            torch.zeros_like(x),
            backward="ift",
            ift_clip=clip,
            tol=1e-10,
            max_iter=300,
            ift_tol=1e-10,
            ift_max_iter=300,
        )
        (v * z).sum().backward()
        ratio = x.grad.norm(dim=1) / v.norm(dim=1)
        if clip is None:
            assert (ratio > 0.5 + 1e-3).all()
        else:
            torch.testing.assert_close(ratio, torch.full_like(ratio, clip))


@pytest.mark.parametrize("backward", BACKWARD_MODES)
def test_tuple_state_gradients_flow(backward):
    g = torch.Generator().manual_seed(6)
    w = (0.3 * torch.randn(4, 4, generator=g, dtype=F64)).requires_grad_()
    c = torch.randn(2, 4, generator=g, dtype=F64, requires_grad=True)

    def f(state):
        y, z = state
        return torch.tanh(z @ w.T + c), 0.5 * torch.tanh(y) + 0.1 * z

    (y, z), _ = fixed_point(
        f, (torch.zeros(2, 4, dtype=F64), torch.zeros(2, 4, dtype=F64)), backward=backward, tol=1e-10, max_iter=200
    )
    (y.sum() + z.sum()).backward()
    assert w.grad is not None and w.grad.abs().sum() > 0 and c.grad.abs().sum() > 0


def test_no_grad_returns_solver_fixed_point():
    w, u, x, _ = make_problem(seed=7)
    with torch.no_grad():
        z, _ = fixed_point(f_of(w, u, x), torch.zeros_like(x), backward="ift", tol=1e-8)
        z_ref, _ = solve(f_of(w, u, x), torch.zeros_like(x), tol=1e-8)
    assert z.grad_fn is None
    torch.testing.assert_close(z, z_ref, atol=0, rtol=0)


def test_fixed_point_rejects_unknown_options():
    f = torch.cos
    with pytest.raises(TypeError, match="max_iters"):
        fixed_point(f, torch.zeros(2, 2), max_iters=5)
    with pytest.raises(ValueError, match="backward"):
        fixed_point(f, torch.zeros(2, 2), backward="implicit")
    with pytest.raises(TypeError):
        fixed_point(f, torch.zeros(2, 2), phantom_step=2)
    with pytest.raises(ValueError, match="phantom_tau"):
        fixed_point(f, torch.zeros(2, 2), phantom_tau=0.0)


# ------------------------------------------------------------------ memory


def saved_bytes(fn) -> int:
    with SavedTensorBytes() as saved:
        out = fn()
    del out
    return saved.bytes


@pytest.mark.parametrize("backward", BACKWARD_MODES)
def test_saved_memory_independent_of_max_iter(backward):
    w, u, x, _ = make_problem(d=32, batch=8, seed=8, rho=0.95)
    f = f_of(w, u, x)

    def run(max_iter):
        # tol=0: the forward really runs max_iter iterations.
        z, stats = fixed_point(f, torch.zeros_like(x), backward=backward, tol=0.0, max_iter=max_iter)
        assert (stats.nstep == max_iter).all()
        return z

    small, large = saved_bytes(lambda: run(4)), saved_bytes(lambda: run(64))
    assert small > 0 and small == large


@pytest.mark.parametrize("backward", BACKWARD_MODES)
def test_no_reference_cycle_keeps_graph_alive(backward):
    """Everything a training step built is freed by reference counting alone (no gc)."""
    w, u, x, probe = make_problem(seed=12)
    gc.disable()
    try:
        z, stats = fixed_point(f_of(w, u, x), torch.zeros_like(x), backward=backward, tol=1e-6)
        (probe * z).sum().backward()
        ref = weakref.ref(stats)
        del z, stats
        assert ref() is None
    finally:
        gc.enable()


def test_unrolled_bptt_memory_grows_linearly():
    w, u, x, _ = make_problem(d=32, batch=8, seed=8, rho=0.95)
    f = f_of(w, u, x)

    def unrolled(n):
        z = torch.zeros_like(x)
        for _ in range(n):
            z = f(z)
        return z

    b4, b8, b64 = (saved_bytes(lambda n=n: unrolled(n)) for n in (4, 8, 64))
    # c + n·k: a constant (the parameters, counted once) plus one block of activations per step.
    assert b8 > b4 and b64 - b4 == 15 * (b8 - b4)


# ------------------------------------------------------------------ diagnostics


def test_spectral_radius_of_linear_map():
    g = torch.Generator().manual_seed(9)
    q, _ = torch.linalg.qr(torch.randn(12, 12, generator=g, dtype=F64))
    a = q @ torch.diag(torch.linspace(0.9, 0.1, 12, dtype=F64)) @ q.T
    b = torch.randn(3, 12, generator=g, dtype=F64)
    rho = spectral_radius(lambda z: z @ a.T + b, torch.zeros(3, 12, dtype=F64), n_iter=100, generator=g)
    assert rho.shape == (3,)
    torch.testing.assert_close(rho, torch.full((3,), 0.9), atol=1e-4, rtol=0)


def test_hutchinson_penalty_estimates_frobenius_norm():
    torch.manual_seed(10)
    a = torch.randn(6, 6, dtype=F64) * 0.3
    b = torch.zeros(2000, 6, dtype=F64)  # many samples: the batch mean is a many-probe estimate
    pen = jacobian_penalty(lambda z: z @ a.T + b, b)
    expected = torch.linalg.matrix_norm(a).square() / 6
    assert abs(pen.mean().item() - expected.item()) < 0.05 * expected.item()


def test_fixed_point_jacobian_penalty_is_differentiable():
    w, u, x, _ = make_problem(seed=11)
    z, stats = fixed_point(f_of(w, u, x), torch.zeros_like(x), backward="onestep", jacobian_penalty=True)
    assert stats.jacobian_penalty.shape == (4,)
    (z.sum() + stats.jacobian_penalty.mean()).backward()
    assert w.grad is not None and torch.isfinite(w.grad).all()


@pytest.mark.parametrize("terms", [1, 3])
def test_neumann_backward_is_the_truncated_adjoint_series(terms):
    """For f(z) = A z + b the neumann gradient w.r.t. b is exactly (Σ_{i<=n} (Aᵀ)^i) v."""
    torch.manual_seed(0)
    a = 0.3 * torch.randn(5, 5) / 5**0.5
    b = torch.randn(2, 5, requires_grad=True)
    v = torch.randn(2, 5)
    z, _ = fixed_point(lambda z: z @ a.T + b, torch.zeros(2, 5), backward="neumann", neumann_terms=terms,
                       method="anderson", max_iter=100, tol=1e-10)  # fmt: skip
    (z * v).sum().backward()
    series = sum(torch.linalg.matrix_power(a.T, i) for i in range(terms + 1))
    torch.testing.assert_close(b.grad, v @ series.T, rtol=1e-5, atol=1e-6)


def test_neumann_terms_validated():
    with pytest.raises(ValueError, match="neumann_terms"):
        fixed_point(torch.cos, torch.zeros(2, 2), backward="neumann", neumann_terms=0)
