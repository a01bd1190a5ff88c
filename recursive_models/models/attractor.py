"""Attractor-TRM ("Solve the Loop", 2026): TRM's recursion replaced by a fixed-point solve; three variants.

``model.variant`` picks which source the model follows (one class, options not copies):

``paper`` (default; the paper's §4.2): TRM's protocol except the inner update. One supervision step solves
directly for the fixed point of TRM's ``(y, z)`` round, with the input embedding ``x`` injected as TRM does::

    f(y, z) = (net(y, z'), z')   with   z' = net(z, y + x)            # one latent and one answer update
    (y*, z*) = fixed_point(f, (y0, z0))                                # Anderson; phantom-gradient backward

No separate backbone; the sizes use TRM's networks (``7m``: TRM-7M's 2-layer net, ``27m``: TRM-27M's 8-layer
net), so Attractor-27M against TRM-27M compares the solve against the unroll on the same network. The solve is
warm-started from the previous step's ``(y, z)``; at step zero from a learned ``(y, z)`` embedding (the paper's
"learned embedding at step zero"). A fixed point does not depend on where its solve starts, so none of the
backward modes gives that embedding a gradient: it keeps its initial value in training (measured, see the
README).

``authors`` (the authors' ``TRMDEQ``, ``experiments/attractor_puzzles/trm/trm_deq.py`` in jacobfa/Attractor):
TRM's ``T = h_cycles`` outer rounds stay explicit (``T - 1`` without gradient); only the latent recursion is
solved, then ``K = solver.phantom_steps`` undamped steps from ``z*`` carry the gradient::

    for each round:  z* = solve(z -> net(z, y + x), z)     # no graph
                     z = net(z, y + x)  (K times, from z*)  # the authors' bptt_through = K
                     y = net(y, z)

With ``solver.method="authors"`` (this variant's default) the latent solve is their Anderson, reproduced
step for step (see `authors_anderson`); ``solver.method="anderson"`` uses `equilibrium`'s instead.
``solver.jacobian_reg`` adds their ``||Jᵀv||²`` regulariser to the loss (off in their runs). Initial states
are TRM's fixed random vectors.

``backbone`` (this suite's first model, kept as an option): a non-recurrent backbone proposes ``p = backbone(x)``
and the attractor refines ``(y, z)`` with ``p`` injected every iteration; ``y0 = p`` at step zero. With
``solver.max_iter=0`` the warm start is decoded (at step zero, the proposal alone: the paper's
equilibrium-internalization test).

    from recursive_models import build_model
    model = build_model("attractor", "27m", task="sudoku-extreme")                       # paper, 27.28M
    model = build_model("attractor", "27m", task="sudoku-extreme", variant="authors")    # their TRMDEQ
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from equilibrium import fixed_point, solve
from recursive_models.base import ModelConfig, RecursiveModel, SolverConfig, State, _where_rows
from recursive_models.registry import register_model

#: sizes every variant shares (widths, supervision steps); the variant tables below add the depths and solvers
_COMMON = {
    "tiny": {"hidden_size": 64, "num_heads": 4, "halt_max_steps": 8},
    "7m": {"hidden_size": 512, "num_heads": 8},
    "27m": {"hidden_size": 512, "num_heads": 8},
}
# TRM's reference sizes: 16 puzzle-embedding positions, only the first learned (as models/trm.py).
_TRM_PUZZLE_EMB = {"puzzle_emb_len": 16, "puzzle_emb_ndim": 512}
# The paper's backward: phantom gradient; K = 2 undamped steps of the (y, z) round (4 applications of the net with
# a graph), chosen from the ablation in the README over one-step and the damped 2 x 0.5 setting.
_PAPER_BACKWARD = {"backward": "phantom", "phantom_steps": 2, "phantom_tau": 1.0}
_DAMPED = {"backward": "phantom", "phantom_steps": 2, "phantom_tau": 0.5}  # the backbone model's setting, as before


@register_model("attractor")
class AttractorTRM(RecursiveModel):
    """Attractor-TRM; state ``(y, z)``, each ``(B, S, D)``; logs solver steps, residuals and ``max_iter`` hits."""

    SIZES: ClassVar[dict[str, dict]] = _COMMON
    DEFAULT_VARIANT: ClassVar[str] = "paper"
    #: variant -> size -> fields (applied after SIZES). Where a field comes from: see the README's table.
    VARIANTS: ClassVar[dict[str, dict[str, dict]]] = {
        "paper": {
            "tiny": {"layers": 2, "solver": {"max_iter": 6, **_PAPER_BACKWARD}},
            "7m": {"layers": 2, **_TRM_PUZZLE_EMB, "solver": _PAPER_BACKWARD},
            "27m": {"layers": 8, **_TRM_PUZZLE_EMB, "solver": _PAPER_BACKWARD},
        },
        "authors": {
            # their solver knobs: deq_max_iter 8, deq_min_iter 4, deq_tol 1e-3, m 5, beta 1, bptt_through 2
            "tiny": {"layers": 2, "solver": {"method": "authors", "max_iter": 6, "min_iter": 4}},
            "7m": {"layers": 2, **_TRM_PUZZLE_EMB, "solver": {"method": "authors", "max_iter": 8, "min_iter": 4}},
            "27m": {"layers": 8, **_TRM_PUZZLE_EMB, "solver": {"method": "authors", "max_iter": 8, "min_iter": 4}},
        },
        "backbone": {
            "tiny": {"backbone_layers": 2, "layers": 2, "solver": {"max_iter": 6, **_DAMPED}},
            "7m": {"backbone_layers": 1, "layers": 1, "solver": _DAMPED},
            "27m": {"backbone_layers": 6, "layers": 2, "solver": _DAMPED},
        },
    }
    #: TRM's outer rounds T = 3 on both tasks (used by ``authors`` only)
    TASK_ARCH: ClassVar[dict[str, dict]] = {"sudoku": {"h_cycles": 3}, "maze": {"h_cycles": 3}}

    @classmethod
    def num_blocks(cls, config: ModelConfig) -> int:  # noqa: D102
        backbone = (config.variant or "backbone") == "backbone"
        return config.layers + (config.backbone_layers if backbone else 0)

    @classmethod
    def num_learned_inits(cls, config: ModelConfig) -> int:  # noqa: D102
        return 2 if config.variant == "paper" else 0  # the paper's learned step-zero (y, z)

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        # Checkpoints written before variants existed have no variant in meta.json: they are backbone models.
        self.variant = config.variant or "backbone"
        if self.variant not in self.VARIANTS:
            raise ValueError(f"unknown attractor variant {self.variant!r}; expected one of {sorted(self.VARIANTS)}")
        s = config.solver
        if s.jacobian_reg and self.variant != "authors":
            raise ValueError("solver.jacobian_reg is the authors' regulariser: use it with variant=authors")
        if s.method == "authors" and self.variant != "authors":
            raise ValueError("solver.method=authors (their Anderson) applies to variant=authors only")
        if config.layers < 1:
            raise ValueError("the Attractor model needs layers >= 1")
        if self.variant == "backbone":
            if config.backbone_layers < 1:
                raise ValueError("variant=backbone needs backbone_layers >= 1")
            self.backbone = self.make_module(config.backbone_layers)
            self.attractor = self.make_module(config.layers)
            self.make_init("z_init")
        else:
            if config.backbone_layers:
                raise ValueError(f"variant={self.variant} has no backbone (backbone_layers must be 0)")
            if self.variant == "authors" and config.h_cycles < 1:
                raise ValueError("variant=authors needs h_cycles >= 1")
            self.net = self.make_module(config.layers)
            learned = self.variant == "paper"
            self.make_init("y_init", learned=learned)
            self.make_init("z_init", learned=learned)

    # ---- state ----------------------------------------------------------------------------------------------
    def init_state(self, batch_size: int, device: torch.device) -> State:  # noqa: D102
        shape = (batch_size, self.positions, self.config.hidden_size)
        z = self.z_init.detach().to(device).expand(shape)
        if self.variant == "backbone":
            # y's initial value is the proposal, filled in by `step`; zeros only give the carry its shape.
            return torch.zeros(shape, device=device), z
        return self.y_init.detach().to(device).expand(shape), z

    def step(self, state: State, x: torch.Tensor, rope, reset: torch.Tensor):  # noqa: D102
        if self.variant == "paper":
            return self._step_paper(state, x, rope, reset)
        if self.variant == "authors":
            return self._step_authors(state, x, rope, reset)
        return self._step_backbone(state, x, rope, reset)

    # ---- paper ----------------------------------------------------------------------------------------------
    def _step_paper(self, state: State, x: torch.Tensor, rope, reset: torch.Tensor):
        y0, z0 = self.reset_state(state, reset)
        if self.config.solver.max_iter == 0:  # decode the warm start
            return (y0, z0), y0, _no_solve(x)
        (y, z), info = self._solve_round(self.net, y0, z0, x, rope)
        return (y, z), y, info

    def _solve_round(self, net, y0: torch.Tensor, z0: torch.Tensor, inject: torch.Tensor, rope):
        """The fixed point of TRM's round ``z' = net(z, y + inject)``, ``y' = net(y, z')`` from ``(y0, z0)``."""

        def f(st: State) -> State:
            y, z = st
            z = net(z, y + inject, rope).to(z0.dtype)
            y = net(y, z, rope).to(y0.dtype)
            return y, z

        (y, z), stats = fixed_point(f, (y0, z0), **_solver_kwargs(self.config.solver, inject))
        return (y, z), _stats_info(stats)

    # ---- authors --------------------------------------------------------------------------------------------
    def _step_authors(self, state: State, x: torch.Tensor, rope, reset: torch.Tensor):
        y, z = self.reset_state(state, reset)
        c, s = self.config, self.config.solver
        regularise = s.jacobian_reg > 0 and self.training
        with torch.no_grad():
            for _ in range(c.h_cycles - 1):
                z, _ = self._authors_latent(z, y + x, rope, regularise)
                y = self.net(y, z, rope)
        z, info = self._authors_latent(z, y + x, rope, regularise)
        y = self.net(y, z, rope)
        return (y, z), y, info

    def _authors_latent(self, z: torch.Tensor, ctx: torch.Tensor, rope, regularise: bool):
        """Their ``_InnerDEQ``: solve ``z = net(z, ctx)`` without a graph, then ``K`` steps from ``z*`` with one."""
        s = self.config.solver

        def fmap(v: torch.Tensor) -> torch.Tensor:
            return self.net(v, ctx, rope)

        with torch.no_grad():
            if s.max_iter == 0:
                z_star, info = z, _no_solve(z)
            elif s.method == "authors":
                z_star, info = authors_anderson(
                    fmap, z, max_iter=s.max_iter, min_iter=s.min_iter, tol=_tol(s, z), m=s.m, beta=s.beta
                )
            else:
                opts = _solver_kwargs(s, ctx)
                opts = {k: opts[k] for k in ("method", "max_iter", "min_iter", "tol", "stop_mode", "m", "beta")}
                z_star, stats = solve(fmap, z, **opts)
                info = _stats_info(stats)
        z = z_star.detach()
        for _ in range(s.phantom_steps):
            z = fmap(z)
        if regularise:
            # Their estimate of ||J||_F^2 / D (Bai et al. 2021): v ~ N(0, I/D), E ||Jᵀv||² per element. In the
            # gradient-free rounds they compute and discard it; only its random draw matters there (it advances
            # the generator, and so the halting exploration that follows), so draw and skip the rest.
            v = torch.randn_like(z) / math.sqrt(z.shape[-1])
            if torch.is_grad_enabled():
                reg = z.new_zeros(())
                for i in range(s.jacobian_reg_samples):
                    if i:
                        v = torch.randn_like(z) / math.sqrt(z.shape[-1])
                    z_in = z.detach().requires_grad_(True)
                    with _math_attention():
                        (jtv,) = torch.autograd.grad((v * fmap(z_in)).sum(), z_in, create_graph=True)
                    reg = reg + jtv.pow(2).mean()
                reg = reg / s.jacobian_reg_samples
                info = {**info, "jacobian_reg": reg.detach(), "aux_loss": s.jacobian_reg * reg}
            else:
                for _ in range(s.jacobian_reg_samples - 1):
                    torch.randn_like(z)
        return z, info

    # ---- backbone -------------------------------------------------------------------------------------------
    def _step_backbone(self, state: State, x: torch.Tensor, rope, reset: torch.Tensor):
        s = self.config.solver
        p = self.backbone(x, None, rope)  # (B, S, D) proposal
        y0, z0 = state
        y0 = _where_rows(reset, p.detach().to(y0.dtype), y0)
        z0 = _where_rows(reset, self.z_init.to(z0.dtype).expand_as(z0), z0)
        if s.max_iter == 0:
            # Decode the warm start directly; at step zero it is `p` itself, so keep p's graph.
            y = torch.where(reset.view(-1, 1, 1), p.to(y0.dtype), y0)
            return (y0, z0), y, _no_solve(x)
        (y, z), info = self._solve_round(self.attractor, y0, z0, p, rope)
        return (y, z), y, info


# ---- helpers --------------------------------------------------------------------------------------------------
def _tol(s: SolverConfig, like: torch.Tensor) -> float:
    """The stopping tolerance: ``tol``, raised to ``autocast_tol`` when ``f`` runs under 16-bit autocast.

    Under bf16 autocast ``f``'s own rounding puts a floor under the relative residual (measured ~1e-3..6e-3 on
    these maps, see the README), so a 1e-3 tolerance would send every solve to ``max_iter``.
    """
    dev = like.device.type
    if torch.is_autocast_enabled(dev) and torch.get_autocast_dtype(dev) in (torch.bfloat16, torch.float16):
        return max(s.tol, s.autocast_tol)
    return s.tol


def _solver_kwargs(s: SolverConfig, like: torch.Tensor) -> dict:
    return {
        "backward": s.backward,
        "phantom_steps": s.phantom_steps,
        "phantom_tau": s.phantom_tau,
        "ift_max_iter": s.ift_max_iter,
        "ift_tol": s.ift_tol,
        "method": s.method,
        "max_iter": s.max_iter,
        "min_iter": s.min_iter,
        "tol": _tol(s, like),
        "stop_mode": s.stop_mode,
        "m": s.m,
        "beta": s.beta,
    }


def _no_solve(like: torch.Tensor) -> dict[str, torch.Tensor]:
    """The diagnostics of a skipped solve (``solver.max_iter=0``): zeros, ``(B,)``."""
    zeros = torch.zeros(like.shape[0], device=like.device)
    return {"solver_nstep": zeros, "solver_residual": zeros, "solver_hit_max": zeros}


def _stats_info(stats) -> dict[str, torch.Tensor]:
    """Per-sample ``(B,)`` diagnostics of one solve: evaluations of f, final residual, and whether it hit max_iter."""
    return {
        "solver_nstep": stats.nstep.float(),
        "solver_residual": stats.residual.float(),
        "solver_hit_max": (~stats.converged).float(),
    }


def _math_attention():
    # Their regulariser forces the math SDPA kernel: flash attention has no double backward.
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


def authors_anderson(f, z0: torch.Tensor, *, max_iter: int, min_iter: int, tol: float, m: int, beta: float):
    """The authors' Anderson (``_anderson_solve`` in their ``trm_deq.py``), reproduced operation for operation.

    Kept apart from `equilibrium`'s solver so the ``authors`` variant equals their model; it differs from
    `equilibrium.solve` in ways that change results:

    * two plain steps first (``z0``, ``f(z0)``), then ``max_iter - 2`` Anderson steps; fp32 throughout;
    * the history is ``m`` slots, zero-filled, rolled left after every step with the new pair written to the last
      slot, and each step mixes the first ``min(k, m)`` slots. Until the window has filled (step ``m + 2``) it
      therefore mixes in zero slots, whose residual is zero, so the least-squares weights favour them;
    * a fixed ``1e-4`` ridge on the Gram matrix (not scaled to the residuals);
    * one stopping decision for the whole batch: the largest relative residual ``‖f(z) - z‖ / ‖f(z)‖`` must be
      below ``tol`` after at least ``min_iter`` evaluations;
    * it returns the last mixed iterate (not ``f`` of it), cast back to ``z0``'s dtype.

    Returns:
        ``(z_star, info)`` with ``(B,)`` float tensors ``solver_nstep`` (evaluations of ``f``, the same for every
        sample), ``solver_residual`` (each sample's last relative residual) and ``solver_hit_max`` (1 where the
        batch did not meet ``tol``).
    """
    b = z0.shape[0]
    n = z0.numel() // b
    dt, dev = torch.float32, z0.device
    ys = [torch.zeros(b, n, dtype=dt, device=dev) for _ in range(m)]  # slot i: an iterate
    fs = [torch.zeros(b, n, dtype=dt, device=dev) for _ in range(m)]  # slot i: f of it
    gram = torch.zeros(b, m + 1, m + 1, dtype=dt, device=dev)  # bordered system [[0, 1ᵀ], [1, GGᵀ + λI]]
    gram[:, 0, 1:] = 1.0
    gram[:, 1:, 0] = 1.0
    rhs = torch.zeros(b, m + 1, 1, dtype=dt, device=dev)
    rhs[:, 0] = 1.0

    ys[0] = z0.detach().reshape(b, n).to(dt)
    fs[0] = f(z0).detach().reshape(b, n).to(dt)
    ys[1] = fs[0]
    fs[1] = f(fs[0].view_as(z0)).detach().reshape(b, n).to(dt)
    nstep, rel, converged = 2, torch.full((b,), math.inf, device=dev), False
    for k in range(2, max_iter):
        w = min(k, m)
        y_hist, f_hist = torch.stack(ys[:w], dim=1), torch.stack(fs[:w], dim=1)  # (B, w, n)
        g = f_hist - y_hist
        gram[:, 1 : w + 1, 1 : w + 1] = torch.bmm(g, g.transpose(1, 2)) + 1e-4 * torch.eye(w, dtype=dt, device=dev)
        try:
            alpha = torch.linalg.solve(gram[:, : w + 1, : w + 1], rhs[:, : w + 1])[:, 1 : w + 1, 0]
        except RuntimeError:  # a singular system ends their solve where it is
            break
        y_new = beta * (alpha[..., None] * f_hist).sum(dim=1) + (1 - beta) * (alpha[..., None] * y_hist).sum(dim=1)
        f_new = f(y_new.view_as(z0)).detach().reshape(b, n).to(dt)
        ys = ys[1:] + ys[:1]
        fs = fs[1:] + fs[:1]
        ys[-1], fs[-1] = y_new, f_new
        rel = (f_new - y_new).norm(dim=1) / f_new.norm(dim=1).clamp_min(1e-9)
        nstep = k + 1
        if nstep >= min_iter and float(rel.max()) < tol:
            converged = True
            break
    z_star = ys[-1].view_as(z0).to(z0.dtype)
    info = {
        "solver_nstep": torch.full((b,), float(nstep), device=dev),
        "solver_residual": rel.float(),
        "solver_hit_max": torch.full((b,), 0.0 if converged else 1.0, device=dev),
    }
    return z_star, info
