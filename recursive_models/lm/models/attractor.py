"""Attractor LM ("Solve the Loop"): a backbone proposal in output-embedding space, refined to a fixed point.

::

    y0 = norm(P · norm(backbone(norm(wte[idx]))))    # the proposal, (B, T, D), in the tied embedding space
    T(y, y0) = norm(blocks_γ(inject(y, y0)))         # the attractor module: weight-tied causal blocks whose
                                                     # residual updates are gated per channel (γ init 0.1)
    y* = fixed_point(y ↦ T(y, y0), y_init)           # Anderson forward, one-step backward (defaults)
    logits = softcap(norm(y*) @ Wembᵀ)               # decoded by the tied unembedding = input embedding

Injection (``injection``): ``additive`` feeds ``y + y0`` to T at every step (default); ``initial`` feeds ``y`` only,
y0 entering as the starting state (then ``solver_init`` must be ``proposal``; with the one-step backward the
backbone gets no gradient through the solve, only from ``proposal_loss_weight``); ``concat`` feeds a learned
``W [y; y0]`` (W initialised to ``[I I]``, i.e. to the additive map). Start (``solver_init``): ``proposal``
(y0, default), ``zero`` or ``gaussian`` (unit normal, like the unit-RMS states). These are the paper's ablations.

With small gates T is close to ``y ↦ norm(y + y0)``, whose fixed point from ``y_init = y0`` is y0 itself: at init
the attractor starts as a near-identity refinement of the proposal and learns how far to move it.

Solver defaults are the paper's: Anderson (m = 5), at most 64 / at least 6 iterations, relative tolerance 3e-4,
one-step gradient; the ``tiny`` CPU preset caps ``max_iter`` at 24. By default every position is its own solver
sample (``solver.mixing="token"``), which keeps every iterate exactly causal; ``mixing="sequence"`` makes a whole
sequence one sample (state ``(B, T, D)``), as equilibrium's per-sample convergence does, and then partially
converged iterates leak future tokens (see `recursive_models.lm.layers.solve_sequence`).

``iters`` replaces ``solver.max_iter``; ``iters=0`` decodes the proposal y0 directly (the
equilibrium-internalization test): ``model(idx, iters=0)["logits"] == model.decode(model.proposal(idx))``.

    from recursive_models.lm.registry import build_lm
    model = build_lm("attractor", "tiny")                            # 3 backbone + 1 attractor block
    out = model(idx, targets)                                        # out["solver/nstep"], ...
    ablation = build_lm("attractor", "tiny", injection="concat", solver_init="zero")
"""

from __future__ import annotations

import logging

import torch

from recursive_models.lm.layers import LanguageModel, lecun_linear, rms_norm, solve_sequence
from recursive_models.lm.registry import LMConfig, register_lm_model

logger = logging.getLogger(__name__)

INJECTIONS = ("additive", "initial", "concat")
SOLVER_INITS = ("proposal", "zero", "gaussian")


@register_lm_model("attractor")
class AttractorLM(LanguageModel):
    """Backbone + proposal projection + weight-tied gated attractor module, tied decode."""

    DEFAULTS = {"solver": {"backward": "onestep", "max_iter": 64, "min_iter": 6, "tol": 3e-4, "m": 5}}  # noqa: RUF012
    # CPU preset: a smaller budget keeps the tiny model trainable on a laptop.
    SIZES = {"tiny": {"solver": {"max_iter": 24}}}  # noqa: RUF012

    @staticmethod
    def layer_split(n_layers: int) -> dict[str, int]:  # noqa: D102 -- a quarter of the blocks in T
        core = max(1, n_layers // 4)
        return {"n_prelude": n_layers - core, "n_core": core, "n_coda": 0}

    def __init__(self, config: LMConfig):
        super().__init__(config)
        c = config
        if c.n_prelude < 1 or c.n_core < 1:
            raise ValueError("the Attractor LM needs n_prelude (backbone) >= 1 and n_core (attractor) >= 1")
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
        self.project = lecun_linear(d, d)  # backbone state -> proposal in the tied embedding space
        self.attractor = self.make_blocks(c.n_core, layer_scale=c.layer_scale_init)
        if c.injection == "concat":
            self.combine = lecun_linear(2 * d, d)
            with torch.no_grad():  # [I I]: starts as the additive injection
                self.combine.weight.copy_(torch.cat([torch.eye(d), torch.eye(d)], dim=1))

    def proposal(self, idx: torch.Tensor) -> torch.Tensor:
        """The backbone's proposal ``y0 (B, T, D)`` (unit RMS), decoded by `decode` when ``iters=0``."""
        h = self.backbone(self.embed(idx), self.rope())
        # float32 whatever the autocast dtype: y0 fixes the dtype of the solver state, and a bf16 state could
        # not reach the 3e-4 relative tolerance (bf16 resolves ~4e-3).
        return rms_norm(self.project(rms_norm(h)).float())

    def attract(self, y: torch.Tensor, y0: torch.Tensor) -> torch.Tensor:
        """One application of the attractor module ``T(y, y0)``, ``(B, T, D)``."""
        c = self.config
        if c.injection == "additive":
            u = y + y0
        elif c.injection == "initial":
            u = y
        else:
            u = self.combine(torch.cat([y, y0], dim=-1))  # (B, T, 2D) -> (B, T, D)
        return rms_norm(self.attractor(u, self.rope()))

    def initial_state(self, y0: torch.Tensor) -> torch.Tensor:
        """The solver's start ``(B, T, D)`` per ``solver_init``."""
        init = self.config.solver_init
        if init == "proposal":
            return y0.detach()
        if init == "zero":
            return torch.zeros_like(y0)
        return torch.randn_like(y0)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, *, iters: int | None = None) -> dict:
        """Logits, loss, solver statistics and ``depth`` (backbone + attractor blocks · mean iterations)."""
        c = self.config
        y0 = self.proposal(idx)  # (B, T, D)
        max_iter = c.solver.max_iter if iters is None else int(iters)
        if max_iter == 0:
            y = y0
            zero = torch.zeros((), device=y0.device)
            stats = {"solver/nstep": zero, "solver/residual": zero, "solver/converged_frac": zero}
        else:
            y_init = self.initial_state(y0)
            y, stats, _ = solve_sequence(lambda y: self.attract(y, y0), y_init, c.solver, max_iter=max_iter)
        out = self.output(self.decode(y), targets, depth=c.n_prelude + c.n_core * stats["solver/nstep"], **stats)
        if targets is not None and c.proposal_loss_weight > 0:
            out["loss/proposal"] = self.loss(self.decode(y0), targets).detach()
            out["loss"] = out["loss"] + c.proposal_loss_weight * self.loss(self.decode(y0), targets)
        return out
