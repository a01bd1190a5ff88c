"""Shared parts of the language-model families (nanochat-style), written once.

* `CausalSelfAttention`: rotary positions, QK-norm (parameter-free RMSNorm on q and k), causal
  ``F.scaled_dot_product_attention(is_causal=True)``, no biases.
* `ReluSquaredMLP`: ``proj(relu(fc(x))²)`` with inner width ``mlp_ratio · D``.
* `Block`: pre-norm ``x + g_a ⊙ attn(norm(x))``, ``x + g_m ⊙ mlp(norm(x))``; the per-channel gates ``g`` exist only
  with ``layer_scale`` (the Attractor module's gated residual updates).
* `LanguageModel`: the base of every family: tied token embedding, rotary tables, the tied decode
  ``softcap(norm(h) @ Wembᵀ)``, the loss and the output dict.
* `solve_sequence`: `equilibrium.fixed_point` on a sequence state ``(B, T, D)``, per token or per sequence.

RMSNorm has no learned scale anywhere (`recursive_models.layers.rms_norm`, computed in fp32); rotary tables and
the truncated-normal init also come from `recursive_models.layers`. Shapes: ``B`` batch, ``T`` positions,
``D = d_model``, ``H`` heads, ``hd = D / H``, ``V`` vocabulary.

    from recursive_models.lm.layers import Block
    block = Block(128, n_heads=2)
    y = block(x, rope)                 # x (B, T, 128); rope = model.rope()
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from equilibrium import SolverStats, fixed_point
from recursive_models.layers import RotaryEmbedding, apply_rotary, rms_norm, trunc_normal_

if TYPE_CHECKING:
    from recursive_models.lm.registry import LMConfig, LMSolverConfig

Rope = tuple[torch.Tensor, torch.Tensor]


#: The authors' block settings (jacobfa/Attractor ``attractor/configs/*/…-small-140m.py``, shared by their GPT,
#: Parcae and Attractor): RMSNorm with learned gains, the token embedding fed unnormalised, 0.5·ReLU², rotary
#: base 50000, no logit softcap, the ``scaled-zero`` init with orthogonal matrices. (Our first versions used
#: nanochat's: parameter-free norms, a normalised embedding, ReLU², base 10000, softcap 15, LeCun init.)
AUTHORS_BLOCKS = {
    "norm_weight": True, "embed_norm": False, "mlp_act_scale": 0.5, "rope_base": 50000.0, "logit_softcap": None,
    "init": "scaled_zero", "init_orthogonal": True,
}  # fmt: skip
#: nanochat's block settings, those of this suite's first versions (``variant=projected|diagonal|nanochat``)
NANOCHAT_BLOCKS = {
    "norm_weight": False, "embed_norm": True, "mlp_act_scale": 1.0, "rope_base": 10000.0, "logit_softcap": 15.0,
    "init": "lecun", "init_orthogonal": False,
}  # fmt: skip


def lecun_linear(fan_in: int, fan_out: int, std_scale: float = 1.0) -> nn.Linear:
    """Bias-free linear with LeCun truncated-normal init, std ``std_scale / sqrt(fan_in)``."""
    layer = nn.Linear(fan_in, fan_out, bias=False)
    trunc_normal_(layer.weight, std=std_scale / math.sqrt(fan_in))
    return layer


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with rotary positions and QK-norm.

    Args:
        d_model: width ``D``.
        n_heads: heads ``H`` (``D / H`` must be even for rotary).
        out_scale: init std multiplier of the output projection (GPT-2's ``1/sqrt(2·depth)`` residual scaling).
        ve_gate: give the block a value-embedding gate (the authors' Parcae, nanochat's value embeddings): then
            ``forward(x, rope, ve)`` adds ``2·sigmoid(W x[..., :32])`` (one gate per head) times the looked-up
            value embedding ``ve (B, T, D)`` to the values. ``W (H, 32)`` keeps PyTorch's default init, as theirs.
    """

    VE_GATE_CHANNELS = 32

    def __init__(self, d_model: int, n_heads: int, out_scale: float = 1.0, *, ve_gate: bool = False):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        if ve_gate and d_model < self.VE_GATE_CHANNELS:
            raise ValueError(f"a value-embedding gate reads {self.VE_GATE_CHANNELS} channels; d_model is {d_model}")
        self.n_heads, self.head_dim = n_heads, d_model // n_heads
        self.qkv = lecun_linear(d_model, 3 * d_model)
        self.proj = lecun_linear(d_model, d_model, out_scale)
        self.ve_gate = nn.Linear(self.VE_GATE_CHANNELS, n_heads, bias=False) if ve_gate else None

    def forward(self, x: torch.Tensor, rope: Rope, ve: torch.Tensor | None = None) -> torch.Tensor:  # noqa: D102
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # 3x (B, H, T, hd)
        if ve is not None and self.ve_gate is not None:
            gate = 2 * torch.sigmoid(self.ve_gate(x[..., : self.VE_GATE_CHANNELS]))  # (B, T, H), in (0, 2)
            v = v + (gate.unsqueeze(-1) * ve.view(b, t, self.n_heads, self.head_dim)).transpose(1, 2)
        cos, sin = rope
        q, k = apply_rotary(q, cos[:t], sin[:t]), apply_rotary(k, cos[:t], sin[:t])
        # QK-norm: bounded attention logits without a learned temperature (nanochat).
        q, k = rms_norm(q), rms_norm(k)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, hd)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class ReluSquaredMLP(nn.Module):
    """``proj(act_scale · relu(fc(x))²)``: nanochat's MLP (no gate), inner width ``ratio · D``.

    ``act_scale`` is 1 in nanochat and 0.5 in the authors' code (their ``Relu2``: ``relu(x).pow(2).mul(0.5)``).
    """

    def __init__(self, d_model: int, ratio: int = 4, out_scale: float = 1.0, act_scale: float = 1.0):
        super().__init__()
        self.act_scale = act_scale
        self.fc = lecun_linear(d_model, ratio * d_model)
        self.proj = lecun_linear(ratio * d_model, d_model, out_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h = F.relu(self.fc(x)).square()
        return self.proj(h if self.act_scale == 1.0 else h * self.act_scale)


class RMSNorm(nn.Module):
    """RMS normalisation (fp32, eps 1e-5), with a learned ``(D,)`` gain when ``learned`` (the authors' blocks).

    Without the gain the module has no parameters (nanochat), so checkpoints of either kind load unchanged.
    """

    def __init__(self, d_model: int, learned: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d_model)) if learned else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        y = rms_norm(x)
        return y if self.weight is None else y * self.weight


