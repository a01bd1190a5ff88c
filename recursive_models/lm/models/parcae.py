"""Parcae looped LM: prelude blocks -> a weight-tied core looped r times -> coda blocks (two variants).

``authors`` (default) — the authors' Parcae (jacobfa/Attractor ``attractor/models/parcae/parcae.py``, the
diagonal injection of ``attractor/modules/injection.py``, ``init.py``, and ``configs/parcae/parcae-small-140m.py``;
read at fcf045f)::

    e  = ln_prelude(prelude(wte[idx]))                  # learned-gain RMSNorm after the prelude (prelude_norm)
    h0 ~ TruncNormal(0, s², ±3s), s = sqrt(2/(5D))      # "like-init": a fresh draw shaped like e, std of the
                                                        # embedding's init, at every forward (train and eval)
    h  ← core(exp(-Δ·A) ⊙ h + Δ ⊙ (e Bᵀ))               # Δ = softplus(dt_bias), A = exp(A_log); r times
    logits = ln_f(coda(C h)) @ Wembᵀ                    # C: a D×D linear; tied unembedding, no softcap

  Where each setting comes from:

  ========================================  ===============================================================
  setting                                   source
  ========================================  ===============================================================
  prelude / core / coda in equal thirds     paper Table 10 (theirs: 2/2/2 at 140M). Ours: ``round(n/3)``
                                            prelude and coda, the core the rest, so the total stays
                                            ``n_layers``: tiny 1/2/1, small 3/2/3, base 5/6/5 (ours)
  "like-init" state, diagonal injection     paper Table 10; the formulas from ``parcae.py``
                                            (``initialize_state``) and ``injection.py`` (``DiagonalInjection``)
  injection init: A_log = 0 (A = 1),        ``parcae/init.py`` (``ssm_A_log``, ``ssm_dt_bias`` with the
  Δ = -log(sqrt(1/5)) = 0.80 per channel    default ``ssm_decay = sqrt(1/5)``: carry 0.447), ``ssm_B_identity``
  (carry 0.447), B = I
  C ~ scaled truncated-orthogonal, std s    ``parcae.py`` (``C``; the init table's ``std``)
  depth: total r ~ max(1, Poisson(8)) per   paper Table 10 (mean recurrence 8, backprop depth sampled, mean
  sequence, gradient through its last       4); the draw is their ``sampling_scheme="poisson-truncated-full"``,
  min(r, 4) steps (mean 3.94)               ``recurrence_sampling="per-sequence"`` (``_sample_batch_depths``)
  evaluation depth 8 (``iters`` overrides)  their training script's evaluation (``num_steps_pair=[8, 0]``)
  value embeddings                          ``parcae.py`` (``value_embeds``; nanochat's): see below
  blocks: learned RMSNorm gains, no         ``parcae-small-140m.py`` (RMSNorm, ReLU2, qk_norm, rope 50000,
  embedding norm, 0.5·ReLU², QK-norm,       logit_softcap None, tie_embeddings, init_strategy="scaled-zero",
  rotary base 50000, no softcap, scaled-    init_orthogonal=True); the same as the Attractor LM's
  zero orthogonal init (zero out-proj)
  ========================================  ===============================================================

  Value embeddings (theirs): tables ``V×D`` looked up from the tokens and added to an attention's values through a
  per-head gate ``2·sigmoid(W x[..., :32])``. Their rule (reproduced in `value_embed_blocks`): a table exists for
  every other *effective* layer (prelude, core, coda counted once), and a gate for every other *layer id*, where the
  core's ids follow the prelude and the coda's start after ``n_prelude + n_core · mean_recurrence``; a block uses a
  value embedding where both exist (at our three sizes every table and every gate is used: tiny 2, small 4, base 8).

  Two things of theirs we do differently: their ``per-sequence`` path also samples random depths in ``eval()``
  unless ``num_steps_pair`` is given (their evaluation always gives it); ours uses ``eval_recurrence``. Their
  depth draw comes from a generator seeded with ``514229 + model.step``; ours from the global generator, or the
  ``generator`` given to `sample_depths` (which then reproduces theirs). Sequences are right-aligned here and
  left-aligned there (a sequence idles before its steps rather than after); every sequence gets the same steps,
  the same value and the same gradient. Fidelity: ``tests/test_lm_parcae_authors.py``.

``diagonal`` — this suite's first Parcae, kept bit for bit::

    e = norm(prelude(norm(wte[idx])))                 # prelude output, computed once
    h0 = 0
    h ← core(exp(-(Δ·A + ε)) ⊙ h + Δ ⊙ (e Bᵀ))         # A = exp(a_log), Δ = softplus(dt), ε = 1e-4
    logits = softcap(norm(coda(h)) @ Wembᵀ)           # nanochat blocks (no norm gains, ReLU², LeCun init)

  Δ is drawn log-uniform in [0.1, 1] (carry in [0.37, 0.9]), B LeCun-normal; a quarter prelude and a quarter coda
  (tiny 1/2/1, small 2/4/2, base 4/8/4). ε keeps float32 from rounding a tiny ``Δ·A`` to a carry of exactly 1, so
  the injected part of the recurrence never amplifies, for any parameter value.

Depth (both variants). Training: a depth ``r`` per sequence from Poisson(``mean_recurrence``) clamped to at least 1
(``recurrence_sampling="batch"``: one per batch); gradients flow through at most the last ``bptt_steps`` steps of
each sequence (earlier steps run under ``no_grad``), i.e. through ``min(r, bptt_steps)`` steps. The depths are
right-aligned, sequence b idling at ``h0`` until step ``r_max - r_b``, so the graph holds at most ``bptt_steps``
core applications whatever the spread of depths. Evaluation: ``eval_recurrence`` (8). ``iters`` fixes the depth in
either mode; ``iters=0`` skips the loop (``authors``: the coda reads ``C h0``, a random state; ``diagonal``: the
prelude output).

    from recursive_models.lm.registry import build_lm
    model = build_lm("parcae", "tiny")                    # the authors' Parcae, 1 prelude, 2 core, 1 coda blocks
    out = model(idx, targets)                             # random depths in train mode
    out = model.eval()(idx, iters=16)                     # test-time depth 16
    first = build_lm("parcae", "tiny", variant="diagonal")
"""

