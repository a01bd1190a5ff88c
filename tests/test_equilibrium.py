"""Forward solvers of `equilibrium`: known fixed points, convergence bookkeeping, options and dtypes.

Run: ``pytest tests/test_equilibrium.py`` (the ``slow`` inductor test: ``-m slow``).
"""

from __future__ import annotations

import collections
import math

import pytest
import torch

from equilibrium import SOLVERS, SolverStats, register_solver, release_workspace, set_cpu_workspace, solve
from equilibrium.solvers import picard

DOTTIE = 0.7390851332151607  # the fixed point of cos
METHODS = sorted(SOLVERS)


def contractive(d: int, rho: float, seed: int, *, symmetric: bool = False) -> torch.Tensor:
    """A (d, d) float64 matrix with spectral norm ``rho`` (symmetric: spectrum ``rho·0.8^i``)."""
    g = torch.Generator().manual_seed(seed)
    if symmetric:
        q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
        return q @ torch.diag(rho * 0.8 ** torch.arange(d, dtype=torch.float64)) @ q.T
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return a * (rho / torch.linalg.matrix_norm(a, ord=2))


def slow_mode(d: int, seed: int) -> torch.Tensor:
    """Symmetric, eigenvalues 0.99·0.85^i: plain iteration is dominated by the 0.99 mode."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return q @ torch.diag(0.99 * 0.85 ** torch.arange(d, dtype=torch.float64)) @ q.T


def linear_solution(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Rows z with z = z Aᵀ + b, i.e. z = b (I - A)⁻ᵀ."""
    eye = torch.eye(a.shape[0], dtype=a.dtype)
    return torch.linalg.solve(eye - a, b.T).T


# ------------------------------------------------------------------ known fixed points


@pytest.mark.parametrize("method", METHODS)
def test_cos_fixed_point(method):
    z, stats = solve(
        torch.cos, torch.zeros(5, 3, dtype=torch.float64), method=method, tol=1e-12, stop_mode="abs", max_iter=200
    )
    torch.testing.assert_close(z, torch.full_like(z, DOTTIE), atol=1e-11, rtol=0)
    assert isinstance(stats, SolverStats)
    assert stats.converged.all()
    assert stats.nstep.shape == (5,) and stats.abs_residual.shape == (5,)
    assert (stats.abs_residual < 1e-12).all()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("beta", [1.0, 0.7])