class Block(nn.Module):
    """Pre-norm transformer block; with ``layer_scale`` each residual update is gated per channel.

    ``x + g_a ⊙ attn(norm₁(x))``, then ``x + g_m ⊙ mlp(norm₂(x))``. Gates: none (``layer_scale=None``), plain
    learnable ``(D,)`` vectors initialised to ``layer_scale`` (CaiT's LayerScale; ``gamma_max=None``), or the
    authors' bounded gates ``g = sigmoid(r) · gamma_max`` with ``r`` initialised so that ``g = layer_scale``
    (their ``FixedPointBlock``; ``layer_scale >= gamma_max`` saturates at ``gamma_max·(1 - 1e-6)``).

    Args:
        d_model: width ``D``.
        n_heads: attention heads.
        mlp_ratio: MLP inner width multiplier.
        out_scale: init std multiplier of the two output projections.
        layer_scale: initial gate value; ``None`` for no gates.
        gamma_max: upper bound of sigmoid gates; ``None`` for plain gates.
        norm_weight: learned gains in the two norms.
        act_scale: the MLP's activation scale (see `ReluSquaredMLP`).
        ve_gate: a value-embedding gate in the attention (see `CausalSelfAttention`).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        mlp_ratio: int = 4,
        out_scale: float = 1.0,
        layer_scale: float | None = None,
        *,
        gamma_max: float | None = None,
        norm_weight: bool = False,
        act_scale: float = 1.0,
        ve_gate: bool = False,
    ):
        super().__init__()
        self.norm_1 = RMSNorm(d_model, norm_weight)
        self.attn = CausalSelfAttention(d_model, n_heads, out_scale, ve_gate=ve_gate)
        self.norm_2 = RMSNorm(d_model, norm_weight)
        self.mlp = ReluSquaredMLP(d_model, mlp_ratio, out_scale, act_scale)
        self.gamma_max = gamma_max
        if layer_scale is None:
            self.gate_attn = self.gate_mlp = None
        else:
            init = float(layer_scale)
            if gamma_max is not None:  # the raw value whose sigmoid · gamma_max is layer_scale
                p = min(max(init / gamma_max, 1e-6), 1.0 - 1e-6)
                init = math.log(p / (1.0 - p))
            self.gate_attn = nn.Parameter(torch.full((d_model,), init))
            self.gate_mlp = nn.Parameter(torch.full((d_model,), init))

    def _gate(self, raw: torch.Tensor | None, u: torch.Tensor) -> torch.Tensor:
        if raw is None:
            return u
        return u * (raw if self.gamma_max is None else torch.sigmoid(raw) * self.gamma_max)

    def forward(self, x: torch.Tensor, rope: Rope, ve: torch.Tensor | None = None) -> torch.Tensor:  # noqa: D102
        x = x + self._gate(self.gate_attn, self.attn(self.norm_1(x), rope, ve))
        return x + self._gate(self.gate_mlp, self.mlp(self.norm_2(x)))


class Blocks(nn.ModuleList):
    """A stack of `Block` applied in order: ``blocks(x, rope)``; ``ves`` gives block i its value embedding (or None)."""

    def forward(self, x: torch.Tensor, rope: Rope, ves: list[torch.Tensor | None] | None = None) -> torch.Tensor:  # noqa: D102
        for i, block in enumerate(self):
            x = block(x, rope) if ves is None else block(x, rope, ves[i])
        return x


def _trunc_normal_3(w: torch.Tensor, std: float) -> None:
    nn.init.trunc_normal_(w, mean=0.0, std=std, a=-3 * std, b=3 * std)


def _trunc_orthogonal_(w: torch.Tensor, std: float) -> None:
    """A (semi-)orthogonal matrix from the QR of a truncated normal draw, sign-fixed, times ``std·sqrt(max(r, c))``.

    The entries then have std ``≈ std`` like the normal draw, but the singular values are all equal.
    """
    rows, cols = w.shape
    a = torch.empty(max(rows, cols), min(rows, cols), dtype=torch.float32, device=w.device)
    nn.init.trunc_normal_(a, mean=0.0, std=1.0)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r))  # uniform (Haar) orientation
    w.copy_((q if rows >= cols else q.T) * (std * math.sqrt(max(rows, cols))))


def _draw_output(w: torch.Tensor, std: float, live: bool) -> None:
    if live:
        _trunc_normal_3(w, std)
    else:
        w.zero_()


# --------------------------------------------------------------------------------------------------------
# Fixed-point solve over a sequence state
# --------------------------------------------------------------------------------------------------------


def solve_sequence(
    f: Callable[[torch.Tensor], torch.Tensor], z0: torch.Tensor, cfg: LMSolverConfig, *, max_iter: int
) -> tuple[torch.Tensor, dict[str, torch.Tensor], SolverStats]:
    """Differentiable fixed point ``z* = f(z*)`` of a causal sequence map, through `equilibrium.fixed_point`.

    ``cfg.mixing`` says what one solver sample is:

    * ``token``: the state is handed to the solver as ``(B·T, D)`` and ``f`` sees it reshaped to ``(B, T, D)``.
      Anderson's weights, the residual and the convergence test are then per position, and a position
      freezes once it and every earlier position of its sequence have converged (``causal_group``; before,
      a position could freeze while earlier ones still moved and return a stale value). Because ``f`` is
      causal (position t of ``f(z)`` reads ``z[:, :t+1]`` only), every iterate at position t is a function
      of tokens ≤ t: the solve is exactly causal at any iteration budget.
    * ``sequence``: one sample per sequence, state ``(B, T, D)``. Each Anderson step mixes the history with
      weights fitted to the residual of the *whole* sequence, and a sequence stops when its whole residual
      is small, so before convergence position t depends (weakly) on later tokens. The fixed point itself is
      causal; the leak is bounded by the residual at which the solve stopped.

    Args:
        f: ``(B, T, D) -> (B, T, D)``, causal along ``T``; closes over its inputs and parameters.
        z0: ``(B, T, D)`` initial state (no gradient flows into it).
        cfg: the solver settings.
        max_iter: iteration budget (> 0; the callers handle ``iters=0``).

    Returns:
        ``(z, stats, solver_stats)``: ``z (B, T, D)`` carrying the backward mode's graph (when grad is on);
        ``stats`` holds 0-dim detached batch means ``solver/nstep`` (a sequence's steps: the max over its
        positions in ``token`` mode), ``solver/residual`` (likewise the max), ``solver/converged_frac``
        (sequences whose every position converged) and ``solver/converged_positions`` (positions that converged;
        in ``sequence`` mode, those of converged sequences); ``solver_stats`` is equilibrium's raw record.
    """
    b, t, d = z0.shape
    options = {
        "backward": cfg.backward,
        "phantom_steps": cfg.phantom_steps,
        "phantom_tau": cfg.phantom_tau,
        "ift_max_iter": cfg.ift_max_iter,
        "ift_tol": cfg.ift_tol,
        "neumann_terms": cfg.neumann_terms,
        "method": cfg.method,
        "max_iter": max_iter,
        "min_iter": min(cfg.min_iter, max_iter),
        "tol": cfg.tol,
        "stop_mode": cfg.stop_mode,
        "m": cfg.m,
        "beta": cfg.beta,
    }
    if cfg.mixing == "token":

        def f_rows(rows: torch.Tensor) -> torch.Tensor:
            return f(rows.view(b, t, d)).reshape(b * t, d)  # (B·T, D) <-> (B, T, D)

        # causal_group=t: a position freezes only once every earlier position of its sequence has, so no
        # frozen position keeps a value computed from a prefix that was still moving.
        z, raw = fixed_point(f_rows, z0.reshape(b * t, d), causal_group=t, **options)
        z = z.view(b, t, d)
        nstep = raw.nstep.view(b, t).amax(1)
        residual = raw.residual.view(b, t).amax(1)
        converged = raw.converged.view(b, t).all(1)
        positions = raw.converged.float().mean()
    else:
        z, raw = fixed_point(f, z0, **options)
        nstep, residual, converged = raw.nstep, raw.residual, raw.converged
        positions = converged.float().mean()  # a sequence converges as a whole
    stats = {
        "solver/nstep": nstep.float().mean(),
        "solver/residual": residual.float().mean(),
        "solver/converged_frac": converged.float().mean(),
        "solver/converged_positions": positions,
    }
    return z, stats, raw


# --------------------------------------------------------------------------------------------------------
# Base class
# --------------------------------------------------------------------------------------------------------


class LanguageModel(nn.Module):
    """Base of every LM family: tied embedding, rotary tables, tied decode, loss and output dict.

    Subclasses set ``DEFAULTS`` (LMConfig fields for every size), ``SIZES`` (size name -> fields, e.g. CPU
    solver budgets), implement ``layer_split(n_layers)`` and `forward`.

    ``forward(idx (B, T) int64, targets=None, *, iters=None) -> dict`` returns ``logits (B, T, V)`` (float32),
    ``loss`` (mean cross-entropy over targets != -100, or None) and detached 0-dim statistics: ``depth`` (blocks
    applied per token in the forward pass, the effective depth) and, for recurrent families,
    ``solver/nstep``, ``solver/residual`` and (solver families) ``solver/converged_frac``.
    """

    #: registry name, set by `recursive_models.lm.registry.register_lm_model`
    name: str = ""
    DEFAULTS: ClassVar[dict] = {}
    #: variant name -> LMConfig fields (applied over DEFAULTS); empty for single-variant families
    VARIANTS: ClassVar[dict[str, dict]] = {}
    #: parameter roles for `recursive_models.lm.optim` (see `optimizer_groups`), by name or ``name.`` prefix
    EMBEDDINGS: ClassVar[tuple[str, ...]] = ("wte",)
    HEAD: ClassVar[tuple[str, ...]] = ()
    RECURRENCE: ClassVar[tuple[str, ...]] = ()
    SIZES: ClassVar[dict[str, dict]] = {}
    #: whether ``tie_head=False`` (a separate output head) is an option of this family
    UNTIED_HEAD: ClassVar[bool] = False

    def __init__(self, config: LMConfig):
        super().__init__()
        self.config = config
        c = config
        if not c.tie_head and not self.UNTIED_HEAD:
            raise ValueError(f"the {c.name} family always ties its head; tie_head=False is a deq option")
        self.wte = nn.Embedding(c.vocab_size, c.d_model)
        # std 1/sqrt(D): a random unit-RMS state decodes to O(1) logits, and the input side is normalised anyway.
        # (On the synthetic copy task it trained faster than GPT-2's 0.02 and than 1/D.) ``init="scaled_zero"``
        # redraws it in `init_weights`.
        trunc_normal_(self.wte.weight, std=1.0 / math.sqrt(c.d_model))
        self.rotary = RotaryEmbedding(c.d_model // c.n_heads, c.seq_len, c.rope_base)
        self.ln_f = RMSNorm(c.d_model, c.norm_weight)  # the decode's final norm

    @staticmethod
    def layer_split(n_layers: int) -> dict[str, int]:
        """``n_prelude`` / ``n_core`` / ``n_coda`` that make this family parameter-matched to ``n_layers`` blocks."""
        raise NotImplementedError

    # ---- shared parts ------------------------------------------------------------------------------------
    def make_blocks(self, n: int, *, layer_scale: float | None = None, ve_gates: list[bool] | None = None) -> Blocks:
        """``n`` blocks of this model's widths; output projections scaled by ``1/sqrt(2·n_layers)`` (GPT-2).

        ``layer_scale`` gives the blocks gates (plain, or the authors' sigmoid gates when ``gamma_max`` is set);
        ``ve_gates[i]`` gives block i a value-embedding gate.
        """
        c = self.config
        out_scale = 1.0 / math.sqrt(2 * max(c.n_layers, 1))
        options = {"gamma_max": c.gamma_max, "norm_weight": c.norm_weight, "act_scale": c.mlp_act_scale}
        gates = ve_gates or [False] * n
        return Blocks(
            [Block(c.d_model, c.n_heads, c.mlp_ratio, out_scale, layer_scale, **options, ve_gate=g) for g in gates]
        )

    @torch.no_grad()
    def init_weights(self, *, live_outputs: tuple[nn.Module, ...] = ()) -> None:
        """Apply ``config.init``; families call it at the end of ``__init__``.

        ``lecun`` keeps the weights drawn at construction. ``scaled_zero`` is the authors' table (their
        ``get_factor_table``): every matrix, the tied embedding and any untied head ~ std ``s = sqrt(2/(5D))``
        (truncated at 3s, or scaled truncated-orthogonal with ``init_orthogonal``; the fused ``qkv`` as three
        ``D×D`` draws like their separate q, k, v), and the blocks' output projections zero, so each block starts
        as the identity. ``live_outputs`` lists modules (the Attractor module's blocks) whose output projections
        are drawn at std ``s`` instead (truncated normal, as their ``FixedPointBlock``): a zero head would make
        the attractor map the constant ``c`` and its gates would get no gradient.
        """
        c = self.config
        if c.init == "lecun":
            return
        std = math.sqrt(2.0 / (5.0 * c.d_model))
        draw = _trunc_orthogonal_ if c.init_orthogonal else _trunc_normal_3
        live = {id(m) for owner in live_outputs for m in owner.modules()}
        for module in self.modules():
            if isinstance(module, CausalSelfAttention):
                for part in module.qkv.weight.chunk(3, dim=0):
                    draw(part, std)
                _draw_output(module.proj.weight, std, id(module) in live)
            elif isinstance(module, ReluSquaredMLP):
                draw(module.fc.weight, std)
                _draw_output(module.proj.weight, std, id(module) in live)
        draw(self.wte.weight, std)
        head = getattr(self, "head", None)
        if isinstance(head, nn.Linear):
            draw(head.weight, std)

    def rope(self) -> Rope:
        """Rotary ``(cos, sin)`` tables, each ``(seq_len, hd)``."""
        return self.rotary()

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        """Token ids ``(B, T)`` -> embeddings ``(B, T, D)``, normalised when ``embed_norm``."""
        if idx.shape[1] > self.config.seq_len:
            raise ValueError(f"sequence of {idx.shape[1]} tokens exceeds seq_len={self.config.seq_len}")
        x = self.wte(idx)
        return rms_norm(x) if self.config.embed_norm else x

    def softcap(self, logits: torch.Tensor) -> torch.Tensor:
        """``c · tanh(logits / c)`` in float32 (identity when ``logit_softcap`` is None)."""
        logits = logits.float()
        c = self.config.logit_softcap
        return logits if c is None else c * torch.tanh(logits / c)

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """Tied unembedding: ``softcap(ln_f(h) @ Wembᵀ)``, ``(B, T, D) -> (B, T, V)`` float32."""
        return self.softcap(F.linear(self.ln_f(h), self.wte.weight))

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy over ``targets != -100`` (the padding of `TokenDataset.iter_eval_batches`)."""
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)

    def output(self, logits: torch.Tensor, targets: torch.Tensor | None, **stats: torch.Tensor | float) -> dict:
        """The output dict: logits, loss (or None) and detached 0-dim statistics."""
        out: dict = {"logits": logits, "loss": None if targets is None else self.loss(logits, targets)}
        for k, v in stats.items():
            out[k] = v.detach() if isinstance(v, torch.Tensor) else torch.tensor(float(v))
        return out

    def optimizer_groups(self) -> dict[str, str]:
        """Every trainable parameter's role in `recursive_models.lm.optim` (the authors' ``get_muon_param_groups``).

        ``embedding``: vocabulary tables (``EMBEDDINGS``: the tied embedding, value embeddings, an untied head);
        ``fp_matrix`` / ``fp_vector``: the fixed-point head (``HEAD``); ``vector``: 1-D parameters and a
        recurrence's parameters (``RECURRENCE``: Parcae's A, Δ, B, C), which stay off Muon; ``matrix``: the
        other 2-D weights (Muon).
        """

        def under(name: str, prefixes: tuple[str, ...]) -> bool:
            return any(name == x or name.startswith(x + ".") for x in prefixes)

        roles = {}
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            if under(name, self.EMBEDDINGS):
                roles[name] = "embedding"
            elif under(name, self.HEAD):
                roles[name] = "fp_matrix" if p.ndim >= 2 else "fp_vector"
            elif p.ndim == 2 and not under(name, self.RECURRENCE):
                roles[name] = "matrix"
            else:
                roles[name] = "vector"
        return roles

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count (optionally without the ``V × D`` token embedding)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wte.weight.numel() if non_embedding else n

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, *, iters: int | None = None) -> dict:
        """See the class docstring."""
        raise NotImplementedError
