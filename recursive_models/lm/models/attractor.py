"""Attractor LM ("Solve the Loop"): a backbone proposal refined to a fixed point by a weight-tied module.

Two variants (``variant=``), each with its own defaults (``VARIANTS``):

``authors`` (default) — the authors' ``Attractor`` (jacobfa/Attractor, ``attractor/models/attractor/attractor.py``)::

    c  = backbone(wte[idx])                           # (B, T, D), the proposal (no final norm)
    f(y) = FPHead(y + c) - y                          # FPHead: the Attractor module, pre-norm blocks whose attention
                                                      # and MLP outputs are gated by sigmoid(r)·gamma_max
    y* = Anderson from y = c                          # per position (theirs: solver.method=authors)
    logits = ln_f(y*) @ Wembᵀ                         # learned-gain RMSNorm, tied unembedding, no softcap

  Their blocks: learned RMSNorm gains, 0.5·ReLU², rotary base 50000, ``scaled_zero`` init (orthogonal, zero
  output projections except in FPHead), gates at 0.75 with ``gamma_max`` 0.75 (their 140M config), and their
  one-step gradient ``u = v + Jᵀv`` (``solver.backward="neumann"``, one term). The solver settings are theirs
  (at most 64, at least 6 iterations, relative tolerance 3e-4, m = 5), but by default the solve is
  `equilibrium`'s Anderson with one sample per position (``solver.mixing="token"``), which is exactly causal at
  any budget. Their Anderson, reproduced step for step, is ``solver.method="authors"``
  (`recursive_models.lm.authors`): one sample per sequence and one stop for the whole batch, so until it has
  converged it mixes later tokens into earlier positions, and a perplexity measured with it can see the
  future. Fidelity (with ``solver.method="authors"``): ``tests/test_lm_authors.py``.

``projected`` — this suite's first Attractor LM::

    y0 = norm(P · norm(backbone(norm(wte[idx]))))    # the proposal, (B, T, D), in the tied embedding space
    T(y, y0) = norm(blocks_γ(inject(y, y0)))         # gated causal blocks (plain gates, init 0.1)
    y* = fixed_point(y ↦ T(y, y0), y_init)           # equilibrium's Anderson per position, one-step backward
    logits = softcap(norm(y*) @ Wembᵀ)

The paper's ablations (experiment 5) are options of both variants. Injection (``injection``): ``additive`` feeds
``y + y0`` to the module at every step (default; the authors' map); ``initial`` feeds ``y`` only, y0 entering as
the starting state (then ``solver_init`` must be ``proposal``); ``concat`` feeds a learned ``W [y; y0]`` (W
initialised to ``[I I]``, i.e. to the additive map). Start (``solver_init``): ``proposal`` (default), ``zero`` or
``gaussian`` (unit normal). Only ``additive`` + ``proposal`` is in the authors' code; the others are ours.

Splits (the paper's Table 7: 7+1, 15+2, 35+2 backbone + Attractor blocks): one Attractor block up to 8 blocks of
budget (tiny 3+1, small 7+1), two above (base 14+2). The tiny CPU preset caps the solve at 24 iterations.

``iters`` replaces ``solver.max_iter``; ``iters=0`` decodes the proposal directly (the equilibrium-internalization
test): ``model(idx, iters=0)["logits"] == model.decode(model.proposal(idx))``.

    from recursive_models.lm.registry import build_lm
    model = build_lm("attractor", "tiny")                               # the authors' model, 3 + 1 blocks
    out = model(idx, targets)                                           # out["solver/nstep"], ...
    ours = build_lm("attractor", "tiny", variant="projected", injection="concat", solver_init="zero")
"""

from __future__ import annotations

import logging

import torch

from equilibrium import SolverStats, attach_backward
from recursive_models.lm.authors import authors_solve
from recursive_models.lm.layers import (
    AUTHORS_BLOCKS,
    NANOCHAT_BLOCKS,
    LanguageModel,
    lecun_linear,
    rms_norm,
    solve_sequence,
)
from recursive_models.lm.registry import LMConfig, register_lm_model

logger = logging.getLogger(__name__)

INJECTIONS = ("additive", "initial", "concat")
SOLVER_INITS = ("proposal", "zero", "gaussian")


