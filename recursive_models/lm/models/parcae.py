"""Parcae-style looped LM: prelude blocks -> a weight-tied core looped r times -> coda blocks.

One recurrent step on the state ``h`` (B, T, D), started at ``h = 0``::

    e = norm(prelude(norm(wte[idx])))                 # prelude output, computed once
    h ← exp(-Δ·A) ⊙ h + Δ ⊙ (e Bᵀ)                    # diagonal linear injection, A = exp(a_log), Δ = softplus(dt)
    h ← core(h)                                       # the core blocks (pre-norm, residual)
    logits = decode(coda(h))                          # tied unembedding

Stability: the linear carry is diagonal with eigenvalues ``exp(-(Δ·A + ε))`` in (0, 1) for every channel and any
parameter value (A, Δ > 0 by construction; ``ε = 1e-4`` keeps float32 from rounding a tiny ``Δ·A`` to a carry
of exactly 1), so the injected part of the recurrence never amplifies.

Depth. Training: a depth ``r`` per sequence from Poisson(``mean_recurrence``) clamped to at least 1
(``recurrence_sampling="batch"`` draws one per batch); gradients flow through at most the last ``bptt_steps``
steps of each sequence (truncated BPTT; earlier steps run under ``no_grad``). The per-sequence depths are
right-aligned, sequence b idling at ``h = 0`` until step ``r_max - r_b``, so every sequence's last steps are the
same global steps and the graph holds exactly ``bptt_steps`` core applications whatever the spread of depths.
Evaluation: a fixed depth ``eval_recurrence`` (8). ``iters`` fixes the depth in either mode; ``iters=0`` skips the
loop (prelude -> coda). The prelude and shared weights get gradient through the injection of the tracked steps.

    from recursive_models.lm.registry import build_lm
    model = build_lm("parcae", "tiny")                    # 1 prelude, 2 core, 1 coda blocks
    out = model(idx, targets)                             # random depths in train mode
    out = model.eval()(idx, iters=16)                     # test-time depth 16
"""

from __future__ import annotations

import math

import torch
from torch import nn

from recursive_models.lm.layers import LanguageModel, lecun_linear, rms_norm
from recursive_models.lm.registry import LMConfig, register_lm_model

#: added to Δ·A so that the carry exp(-Δ·A) stays strictly below 1 in float32
_MIN_DECAY = 1e-4


@register_lm_model("parcae")
class Parcae(LanguageModel):
    """Looped LM with a stable diagonal injection; logs ``solver/nstep`` (mean depth) and the last step's change."""

    @staticmethod
    def layer_split(n_layers: int) -> dict[str, int]:  # noqa: D102 -- about a quarter each for prelude and coda
        prelude = max(1, n_layers // 4)
        coda = max(1, n_layers // 4) if n_layers >= 3 else 0
        return {"n_prelude": prelude, "n_core": n_layers - prelude - coda, "n_coda": coda}

    def __init__(self, config: LMConfig):
        super().__init__(config)
        c = config
        if c.n_prelude < 1 or c.n_core < 1 or c.n_coda < 0:
            raise ValueError("Parcae needs n_prelude >= 1, n_core >= 1 and n_coda >= 0")
        if c.recurrence_sampling not in ("sequence", "batch"):
            raise ValueError(f"unknown recurrence_sampling {c.recurrence_sampling!r}; choose 'sequence' or 'batch'")
        if c.bptt_steps < 1 or c.mean_recurrence < 1 or c.eval_recurrence < 0:
            raise ValueError("Parcae needs bptt_steps >= 1, mean_recurrence >= 1 and eval_recurrence >= 0")
        self.prelude = self.make_blocks(c.n_prelude)
        self.core = self.make_blocks(c.n_core)
        self.coda = self.make_blocks(c.n_coda)
        d = c.d_model
        self.inject = lecun_linear(d, d)  # B of the injection, e -> e Bᵀ
        self.a_log = nn.Parameter(torch.zeros(d))  # A = 1 at init
        # Δ log-uniform in [0.1, 1] at init (carry exp(-Δ) in [0.37, 0.9]): a few steps already mix e in strongly.
        delta = torch.exp(torch.empty(d).uniform_(math.log(0.1), math.log(1.0)))
        self.dt = nn.Parameter(delta + torch.log(-torch.expm1(-delta)))  # inverse softplus

    def carry(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(decay, delta)``, each ``(D,)``: the carry ``exp(-(Δ·A + ε)) ∈ (0, 1)`` and the input step ``Δ``."""
        delta = nn.functional.softplus(self.dt)
        return torch.exp(-(delta * torch.exp(self.a_log) + _MIN_DECAY)), delta

    def sample_depths(self, batch: int, device: torch.device) -> torch.Tensor:
        """Training depths ``(B,)`` int64: Poisson(``mean_recurrence``), at least 1, per sequence or per batch."""
        c = self.config
        n = batch if c.recurrence_sampling == "sequence" else 1
        r = torch.poisson(torch.full((n,), float(c.mean_recurrence), device=device)).long().clamp_min(1)
        return r.expand(batch)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, *, iters: int | None = None) -> dict:
        """Logits, loss, ``solver/nstep`` (mean depth), ``solver/residual`` and ``depth`` (blocks per token)."""
        c = self.config
        rope = self.rope()
        e = rms_norm(self.prelude(self.embed(idx), rope))  # (B, T, D)
        b = e.shape[0]
        if iters is not None:
            r = torch.full((b,), int(iters), dtype=torch.long, device=e.device)
        elif self.training:
            r = self.sample_depths(b, e.device)
        else:
            r = torch.full((b,), c.eval_recurrence, dtype=torch.long, device=e.device)
        r_max = int(r.max())
        residual = torch.zeros((), device=e.device)
        if r_max == 0:
            h = e  # no recurrent step: the coda reads the prelude output
        else:
            decay, delta = self.carry()
            inj = delta * self.inject(e)  # (B, T, D) Δ ⊙ (e Bᵀ), the same at every step
            start = (r_max - r).view(b, 1, 1)  # right-aligned: sequence b runs global steps start_b .. r_max-1
            h = torch.zeros_like(e)
            h_prev = h
            grad = torch.is_grad_enabled()
            for i in range(r_max):
                # Only the last bptt_steps global steps build a graph; the state entering them has none, which
                # truncates backprop for every sequence at the same place (its own last bptt_steps steps).
                with torch.set_grad_enabled(grad and i >= r_max - c.bptt_steps):
                    h_prev = h
                    h = torch.where(i >= start, self.core(decay * h + inj, rope), h)
            with torch.no_grad():
                change = torch.linalg.vector_norm((h - h_prev).flatten(1), dim=1)
                residual = (change / (torch.linalg.vector_norm(h.flatten(1), dim=1) + 1e-9)).mean()
        logits = self.decode(self.coda(h, rope))
        depth_mean = r.float().mean()
        return self.output(
            logits,
            targets,
            depth=c.n_prelude + c.n_core * depth_mean + c.n_coda,
            **{"solver/nstep": depth_mean, "solver/residual": residual},
        )