def test_linear_map_matches_closed_form(method, beta):
    a = contractive(16, 0.9, seed=1)
    b = torch.randn(6, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    z, stats = solve(lambda z: z @ a.T + b, torch.zeros_like(b), method=method, beta=beta, tol=1e-11, max_iter=500)
    assert stats.converged.all()
    torch.testing.assert_close(z, linear_solution(a, b), atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_tuple_state(method):
    """TRM-style state (y, z) of different shapes: y = 0.5 z W1ᵀ + c, z = 0.5 y W2ᵀ + d."""
    g = torch.Generator().manual_seed(3)
    w1 = torch.randn(4, 6, generator=g, dtype=torch.float64) / 6
    w2 = torch.randn(6, 4, generator=g, dtype=torch.float64) / 6
    c = torch.randn(3, 2, 2, generator=g, dtype=torch.float64)
    d = torch.randn(3, 6, generator=g, dtype=torch.float64)

    def f(state):
        y, z = state
        return (0.5 * (z @ w1.T).view(3, 2, 2) + c, 0.5 * y.reshape(3, 4) @ w2.T + d)

    (y, z), stats = solve(
        f,
        (torch.zeros(3, 2, 2, dtype=torch.float64), torch.zeros(3, 6, dtype=torch.float64)),
        method=method,
        tol=1e-12,
        stop_mode="abs",
        max_iter=300,
    )
    assert stats.converged.all()
    # Closed form of the joint linear system [y; z] = M [y; z] + [c; d].
    m = torch.zeros(10, 10, dtype=torch.float64)
    m[:4, 4:] = 0.5 * w1
    m[4:, :4] = 0.5 * w2
    sol = linear_solution(m, torch.cat([c.reshape(3, 4), d], dim=1))
    torch.testing.assert_close(y.reshape(3, 4), sol[:, :4], atol=1e-10, rtol=0)
    torch.testing.assert_close(z, sol[:, 4:], atol=1e-10, rtol=0)


# ------------------------------------------------------------------ Anderson specifics


def test_anderson_beats_picard_on_slow_mode():
    a = slow_mode(32, seed=4)
    b = 0.1 * torch.randn(4, 32, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    f = lambda z: torch.tanh(z @ a.T + b)  # noqa: E731
    z0 = torch.zeros_like(b)
    _, s_and = solve(f, z0, method="anderson", tol=1e-6, max_iter=1000)
    _, s_pic = solve(f, z0, method="picard", tol=1e-6, max_iter=1000)
    assert s_and.converged.all() and s_pic.converged.all()
    assert s_and.nstep.max() * 3 < s_pic.nstep.max(), (s_and.nstep, s_pic.nstep)


def reference_anderson(f, x0, n_iter: int, m: int, lam: float) -> torch.Tensor:
    """Straightforward Anderson on a deque of the last m (f(x), g) pairs; returns the iterate after n_iter."""
    hist: collections.deque = collections.deque(maxlen=m)
    x = x0
    for k in range(n_iter):
        fx = f(x)
        hist.append((fx, fx - x))
        if k == n_iter - 1:
            return fx
        fs = torch.stack([h[0] for h in hist], dim=1)  # (B, n, D)
        gs = torch.stack([h[1] for h in hist], dim=1)
        h = gs @ gs.transpose(1, 2)
        n = h.shape[-1]
        scale = h.diagonal(dim1=1, dim2=2).mean(1)
        reg = h + lam * scale[:, None, None] * torch.eye(n, dtype=h.dtype)
        w = torch.linalg.solve(reg, torch.ones(h.shape[0], n, 1, dtype=h.dtype))
        alpha = (w / w.sum(1, keepdim=True)).transpose(1, 2)  # (B, 1, n)
        x = (alpha @ fs).squeeze(1)
    raise AssertionError("unreachable")


@pytest.mark.parametrize("n_iter", [2, 3, 4, 7, 23, 40])
def test_anderson_ring_buffer_matches_deque_reference_after_wraps(n_iter):
    """After the ring wraps (m=3, up to 13 wraps) the solver must use exactly the last m iterates."""
    a = slow_mode(12, seed=6)
    b = torch.randn(3, 12, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    f = lambda z: torch.tanh(z @ a.T + b)  # noqa: E731
    z0 = torch.zeros_like(b)
    z, stats = solve(f, z0, method="anderson", m=3, lam=1e-8, tol=0.0, max_iter=n_iter)
    assert (stats.nstep == n_iter).all() and not stats.converged.any()
    torch.testing.assert_close(z, reference_anderson(f, z0, n_iter, m=3, lam=1e-8), atol=1e-12, rtol=1e-10)


def test_anderson_reaches_true_equilibrium_after_many_wraps():
    a = slow_mode(24, seed=8)
    b = torch.randn(2, 24, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    z, stats = solve(
        lambda z: z @ a.T + b, torch.zeros_like(b), method="anderson", m=2, tol=1e-12, stop_mode="abs", max_iter=2000
    )
    assert stats.converged.all() and stats.nstep.min() > 20  # the window of 2 wrapped many times
    torch.testing.assert_close(z, linear_solution(a, b), atol=1e-9, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_anderson_residuals_from_gram_row_match_direct_norms(dtype):
    """Anderson reads ‖g‖ off its Gram row; the reported residuals must equal norms computed from f's calls."""
    a = slow_mode(16, seed=12).to(dtype)
    b = torch.randn(3, 16, generator=torch.Generator().manual_seed(13), dtype=dtype)
    calls = []

    def f(z):
        fz = torch.tanh(z @ a.T + b)
        calls.append((z.clone(), fz.clone()))
        return fz

    _, stats = solve(f, torch.zeros_like(b), method="anderson", m=3, tol=0.0, max_iter=9, return_trace=True)
    g = torch.stack([(fz - z).double().norm(dim=1) for z, fz in calls], dim=1)  # (B, 9)
    r = torch.stack([fz.double().norm(dim=1) for _, fz in calls], dim=1)
    eps = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(stats.abs_trace.double(), g, rtol=eps, atol=0)
    torch.testing.assert_close(stats.rel_trace.double(), g / (r + 1e-9), rtol=eps, atol=0)


@pytest.mark.parametrize("f", [lambda z: torch.full_like(z, 2.0), lambda z: z.clone()], ids=["constant", "identity"])
def test_anderson_singular_system_falls_back(f):
    """Zero residuals make the Gram matrix singular (lam=0): plain steps, finite result, no crash."""
    z0 = torch.ones(3, 4)
    z, _ = solve(f, z0, method="anderson", lam=0.0, tol=0.0, max_iter=12)
    assert torch.isfinite(z).all()
    torch.testing.assert_close(z, f(z0))


# ------------------------------------------------------------------ convergence bookkeeping


def per_sample_rates_problem():
    """Samples contract at rates 0.3, 0.6, 0.9, 0.97: they converge at very different iterations."""
    rates = torch.tensor([0.3, 0.6, 0.9, 0.97], dtype=torch.float64)[:, None]
    a = contractive(8, 1.0, seed=10, symmetric=True)
    b = torch.randn(4, 8, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    return (lambda z: rates * torch.tanh(z @ a.T) + b), torch.zeros_like(b)


@pytest.mark.parametrize("method", METHODS)
def test_converged_samples_are_frozen(method):
    f, z0 = per_sample_rates_problem()
    z, stats = solve(f, z0, method=method, tol=1e-6, max_iter=400, return_trace=True)
    assert stats.converged.all()
    assert stats.nstep[0] < stats.nstep[-1]
    # A sample's result is what the solver had when it converged: rerunning with max_iter = its nstep
    # gives the same value, although the batch kept iterating for longer in the first run.
    for i in range(4):
        z_i, _ = solve(f, z0, method=method, tol=1e-6, max_iter=int(stats.nstep[i]))
        torch.testing.assert_close(z[i], z_i[i], atol=0, rtol=0)
    # The trace stops moving once a sample is frozen.
    trace = stats.rel_trace
    assert trace.shape == (4, int(stats.nstep.max()))
    for i in range(4):
        k = int(stats.nstep[i])
        assert (trace[i, k - 1 :] == stats.rel_residual[i]).all()


# ------------------------------------------------------------------ CPU buffer reuse


def linear_problem(seed: int, batch: int = 6, d: int = 32):
    a = contractive(d, 0.9, seed=seed)
    b = torch.randn(batch, d, generator=torch.Generator().manual_seed(seed + 100), dtype=torch.float64)
    return (lambda z: z @ a.T + b), b, linear_solution(a, b)


def test_anderson_results_and_z0_survive_later_solves():
    """A returned result and the caller's z0 are not views of anything a later solve writes.

    The history workspace is reused across solves and the mix overwrites the iterate.
    """
    release_workspace()
    f1, b1, want1 = linear_problem(1)
    z0 = torch.randn_like(b1)
    z0_before = z0.clone()
    z1, _ = solve(f1, z0, method="anderson", tol=1e-11, max_iter=300)
    z1_before = z1.clone()
    f2, _, want2 = linear_problem(2)
    z2, _ = solve(f2, torch.zeros_like(b1), method="anderson", tol=1e-11, max_iter=300)
    torch.testing.assert_close(z1, z1_before, atol=0, rtol=0)
    torch.testing.assert_close(z0, z0_before, atol=0, rtol=0)
    torch.testing.assert_close(z1, want1, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(z2, want2, atol=1e-9, rtol=1e-9)


def test_anderson_solve_nested_inside_f():
    """An f that runs an Anderson solve of the same shape (a DEQ inside a DEQ) does not share the outer history.

    inner(z) solves u = 0.5 u + z, so u = 2z, and the outer map z = 0.25 · inner(z) + c = 0.5 z + c has z* = 2c.
    """
    c = torch.randn(4, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def inner(z):
        u, stats = solve(lambda u: 0.5 * u + z, torch.zeros_like(z), method="anderson", tol=1e-13, max_iter=200)
        assert stats.converged.all()
        return u

    z, stats = solve(lambda z: 0.25 * inner(z) + c, torch.zeros_like(c), method="anderson", tol=1e-11, max_iter=200)
    assert stats.converged.all()
    torch.testing.assert_close(z, 2 * c, atol=1e-9, rtol=1e-9)


def test_anderson_in_threads_do_not_share_history():
    import threading

    problems = [linear_problem(seed) for seed in range(4)]
    results: dict[int, torch.Tensor] = {}

    def work(i):
        f, b, _ = problems[i]
        for _ in range(3):
            results[i] = solve(f, torch.zeros_like(b), method="anderson", tol=1e-11, max_iter=300)[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, (_, _, want) in enumerate(problems):
        torch.testing.assert_close(results[i], want, atol=1e-9, rtol=1e-9)


def test_workspace_shape_change_release_and_switch():
    from equilibrium import solvers

    release_workspace()
    for batch, d in ((6, 32), (3, 32), (6, 8), (6, 32)):
        f, b, want = linear_problem(5, batch=batch, d=d)
        z, _ = solve(f, torch.zeros_like(b), method="anderson", tol=1e-11, max_iter=300)
        torch.testing.assert_close(z, want, atol=1e-9, rtol=1e-9)
        kept = solvers._WORKSPACE.buf
        assert kept is not None and kept.shape == (batch, 10, d)  # the last solve's (B, 2m, D) history
    release_workspace()
    assert solvers._WORKSPACE.buf is None
    # A differentiable (training) solve does not keep the buffer through the rest of the step.
    from equilibrium import fixed_point

    c = torch.randn(6, 32, dtype=torch.float64, requires_grad=True)
    for backward in ("onestep", "phantom", "ift"):
        z, _ = fixed_point(lambda z: 0.5 * z + c, torch.zeros(6, 32, dtype=torch.float64), backward=backward)
        assert solvers._WORKSPACE.buf is None
        z.sum().backward()
        assert solvers._WORKSPACE.buf is None
    with torch.no_grad():
        fixed_point(lambda z: 0.5 * z + c, torch.zeros(6, 32, dtype=torch.float64))
    assert solvers._WORKSPACE.buf is not None  # inference keeps it
    assert set_cpu_workspace(False) is True
    try:
        z, _ = solve(f, torch.zeros_like(b), method="anderson", tol=1e-11, max_iter=300)
        torch.testing.assert_close(z, want, atol=1e-9, rtol=1e-9)
        assert solvers._WORKSPACE.buf is None  # nothing kept when the reuse is off
    finally:
        assert set_cpu_workspace(True) is False


def test_min_iter_honoured_and_nonconvergence_reported():
    f, z0 = per_sample_rates_problem()
    _, stats = solve(f, z0, method="picard", tol=10.0, min_iter=7, max_iter=20)
    assert (stats.nstep == 7).all() and stats.converged.all()
    _, stats = solve(f, z0, method="anderson", tol=1e-30, max_iter=5)
    assert (stats.nstep == 5).all() and not stats.converged.any()
    assert torch.isfinite(stats.rel_residual).all()


@pytest.mark.parametrize("method", METHODS)
def test_nan_raises_with_iteration(method):
    calls = {"n": 0}

    def f(z):
        calls["n"] += 1
        out = 0.5 * z + 1.0
        return out * float("nan") if calls["n"] == 3 else out

    with pytest.raises(FloatingPointError, match="iteration 3"):
        solve(f, torch.zeros(2, 3), method=method, tol=0.0, max_iter=10)


def test_per_token_residuals():
    """Token 1 converges slowly; per-token stats expose it and the sample waits for it."""
    rates = torch.tensor([0.2, 0.95, 0.2], dtype=torch.float64)[None, :, None]  # (1, T, 1)
    b = torch.ones(2, 3, 4, dtype=torch.float64)
    f = lambda z: rates * torch.tanh(z) + b  # noqa: E731
    _, stats = solve(f, torch.zeros_like(b), method="picard", tol=1e-8, max_iter=2000, per_token=True)
    assert stats.abs_residual.shape == (2, 3) and stats.rel_residual.shape == (2, 3)
    assert stats.converged.all() and (stats.rel_residual < 1e-8).all()
    _, whole = solve(f, torch.zeros_like(b), method="picard", tol=1e-8, max_iter=2000)
    assert whole.abs_residual.shape == (2,)
    # Tuple states: every part needs the same token count.
    with pytest.raises(ValueError, match="per_token"):
        solve(lambda s: s, (torch.zeros(2, 3, 4), torch.zeros(2, 5)), per_token=True)


# ------------------------------------------------------------------ options, dtypes, compile


def test_unknown_options_raise_at_once():
    with pytest.raises(TypeError):
        solve(torch.cos, torch.zeros(2, 2), mx_iter=5)
    with pytest.raises(ValueError, match="registered solvers"):
        solve(torch.cos, torch.zeros(2, 2), method="broyden")
    with pytest.raises(ValueError, match="stop_mode"):
        solve(torch.cos, torch.zeros(2, 2), stop_mode="relative")
    with pytest.raises(ValueError, match="min_iter"):
        solve(torch.cos, torch.zeros(2, 2), min_iter=5, max_iter=3)
    with pytest.raises(ValueError, match="shape"):
        solve(lambda z: z[:, :1], torch.zeros(2, 2))


def test_register_solver():
    def halfway(f, x0, monitor, *, max_iter, beta=1.0):
        return picard(f, x0, monitor, max_iter=max_iter, beta=0.5 * beta)

    register_solver("halfway_test", halfway)
    try:
        z, stats = solve(
            torch.cos, torch.zeros(2, 2, dtype=torch.float64), method="halfway_test", tol=1e-10, max_iter=200
        )
        torch.testing.assert_close(z, torch.full_like(z, DOTTIE), atol=1e-9, rtol=0)
        assert stats.method == "halfway_test"
        with pytest.raises(ValueError, match="already registered"):
            register_solver("halfway_test", halfway)
    finally:
        SOLVERS.pop("halfway_test")


def test_stats_summary_namespace():
    _, stats = solve(torch.cos, torch.zeros(3, 2), tol=1e-5)
    summary = stats.summary()
    assert set(summary) == {
        "solver/nstep_mean",
        "solver/nstep_max",
        "solver/rel_residual_mean",
        "solver/rel_residual_max",
        "solver/converged_frac",
    }
    assert all(isinstance(v, float) and math.isfinite(v) for v in summary.values())


@pytest.mark.parametrize("method", METHODS)
def test_bf16_autocast_on_cpu(method):
    torch.manual_seed(0)
    lin = torch.nn.Linear(32, 32)
    with torch.no_grad():
        lin.weight.mul_(0.5 / torch.linalg.matrix_norm(lin.weight, ord=2))
    x = torch.randn(4, 32)
    f = lambda z: torch.tanh(lin(z + x))  # noqa: E731 - bf16 out under autocast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert f(torch.zeros(4, 32)).dtype == torch.bfloat16
        z, stats = solve(f, torch.zeros(4, 32), method=method, tol=2e-2, max_iter=50)
    assert z.dtype == torch.float32 and stats.converged.all()
    z_ref, _ = solve(f, torch.zeros(4, 32), method=method, tol=1e-6, max_iter=100)
    assert (z - z_ref).norm() / z_ref.norm() < 5e-2


def test_bf16_state():
    a = contractive(16, 0.5, seed=12).float()
    b = torch.randn(3, 16)
    z, stats = solve(
        lambda z: torch.tanh(z @ a.T.bfloat16() + b.bfloat16()),
        torch.zeros(3, 16, dtype=torch.bfloat16),
        method="anderson",
        tol=2e-2,
        max_iter=50,
    )
    assert z.dtype == torch.bfloat16 and stats.converged.all()


def test_compiled_f_eager_backend():
    a = contractive(8, 0.8, seed=13).float()
    f = torch.compile(lambda z: torch.tanh(z @ a.T + 1.0), backend="eager", dynamic=False)
    z, stats = solve(f, torch.zeros(3, 8), method="anderson", tol=1e-6)
    z_ref, _ = solve(lambda z: torch.tanh(z @ a.T + 1.0), torch.zeros(3, 8), method="anderson", tol=1e-6)
    assert stats.converged.all()
    torch.testing.assert_close(z, z_ref)


@pytest.mark.slow
def test_compiled_f_inductor():
    a = contractive(8, 0.8, seed=13).float()
    f = torch.compile(lambda z: torch.tanh(z @ a.T + 1.0))
    z, stats = solve(f, torch.zeros(3, 8), method="anderson", tol=1e-6)
    assert stats.converged.all()
    torch.testing.assert_close(z, torch.tanh(z @ a.T + 1.0), atol=1e-5, rtol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method", METHODS)
def test_cuda_matches_cpu(method):
    f, z0 = per_sample_rates_problem()
    z_cpu, s_cpu = solve(f, z0, method=method, tol=1e-8, max_iter=400)
    fc = lambda z: f(z.cpu()).cuda()  # noqa: E731 - same map, state on the GPU
    z_gpu, s_gpu = solve(fc, z0.cuda(), method=method, tol=1e-8, max_iter=400)
    torch.testing.assert_close(z_gpu.cpu(), z_cpu, atol=1e-7, rtol=0)
    assert torch.equal(s_gpu.nstep.cpu(), s_cpu.nstep)


def _stale_prefix_map(z: torch.Tensor) -> torch.Tensor:
    """Two causal rows per sequence: row 0 ← 0.5·row0 + 1 (→ 2), row 1 ← 10·relu(row0 − 1.9) (→ 1).

    Row 1's residual is exactly 0 while row 0 is below 1.9 (its first 5 Picard steps from 0), so without the
    causal prefix rule row 1 freezes at 0, far from its fixed point 1.
    """
    rows = z.view(-1, 2, z.shape[-1])
    out = torch.stack([0.5 * rows[:, 0] + 1.0, 10.0 * torch.relu(rows[:, 0] - 1.9)], dim=1)
    return out.view_as(z)


@pytest.mark.parametrize("method", ["picard", "anderson"])
def test_causal_group_freezes_a_row_only_with_its_prefix(method):
    z0 = torch.zeros(2 * 3, 4)  # 3 sequences of 2 positions, flattened to rows
    kw = {"method": method, "max_iter": 200, "min_iter": 2, "tol": 1e-6, "stop_mode": "abs"}
    stale, stats = solve(_stale_prefix_map, z0, **kw)
    assert bool(stats.converged.all())
    assert float(stale.view(3, 2, 4)[:, 1].abs().max()) == 0.0  # the bug: row 1 frozen at 0 while row 0 moved
    z, stats = solve(_stale_prefix_map, z0, causal_group=2, **kw)
    assert bool(stats.converged.all())
    expected = torch.tensor([2.0, 1.0])[None, :, None].expand(3, 2, 4)
    torch.testing.assert_close(z.view(3, 2, 4), expected, atol=1e-4, rtol=0)
    steps = stats.nstep.view(3, 2)
    assert bool((steps[:, 1] >= steps[:, 0]).all())  # a row never freezes before its prefix


def test_causal_group_must_divide_the_batch():
    with pytest.raises(ValueError, match="causal_group"):
        solve(torch.cos, torch.zeros(6, 2), causal_group=4)


def test_cpu_workspace_survives_switching_inference_mode():
    """A history buffer cached under torch.inference_mode must not be reused outside it (in-place write error)."""
    f = lambda z: 0.5 * torch.cos(z)  # noqa: E731
    with torch.inference_mode():
        inside, _ = solve(f, torch.zeros(4, 8), method="anderson", tol=1e-8)
    with torch.no_grad():
        outside, _ = solve(f, torch.zeros(4, 8), method="anderson", tol=1e-8)
    torch.testing.assert_close(outside, inside.clone())