from __future__ import annotations

import math

import torch
from torch import nn

from recursive_models.lm.layers import (
    AUTHORS_BLOCKS,
    NANOCHAT_BLOCKS,
    LanguageModel,
    RMSNorm,
    _trunc_normal_3,
    _trunc_orthogonal_,
    lecun_linear,
    rms_norm,
)
from recursive_models.lm.registry import LMConfig, register_lm_model

#: added to Δ·A so that the carry exp(-Δ·A) stays strictly below 1 in float32 (``diagonal`` only)
_MIN_DECAY = 1e-4
#: their initial carry exp(-Δ·A) with A = 1 (``parcae/init.py``'s default ``ssm_decay``)
AUTHORS_DECAY = math.sqrt(1.0 / 5.0)

_DIAGONAL = dict(NANOCHAT_BLOCKS)
# parcae-small-140m.py: blocks and init; the depth schedule of Table 10 (their poisson-truncated-full)
_AUTHORS = dict(AUTHORS_BLOCKS)


def value_embed_blocks(n_prelude: int, n_core: int, n_coda: int, mean_recurrence: int, bptt_steps: int) -> dict:
    """Which blocks of the authors' Parcae read a value embedding, and which table: ``{part: [key or None]}``.

    Their rule (``parcae.py`` and ``mixer.has_ve``; ``has(i, n)`` is ``i % 2 == (n - 1) % 2``): the table of
    effective layer ``j`` (prelude ``i``, core ``n_prelude + i``, coda ``n_prelude + n_core + i``) exists when
    ``has(j, n_prelude + n_core + n_coda)``; the gate of a block exists when ``has(layer_id, n_core · bptt_steps)``
    (their ``n_layer = n_layers_in_recurrent_block · mean_backprop_depth``), with layer ids prelude ``i``, core
    ``n_prelude + i`` and coda ``n_prelude + n_core · mean_recurrence + i``. A block uses a value embedding only
    where both exist; the key is ``str(j)`` (their ``value_embeds`` keys).
    """

    def has(i: int, n: int) -> bool:
        return i % 2 == (n - 1) % 2

    n_eff, n_gate = n_prelude + n_core + n_coda, n_core * bptt_steps
    parts = {
        "prelude": [(i, i) for i in range(n_prelude)],
        "core": [(n_prelude + i, n_prelude + i) for i in range(n_core)],
        "coda": [(n_prelude + n_core + i, n_prelude + n_core * mean_recurrence + i) for i in range(n_coda)],
    }
    return {
        part: [str(j) if has(j, n_eff) and has(layer_id, n_gate) else None for j, layer_id in slots]
        for part, slots in parts.items()
    }