_PROJECTED = {
    **NANOCHAT_BLOCKS, "layer_scale_init": 0.1, "gamma_max": None,
    "solver": {"method": "anderson", "backward": "onestep", "mixing": "token"},
}  # fmt: skip
_AUTHORS = {
    # their attractor-small-140m.py: blocks, init, gates; the solver and the one-step (Neumann-1) gradient
    **AUTHORS_BLOCKS, "layer_scale_init": 0.75, "gamma_max": 0.75,
    # The solve itself is equilibrium's Anderson per position (exactly causal); solver.method=authors is theirs.
    "solver": {"method": "anderson", "backward": "neumann", "neumann_terms": 1, "mixing": "token"},
}  # fmt: skip


@register_lm_model("attractor")
class AttractorLM(LanguageModel):
    """Backbone + weight-tied gated Attractor module solved to a fixed point, tied decode (two variants)."""

    DEFAULTS = {"variant": "authors", "solver": {"max_iter": 64, "min_iter": 6, "tol": 3e-4, "m": 5}}  # noqa: RUF012
    VARIANTS = {"authors": _AUTHORS, "projected": _PROJECTED}  # noqa: RUF012
    HEAD = ("attractor", "combine")  # the Attractor module (and the concat injection): lr x fp_lr_scale, fp_wd
    # CPU preset: a smaller budget keeps the tiny model trainable on a laptop.
    SIZES = {"tiny": {"solver": {"max_iter": 24}}}  # noqa: RUF012

    @staticmethod
    def layer_split(n_layers: int, variant: str | None = None) -> dict[str, int]:
        """Backbone + Attractor blocks: Table 7's one block up to 8, two above (``projected``: a quarter)."""
        core = max(1, n_layers // 4) if variant == "projected" else (1 if n_layers <= 8 else 2)
        return {"n_prelude": n_layers - core, "n_core": core, "n_coda": 0}

    def __init__(self, config: LMConfig):
        super().__init__(config)
        c = config
        if c.variant not in self.VARIANTS:
            raise ValueError(f"unknown attractor variant {c.variant!r}; variants are {sorted(self.VARIANTS)}")
        if c.n_prelude < 1 or c.n_core < 1:
            raise ValueError("the Attractor LM needs n_prelude (backbone) >= 1 and n_core (attractor) >= 1")
        if c.solver.method == "authors" and c.variant != "authors":
            raise ValueError("solver.method=authors (their Anderson) belongs to variant=authors")
        if c.injection not in INJECTIONS:
            raise ValueError(f"unknown injection {c.injection!r}; choose one of {INJECTIONS}")
        if c.solver_init not in SOLVER_INITS:
            raise ValueError(f"unknown solver_init {c.solver_init!r}; choose one of {SOLVER_INITS}")
        if c.injection == "initial" and c.solver_init != "proposal":
            raise ValueError("injection='initial' gives y0 to T only as the start, so it needs solver_init='proposal'")
        if c.injection == "initial" and c.solver.backward != "ift" and c.proposal_loss_weight == 0:
            logger.warning("injection='initial' with a %s backward: the backbone gets no gradient", c.solver.backward)
        d = c.d_model
        self.backbone = self.make_blocks(c.n_prelude)
        if c.variant == "projected":
            self.project = lecun_linear(d, d)  # backbone state -> proposal in the tied embedding space
        self.attractor = self.make_blocks(c.n_core, layer_scale=c.layer_scale_init)
        if c.injection == "concat":
            self.combine = lecun_linear(2 * d, d)
            with torch.no_grad():  # [I I]: starts as the additive injection
                self.combine.weight.copy_(torch.cat([torch.eye(d), torch.eye(d)], dim=1))
        self.init_weights(live_outputs=(self.attractor,))

    def proposal(self, idx: torch.Tensor) -> torch.Tensor:
        """The backbone's proposal ``(B, T, D)``: ``c`` (``authors``) or the unit-RMS ``y0`` (``projected``)."""
        h = self.backbone(self.embed(idx), self.rope())
        if self.config.variant == "authors":
            return h
        # float32 whatever the autocast dtype: y0 fixes the dtype of the solver state, and a bf16 state could
        # not reach the 3e-4 relative tolerance (bf16 resolves ~4e-3).
        return rms_norm(self.project(rms_norm(h)).float())

    def attract(self, y: torch.Tensor, y0: torch.Tensor) -> torch.Tensor:
        """One application of the map whose fixed point is solved for, ``(B, T, D)``.

        With ``u = inject(y, y0)`` (``y + y0``, ``y`` or ``W[y; y0]`` per ``injection``): ``authors``
        ``FPHead(u) - y`` (their map with the default additive injection, ``y0 = c``); ``projected`` ``norm(T(u))``.
        """
        c = self.config
        if c.injection == "additive":
            u = y + y0
        elif c.injection == "initial":
            u = y
        else:
            u = self.combine(torch.cat([y, y0], dim=-1))  # (B, T, 2D) -> (B, T, D)
        if c.variant == "authors":
            return self.attractor(u, self.rope()) - y
        return rms_norm(self.attractor(u, self.rope()))

    def initial_state(self, y0: torch.Tensor) -> torch.Tensor:
        """The solver's start ``(B, T, D)`` per ``solver_init`` (``authors``: the proposal)."""
        init = self.config.solver_init
        if init == "proposal":
            return y0.detach()
        if init == "zero":
            return torch.zeros_like(y0)
        return torch.randn_like(y0)

    def solve(self, y0: torch.Tensor, max_iter: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The differentiable fixed point ``y* (B, T, D)`` from ``initial_state(y0)`` and its statistics."""
        c = self.config
        y_init = self.initial_state(y0)
        if c.solver.method != "authors":
            y, stats, _ = solve_sequence(lambda y: self.attract(y, y0), y_init, c.solver, max_iter=max_iter)
            return y, stats
        s = c.solver
        with torch.no_grad():
            y_star, info = authors_solve(
                lambda y: self.attract(y, y0.detach()), y_init, max_iter=max_iter, tol=s.tol, min_iter=s.min_iter,
                m=s.m, beta=s.beta,
            )  # fmt: skip
        b = y_star.shape[0]
        residual = info["residual"].to(y_star.device)
        raw = SolverStats(
            nstep=torch.full((b,), info["iters"], device=y_star.device),
            abs_residual=torch.full_like(residual, float("nan")),
            rel_residual=residual,
            converged=residual < s.tol,
            method="authors",
            stop_mode="rel",
            tol=s.tol,
            max_iter=max_iter,
        )
        # Their value is y* itself; the gradient comes from the backward mode through f at y* (their _IFTAttach).
        y = attach_backward(
            lambda y: self.attract(y, y0), y_star, raw, backward=s.backward, keep_value=True,
            phantom_steps=s.phantom_steps, phantom_tau=s.phantom_tau, ift_max_iter=s.ift_max_iter, ift_tol=s.ift_tol,
            neumann_terms=s.neumann_terms,
        )  # fmt: skip
        stats = {
            "solver/nstep": raw.nstep.float().mean(),
            "solver/residual": residual.mean(),
            "solver/converged_frac": raw.converged.float().mean(),
            "solver/converged_positions": raw.converged.float().mean(),  # their solve is per sequence
        }
        return y, stats

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, *, iters: int | None = None) -> dict:
        """Logits, loss, solver statistics and ``depth`` (backbone + attractor blocks · mean iterations)."""
        c = self.config
        y0 = self.proposal(idx)  # (B, T, D)
        max_iter = c.solver.max_iter if iters is None else int(iters)
        if max_iter == 0:
            y = y0
            zero = torch.zeros((), device=y0.device)
            stats = {"solver/nstep": zero, "solver/residual": zero, "solver/converged_frac": zero,
                     "solver/converged_positions": zero}  # fmt: skip
        else:
            y, stats = self.solve(y0, max_iter)
        out = self.output(self.decode(y), targets, depth=c.n_prelude + c.n_core * stats["solver/nstep"], **stats)
        if targets is not None and c.proposal_loss_weight > 0:
            out["loss/proposal"] = self.loss(self.decode(y0), targets).detach()
            out["loss"] = out["loss"] + c.proposal_loss_weight * self.loss(self.decode(y0), targets)
        return out
