"""DEQ LM: a hidden-state equilibrium ``z* = f(z*, x)`` with input injection, decoded by a separate or tied head.

::

    x = norm(prelude(wte[idx]))                 # input injection, (B, T, D), computed once
    f(z) = norm(core(z + x))                    # the weight-tied core blocks on z + x; causal attention
    z* = fixed_point(f, z0 = 0)                 # equilibrium.fixed_point: Anderson forward
    logits = head(ln_f(z*))                     # tie_head=False (default): its own Linear head, Table 3's "DEQ"
    logits = ln_f(z*) @ Wembᵀ                   # tie_head=True: Table 3's "DEQ + tied unembedding"

Where each part comes from:

* The two heads: the paper's Table 3 (both rows). ``tie_head`` is a config field rather than a variant because
  it is orthogonal to the block settings (a variant is a bundle of defaults; two heads × two block settings would
  be four variants), and a field is what a sweep overrides (``+model.overrides.tie_head=true``).
* The map, its start ``z0 = 0``, the output norm in ``f``, the phantom gradient (``k = 2`` damped steps,
  ``τ = 0.5``, Geng et al. 2021) and the split (a quarter prelude, the rest in ``f``): ours. The output norm keeps
  the state on the unit-RMS sphere, a contraction-friendly map (``∂f/∂z`` is scaled by ``1/rms(z + x + ...)``).
* Block settings, variant ``authors`` (default): the authors' equilibrium LM (jacobfa/Attractor
  ``attractor/models/eqlm/eqlm.py``, ``configs/eqlm/eqlm-small-140m.py``, read at fcf045f): learned RMSNorm gains
  (blocks and ``ln_f``), no embedding norm, 0.5·ReLU², QK-norm, rotary base 50000, no softcap, the scaled-zero
  init with orthogonal matrices (std ``s = sqrt(2/(5D))``), where their EQLM redraws the output projections that
  scaled-zero leaves at zero: the core's at std ``s`` (their ``FixedPointBlock``) and the prelude's at
  ``s / sqrt(2·(n_prelude + n_core))`` (their ``n_layer``), truncated normals. An untied head is drawn at std
  ``s`` (their ``lm_head`` with ``tie_embeddings=False``).
  Their EQLM is not a DEQ of this form: it is their Attractor map ``f(y) = FPHead(y + c) - y`` started from the
  backbone output ``c``, with sigmoid gates and a tied head by default (``eqlm.py`` differs from
  ``attractor.py`` only in that prelude init), so only its block settings are used here; that map is our
  ``attractor`` family.
* Variant ``nanochat``: this suite's first DEQ, kept bit for bit (parameter-free norms, normalised embedding,
  ReLU², rotary base 10000, logit softcap 15, LeCun init).

The solve is per position by default (``solver.mixing="token"``: exactly causal at any budget; see
`recursive_models.lm.layers.solve_sequence`); ``solver={"backward": "onestep" | "ift"}`` selects the other
gradients. ``iters`` replaces ``solver.max_iter``; ``iters=0`` decodes ``z0 = 0`` (uniform logits).

    from recursive_models.lm.registry import build_lm
    model = build_lm("deq", "tiny")                          # 1 prelude + 3 core blocks, separate head
    tied = build_lm("deq", "tiny", tie_head=True)            # the tied unembedding
    out = model(idx, targets)                                # out["solver/nstep"], out["solver/residual"], ...

Parameter matching: the untied head adds ``V·D`` parameters over the other families (3% at the default byte
vocabulary of the tiny size, 40% at V = 4096); ``num_params(non_embedding=True)`` leaves out both embedding
matrices and matches the other families at any vocabulary, with either head.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from recursive_models.lm.layers import (
    AUTHORS_BLOCKS,
    NANOCHAT_BLOCKS,
    LanguageModel,
    _trunc_normal_3,
    lecun_linear,
    rms_norm,
    solve_sequence,
)
from recursive_models.lm.registry import LMConfig, register_lm_model

_NANOCHAT = dict(NANOCHAT_BLOCKS)
# eqlm-small-140m.py's blocks and init (see the module docstring)
_AUTHORS = dict(AUTHORS_BLOCKS)


@register_lm_model("deq")
class DEQ(LanguageModel):
    """Prelude + equilibrium core + separate or tied head; logs the solver's steps, residual and converged fraction."""

    DEFAULTS = {  # noqa: RUF012
        "variant": "authors",
        "tie_head": False,
        "solver": {"backward": "phantom", "phantom_steps": 2, "phantom_tau": 0.5},
    }
    VARIANTS = {"authors": _AUTHORS, "nanochat": _NANOCHAT}  # noqa: RUF012
    EMBEDDINGS = ("wte", "head")  # an untied head is a vocabulary table (AdamW), as their lm_head
    # CPU preset: a smaller budget keeps the tiny model trainable on a laptop.
    SIZES = {"tiny": {"solver": {"max_iter": 24, "min_iter": 2}}}  # noqa: RUF012
    UNTIED_HEAD = True

    @staticmethod
    def layer_split(n_layers: int, variant: str | None = None) -> dict[str, int]:  # noqa: D102 -- a quarter prelude
        prelude = max(1, n_layers // 4)
        return {"n_prelude": prelude, "n_core": n_layers - prelude, "n_coda": 0}

    def __init__(self, config: LMConfig):
        super().__init__(config)
        c = config
        if c.variant not in self.VARIANTS:
            raise ValueError(f"unknown deq variant {c.variant!r}; variants are {sorted(self.VARIANTS)}")
        if c.n_prelude < 1 or c.n_core < 1:
            raise ValueError("the DEQ needs n_prelude >= 1 and n_core >= 1")
        self.prelude = self.make_blocks(c.n_prelude)
        self.core = self.make_blocks(c.n_core)
        self.head = None if c.tie_head else lecun_linear(c.d_model, c.vocab_size)
        self.init_weights(live_outputs=(self.core,))
        if c.init == "scaled_zero":  # their EQLM: the prelude's outputs live too, GPT-2-scaled by their n_layer
            std = math.sqrt(2.0 / (5.0 * c.d_model)) / math.sqrt(2.0 * (c.n_prelude + c.n_core))
            with torch.no_grad():
                for block in self.prelude:
                    _trunc_normal_3(block.attn.proj.weight, std)
                    _trunc_normal_3(block.mlp.proj.weight, std)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count; ``non_embedding`` leaves out the token embedding *and* a separate head (``2·V·D``)."""
        n = super().num_params(non_embedding)
        return n - self.head.weight.numel() if non_embedding and isinstance(self.head, nn.Linear) else n

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """``softcap(head(ln_f(h)))`` (separate head) or the tied decode, ``(B, T, D) -> (B, T, V)``."""
        if self.head is None:
            return super().decode(h)
        return self.softcap(self.head(self.ln_f(h)))

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