@register_lm_model("parcae")
class Parcae(LanguageModel):
    """Looped LM (the authors' Parcae or our first, diagonal one); logs ``solver/nstep`` and the last step's change."""

    DEFAULTS = {"variant": "authors"}  # noqa: RUF012
    VARIANTS = {"authors": _AUTHORS, "diagonal": _DIAGONAL}  # noqa: RUF012
    # Optimiser roles as the authors' get_muon_param_groups: the value-embedding tables with the embedding,
    # the recurrence (A, Δ, B, C; the diagonal variant's A, Δ, B) on AdamW without weight decay, never Muon.
    EMBEDDINGS = ("wte", "value_embeds")
    RECURRENCE = ("A_log", "dt_bias", "B", "C", "a_log", "dt", "inject")

    @staticmethod
    def layer_split(n_layers: int, variant: str | None = None) -> dict[str, int]:
        """``authors``: prelude and coda ``round(n/3)`` each, the core the rest; ``diagonal``: a quarter each."""
        if variant == "diagonal":
            prelude = max(1, n_layers // 4)
            coda = max(1, n_layers // 4) if n_layers >= 3 else 0
        elif n_layers < 3:
            prelude, coda = 1, 0
        else:
            prelude = coda = round(n_layers / 3)
        return {"n_prelude": prelude, "n_core": n_layers - prelude - coda, "n_coda": coda}

    def __init__(self, config: LMConfig):
        super().__init__(config)
        c = config
        if c.variant not in self.VARIANTS:
            raise ValueError(f"unknown parcae variant {c.variant!r}; variants are {sorted(self.VARIANTS)}")
        if c.n_prelude < 1 or c.n_core < 1 or c.n_coda < 0:
            raise ValueError("Parcae needs n_prelude >= 1, n_core >= 1 and n_coda >= 0")
        if c.recurrence_sampling not in ("sequence", "batch"):
            raise ValueError(f"unknown recurrence_sampling {c.recurrence_sampling!r}; choose 'sequence' or 'batch'")
        if c.bptt_steps < 1 or c.mean_recurrence < 1 or c.eval_recurrence < 0:
            raise ValueError("Parcae needs bptt_steps >= 1, mean_recurrence >= 1 and eval_recurrence >= 0")
        d = c.d_model
        if c.variant == "diagonal":
            self.prelude = self.make_blocks(c.n_prelude)
            self.core = self.make_blocks(c.n_core)
            self.coda = self.make_blocks(c.n_coda)
            self.inject = lecun_linear(d, d)  # B of the injection, e -> e Bᵀ
            self.a_log = nn.Parameter(torch.zeros(d))  # A = 1 at init
            # Δ log-uniform in [0.1, 1] at init (carry exp(-Δ) in [0.37, 0.9]): a few steps already mix e in strongly.
            delta = torch.exp(torch.empty(d).uniform_(math.log(0.1), math.log(1.0)))
            self.dt = nn.Parameter(delta + torch.log(-torch.expm1(-delta)))  # inverse softplus
            self.init_weights()  # a no-op at this variant's lecun default
            return
        if c.mean_recurrence != int(c.mean_recurrence):
            raise ValueError(f"the authors' Parcae needs an integer mean_recurrence, got {c.mean_recurrence}")
        self.ve_keys = value_embed_blocks(c.n_prelude, c.n_core, c.n_coda, int(c.mean_recurrence), c.bptt_steps)
        gates = {part: [k is not None for k in keys] for part, keys in self.ve_keys.items()}
        self.prelude = self.make_blocks(c.n_prelude, ve_gates=gates["prelude"])
        self.ln_prelude = RMSNorm(d, c.norm_weight)
        self.core = self.make_blocks(c.n_core, ve_gates=gates["core"])
        self.coda = self.make_blocks(c.n_coda, ve_gates=gates["coda"])
        used = sorted({k for keys in self.ve_keys.values() for k in keys if k is not None}, key=int)
        # N(0, 1), PyTorch's default, which their code keeps (its init touches only wte and ln_f)
        self.value_embeds = nn.ModuleDict({k: nn.Embedding(c.vocab_size, d) for k in used})
        # The diagonal injection, initialised as their init.py: A = 1, carry exp(-Δ) = sqrt(1/5), B = I.
        self.A_log = nn.Parameter(torch.zeros(d))
        dt = -math.log(AUTHORS_DECAY)
        self.dt_bias = nn.Parameter(torch.full((d,), dt + math.log(-math.expm1(-dt))))  # inverse softplus
        self.B = nn.Parameter(torch.eye(d))
        self.C = lecun_linear(d, d)  # the recurrent state -> the coda
        self.init_weights()
        if c.init == "scaled_zero":
            draw = _trunc_orthogonal_ if c.init_orthogonal else _trunc_normal_3
            with torch.no_grad():
                draw(self.C.weight, math.sqrt(2.0 / (5.0 * d)))

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count; ``non_embedding`` leaves out the token embedding *and* the value-embedding tables."""
        n = super().num_params(non_embedding)
        if non_embedding and self.config.variant == "authors":
            n -= sum(p.numel() for p in self.value_embeds.parameters())
        return n

    # ---- the recurrence ----------------------------------------------------------------------------------
    def carry(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(decay, delta)``, each ``(D,)``: the carry ``exp(-Δ·A)`` (``diagonal``: ``exp(-(Δ·A + ε))``) and ``Δ``."""
        if self.config.variant == "diagonal":
            delta = nn.functional.softplus(self.dt)
            return torch.exp(-(delta * torch.exp(self.a_log) + _MIN_DECAY)), delta
        delta = nn.functional.softplus(self.dt_bias)
        return torch.exp(-delta * torch.exp(self.A_log)), delta

    def sample_depths(self, batch: int, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
        """Training depths ``(B,)`` int64: Poisson(``mean_recurrence``), at least 1, per sequence or per batch.

        ``authors`` draws on the CPU (as theirs); a CPU ``generator`` seeded ``514229 + step`` reproduces their
        ``_sample_batch_depths`` (total = their ``n + k``).
        """
        c = self.config
        n = batch if c.recurrence_sampling == "sequence" else 1
        where = torch.device("cpu") if c.variant == "authors" else device
        rates = torch.full((n,), float(c.mean_recurrence), device=where)
        r = torch.poisson(rates, generator=generator).long().clamp_min(1)
        return r.to(device).expand(batch)

    def value_embeddings(self, idx: torch.Tensor) -> dict[str, list[torch.Tensor | None]]:
        """``{part: [ve (B, T, D) or None per block]}`` (``authors``; every table looked up once)."""
        tables = {k: emb(idx) for k, emb in self.value_embeds.items()}
        return {part: [None if k is None else tables[k] for k in keys] for part, keys in self.ve_keys.items()}

    def initial_state(self, e: torch.Tensor) -> torch.Tensor:
        """``h0`` like ``e (B, T, D)``: zero (``diagonal``) or their "like-init" truncated-normal draw (``authors``)."""
        if self.config.variant == "diagonal":
            return torch.zeros_like(e)
        std = math.sqrt(2.0 / (5.0 * self.config.d_model))  # the embedding's std in their init table
        # Theirs draws randn and then overwrites it with the truncated normal; drawing both keeps the global random
        # stream where theirs leaves it, so a shared seed gives both models the same h0 (the fidelity test).
        h = torch.randn(e.shape, device=e.device, dtype=e.dtype)
        return nn.init.trunc_normal_(h, mean=0.0, std=std, a=-3 * std, b=3 * std)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, *, iters: int | None = None) -> dict:
        """Logits, loss, ``solver/nstep`` (mean depth), ``solver/residual`` and ``depth`` (blocks per token)."""
        c = self.config
        authors = c.variant == "authors"
        rope = self.rope()
        ves = self.value_embeddings(idx) if authors else {"prelude": None, "core": None, "coda": None}
        if authors:
            e = self.ln_prelude(self.prelude(self.embed(idx), rope, ves["prelude"]))  # (B, T, D)
        else:
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
        h = self.initial_state(e) if authors else None
        if r_max == 0:
            h = h if authors else e  # no recurrent step: the coda reads C h0 (authors) or the prelude output
        else:
            decay, delta = self.carry()
            # (B, T, D) Δ ⊙ (e Bᵀ), the same at every step
            inj = delta * (e @ self.B.T) if authors else delta * self.inject(e)
            start = (r_max - r).view(b, 1, 1)  # right-aligned: sequence b runs global steps start_b .. r_max-1
            if h is None:
                h = torch.zeros_like(e)
            h_prev = h
            grad = torch.is_grad_enabled()
            for i in range(r_max):
                # Only the last bptt_steps global steps build a graph; the state entering them has none, which
                # truncates backprop for every sequence at the same place (its own last bptt_steps steps).
                with torch.set_grad_enabled(grad and i >= r_max - c.bptt_steps):
                    h_prev = h
                    if authors:
                        h_new = self.core(h * decay + inj, rope, ves["core"])
                    else:
                        h_new = self.core(decay * h + inj, rope)
                    h = torch.where(i >= start, h_new, h)
            with torch.no_grad():
                change = torch.linalg.vector_norm((h - h_prev).flatten(1), dim=1)
                residual = (change / (torch.linalg.vector_norm(h.flatten(1), dim=1) + 1e-9)).mean()
        if authors:
            logits = self.decode(self.coda(self.C(h), rope, ves["coda"]))
        else:
            logits = self.decode(self.coda(h, rope))
        depth_mean = r.float().mean()
        return self.output(
            logits,
            targets,
            depth=c.n_prelude + c.n_core * depth_mean + c.n_coda,
            **{"solver/nstep": depth_mean, "solver/residual": residual},
        )
