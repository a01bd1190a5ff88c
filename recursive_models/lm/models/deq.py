"""DEQ LM: a hidden-state equilibrium ``z* = f(z*, x)`` with input injection, decoded by a separate head.

::

    x = norm(prelude(norm(wte[idx])))           # input injection, (B, T, D), computed once
    f(z) = norm(core(z + x))                    # the weight-tied core blocks on z + x; causal attention
    z* = fixed_point(f, z0 = 0)                 # equilibrium.fixed_point: Anderson forward
    logits = softcap(head(norm(z*)))            # a final norm and its own untied Linear head (the paper's
                                                # Table 3 baseline), unlike the other families' tied decode

The output norm in ``f`` keeps the state on the unit-RMS sphere, so ``f`` is a contraction-friendly map
(``∂f/∂z`` is scaled down by ``1/rms(z + x + ...)``). Gradient: the phantom gradient by default (``k = 2`` damped
steps, ``τ = 0.5``, Geng et al. 2021; memory two core applications, independent of the forward iterations);
``solver={"backward": "onestep" | "ift"}`` selects the others. The solve is per position by default
(``solver.mixing="token"``: exactly causal at any budget; see `recursive_models.lm.layers.solve_sequence`).

``iters`` replaces ``solver.max_iter``; ``iters=0`` decodes ``z0 = 0`` (uniform logits from the bias-free head).

    from recursive_models.lm.registry import build_lm
    model = build_lm("deq", "tiny")                          # 1 prelude + 3 core blocks, separate head

Parameter matching: the untied head adds ``V·D`` parameters over the other families (3% at the default byte
vocabulary of the tiny size, 40% at V = 4096); ``num_params(non_embedding=True)`` leaves out both embedding
matrices and matches the other families at any vocabulary.
    out = model(idx, targets)                                # out["solver/nstep"], out["solver/residual"], ...
"""

from __future__ import annotations

import torch

from recursive_models.lm.layers import LanguageModel, lecun_linear, rms_norm, solve_sequence
from recursive_models.lm.registry import LMConfig, register_lm_model


@register_lm_model("deq")
class DEQ(LanguageModel):
    """Prelude + equilibrium core + separate head; logs the solver's steps, residual and converged fraction."""

    DEFAULTS = {"solver": {"backward": "phantom", "phantom_steps": 2, "phantom_tau": 0.5}}  # noqa: RUF012
    # CPU preset: a smaller budget keeps the tiny model trainable on a laptop.
    SIZES = {"tiny": {"solver": {"max_iter": 24, "min_iter": 2}}}  # noqa: RUF012

    @staticmethod
    def layer_split(n_layers: int) -> dict[str, int]:  # noqa: D102 -- a quarter prelude, the rest in f
        prelude = max(1, n_layers // 4)
        return {"n_prelude": prelude, "n_core": n_layers - prelude, "n_coda": 0}

    def __init__(self, config: LMConfig):
        super().__init__(config)
        c = config
        if c.n_prelude < 1 or c.n_core < 1:
            raise ValueError("the DEQ needs n_prelude >= 1 and n_core >= 1")
        self.prelude = self.make_blocks(c.n_prelude)
        self.core = self.make_blocks(c.n_core)
        self.head = lecun_linear(c.d_model, c.vocab_size)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count; ``non_embedding`` leaves out the token embedding *and* the separate head (``2·V·D``)."""
        n = super().num_params(non_embedding)
        return n - self.head.weight.numel() if non_embedding else n

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """The separate head: ``softcap(head(norm(h)))``, ``(B, T, D) -> (B, T, V)``."""
        return self.softcap(self.head(rms_norm(h)))

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, *, iters: int | None = None) -> dict:
        """Logits, loss, solver statistics and ``depth`` (prelude + core · mean iterations)."""
        c = self.config
        rope = self.rope()
        x = rms_norm(self.prelude(self.embed(idx), rope))  # (B, T, D)
        z0 = torch.zeros_like(x)
        max_iter = c.solver.max_iter if iters is None else int(iters)
        if max_iter == 0:
            zero = torch.zeros((), device=x.device)
            return self.output(
                self.decode(z0),
                targets,
                depth=float(c.n_prelude),
                **dict.fromkeys(
                    ("solver/nstep", "solver/residual", "solver/converged_frac", "solver/converged_positions"), zero
                ),
            )

        def f(z: torch.Tensor) -> torch.Tensor:
            return rms_norm(self.core(z + x, rope))

        z, stats, _ = solve_sequence(f, z0, c.solver, max_iter=max_iter)
        return self.output(self.decode(z), targets, depth=c.n_prelude + c.n_core * stats["solver/nstep"], **stats)
