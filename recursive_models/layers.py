"""Shared building blocks of every model in `recursive_models`, written once.

Used by HRM, TRM, Attractor-TRM and the Transformer baseline:

* `RMSNorm` (no learned scale, as HRM/TRM), `RotaryEmbedding`, non-causal SDPA `Attention`, `SwiGLU`.
* `TokenMixMLP`: TRM's "MLP-T" variant that mixes along the sequence instead of attending.
* `Block`: mixer + SwiGLU with residuals, post-norm (HRM/TRM) or pre-norm.
* `ReasoningModule`: a stack of blocks with additive input injection (``h = blocks(h + injection)``).
* `InputEncoder`: token embedding (scaled by sqrt(hidden)), optional learned positions, and the puzzle-identifier
  embedding prepended as ``puzzle_emb_len`` extra positions.
* `OutputHeads`: the token head and the two-logit Q (halting) head read from the first position.
* ``*_parameters``: each of the above's parameter count computed from its arguments alone (no module is
  built), so a config from an untrusted checkpoint can be sized before anything is allocated.

Shapes: ``B`` batch, ``S = seq_len + puzzle_emb_len`` positions, ``D`` hidden size.

    from recursive_models.layers import Block, ReasoningModule
    module = ReasoningModule([Block(512, 8, 4.0) for _ in range(2)])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def trunc_normal_(tensor: torch.Tensor, std: float = 1.0) -> torch.Tensor:
    """Truncated normal at +-2 std with the *actual* standard deviation ``std`` (JAX/LeCun convention).

    `torch.nn.init.trunc_normal_` truncates a normal of std ``std`` and so ends up narrower; HRM/TRM correct for
    that, and we follow them so that initial activations have the intended scale.
    """
    if std == 0:
        return tensor.zero_()
    # Variance of a standard normal truncated to [-2, 2]; divide it out so the result has std `std`.
    a, b = -2.0, 2.0
    z = (math.erf(b / math.sqrt(2)) - math.erf(a / math.sqrt(2))) / 2  # probability mass kept
    pdf = lambda x: math.exp(-x * x / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    var = 1 - 2 * (b * pdf(b)) / z
    with torch.no_grad():
        nn.init.trunc_normal_(tensor, std=1.0, a=a, b=b)
        tensor.mul_(std / math.sqrt(var))
    return tensor


class Linear(nn.Linear):
    """`nn.Linear` with LeCun truncated-normal init (std 1/sqrt(fan_in)) and zero bias, as HRM/TRM."""

    def reset_parameters(self) -> None:  # noqa: D102 -- nn.Module hook
        trunc_normal_(self.weight, std=1.0 / math.sqrt(self.in_features))
        if self.bias is not None:
            nn.init.zeros_(self.bias)


def rms_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """RMS normalisation over the last dim, computed in fp32 and cast back (stable under bf16)."""
    dtype = x.dtype
    x = x.float()
    return (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)).to(dtype)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding tables for ``max_len`` positions (non-persistent buffers: not in checkpoints)."""

    def __init__(self, head_dim: int, max_len: int, base: float = 10000.0):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        freqs = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)  # (S, hd/2)
        emb = torch.cat((freqs, freqs), dim=-1)  # (S, hd)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: D102
        return self.cos, self.sin


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` of shape ``(B, H, S, hd)`` by the tables ``(S, hd)``."""
    dtype = x.dtype
    x = x.float()
    return (x * cos + _rotate_half(x) * sin).to(dtype)


class Attention(nn.Module):
    """Non-causal multi-head self-attention through `scaled_dot_product_attention`, with optional rotary."""

    def __init__(self, hidden: int, num_heads: int):
        super().__init__()
        if hidden % num_heads:
            raise ValueError(f"hidden size {hidden} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = hidden // num_heads
        self.qkv = Linear(hidden, 3 * hidden, bias=False)
        self.proj = Linear(hidden, hidden, bias=False)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:  # noqa: D102
        b, s, d = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # 3x (B,H,S,hd)
        if rope is not None:
            cos, sin = rope
            q, k = apply_rotary(q, cos[:s], sin[:s]), apply_rotary(k, cos[:s], sin[:s])
        y = F.scaled_dot_product_attention(q, k, v, is_causal=False)  # (B, H, S, hd)
        return self.proj(y.transpose(1, 2).reshape(b, s, d))


def swiglu_width(hidden: int, expansion: float, multiple: int = 256) -> int:
    """SwiGLU inner width: ``2/3 * expansion * hidden`` rounded up to ``multiple`` (LLaMA/HRM convention)."""
    inner = round(expansion * hidden * 2 / 3)
    return -(inner // -multiple) * multiple


def swiglu_parameters(hidden: int, expansion: float) -> int:
    """Parameters of `SwiGLU` ``(hidden, expansion)``: the fused gate/up matrix and the down matrix."""
    return 3 * hidden * swiglu_width(hidden, expansion)


def block_parameters(hidden: int, expansion: float, *, mixer: str = "attention", seq_positions: int = 0) -> int:
    """Parameters of one `Block` (attention: qkv + proj, ``4 D^2``; MLP-T: a SwiGLU over the positions)."""
    mix = 4 * hidden * hidden if mixer == "attention" else swiglu_parameters(seq_positions, expansion)
    return mix + swiglu_parameters(hidden, expansion)


def encoder_parameters(
    vocab_size: int,
    seq_len: int,
    hidden: int,
    *,
    num_puzzle_identifiers: int = 1,
    puzzle_emb_len: int = 1,
    puzzle_emb_ndim: int = 0,
    pos_encodings: str = "rope",
) -> int:
    """Parameters of `InputEncoder` (token table, puzzle-identifier table, learned positions)."""
    n = vocab_size * hidden
    if puzzle_emb_len > 0:
        n += num_puzzle_identifiers * (puzzle_emb_ndim or puzzle_emb_len * hidden)
    if pos_encodings == "learned":
        n += (seq_len + puzzle_emb_len) * hidden
    return n


def heads_parameters(hidden: int, vocab_size: int) -> int:
    """Parameters of `OutputHeads`: the token head and the Q head with its bias."""
    return hidden * vocab_size + 2 * hidden + 2


class SwiGLU(nn.Module):
    """``down(silu(gate(x)) * up(x))`` with gate and up fused in one matmul."""

    def __init__(self, hidden: int, expansion: float, multiple: int = 256):
        super().__init__()
        inner = swiglu_width(hidden, expansion, multiple)
        self.gate_up = Linear(hidden, 2 * inner, bias=False)
        self.down = Linear(inner, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class TokenMixMLP(nn.Module):
    """TRM's MLP-T mixer: a SwiGLU applied along the sequence axis (all positions see all positions)."""

    def __init__(self, seq_positions: int, expansion: float):
        super().__init__()
        self.mlp = SwiGLU(seq_positions, expansion)

    def forward(self, x: torch.Tensor, rope=None) -> torch.Tensor:  # noqa: D102 -- same call as Attention
        return self.mlp(x.transpose(1, 2)).transpose(1, 2)  # (B, D, S) -> mix S -> (B, S, D)


class Block(nn.Module):
    """One transformer block: token mixer (attention or MLP-T) then SwiGLU, each with a residual.

    ``norm="post"`` is HRM/TRM's ``x = norm(x + f(x))``; ``norm="pre"`` is ``x = x + f(norm(x))``. With the MLP-T
    mixer and post-norm the first norm runs over the sequence axis, as in TRM (``mlp_t=True``).
    """

    def __init__(
        self,
        hidden: int,
        num_heads: int,
        expansion: float,
        *,
        mixer: str = "attention",
        seq_positions: int | None = None,
        norm: str = "post",
        eps: float = 1e-5,
    ):
        super().__init__()
        if mixer == "attention":
            self.mixer = Attention(hidden, num_heads)
        elif mixer == "mlp":
            if seq_positions is None:
                raise ValueError("mixer='mlp' needs seq_positions (sequence length + puzzle embedding positions)")
            self.mixer = TokenMixMLP(seq_positions, expansion)
        else:
            raise ValueError(f"unknown mixer {mixer!r}; choose 'attention' or 'mlp'")
        if norm not in ("post", "pre"):
            raise ValueError(f"unknown norm placement {norm!r}; choose 'post' or 'pre'")
        self.mlp = SwiGLU(hidden, expansion)
        self.norm = norm
        self.eps = eps

    def forward(self, x: torch.Tensor, rope=None) -> torch.Tensor:  # noqa: D102
        if self.norm == "post":
            if isinstance(self.mixer, TokenMixMLP):
                # TRM's MLP-T normalises the token-mixing residual along the *sequence* axis: it adds and
                # normalises while the tensor is still transposed to (B, D, S). Normalising over D instead
                # would be a different model (and not the one TRM's Sudoku result was trained with).
                xt = x.transpose(1, 2)  # (B, D, S)
                x = rms_norm(xt + self.mixer.mlp(xt), self.eps).transpose(1, 2)  # (B, S, D)
            else:
                x = rms_norm(x + self.mixer(x, rope), self.eps)
            return rms_norm(x + self.mlp(x), self.eps)
        x = x + self.mixer(rms_norm(x, self.eps), rope)
        return x + self.mlp(rms_norm(x, self.eps))


class ReasoningModule(nn.Module):
    """A stack of blocks with additive input injection: ``blocks(hidden + injection)``.

    With pre-norm blocks a final norm keeps the output on the same scale as the post-norm variant.
    """

    def __init__(self, blocks: list[Block]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.final_norm = bool(blocks) and blocks[0].norm == "pre"

    def forward(self, hidden: torch.Tensor, injection: torch.Tensor | None = None, rope=None) -> torch.Tensor:  # noqa: D102
        h = hidden if injection is None else hidden + injection
        for block in self.blocks:
            h = block(h, rope)
        return rms_norm(h) if self.final_norm else h


class InputEncoder(nn.Module):
    """Tokens and puzzle identifier -> scaled input embedding ``(B, S, D)``.

    The puzzle-identifier embedding (zero-initialised, as HRM/TRM) fills the first ``puzzle_emb_len`` positions;
    its table is a separate parameter so the optimiser can give it its own learning rate and weight decay. It
    has ``puzzle_emb_ndim`` columns (default: all ``puzzle_emb_len * hidden``); a narrower table is zero-padded
    to the ``puzzle_emb_len`` positions, as TRM does with its 16 positions and a ``hidden``-wide embedding, so
    the padded positions stay zero in training too.
    """

    def __init__(
        self,
        vocab_size: int,
        seq_len: int,
        hidden: int,
        *,
        num_puzzle_identifiers: int = 1,
        puzzle_emb_len: int = 1,
        puzzle_emb_ndim: int = 0,
        pos_encodings: str = "rope",
        num_heads: int = 8,
        rope_base: float = 10000.0,
    ):
        super().__init__()
        if pos_encodings not in ("rope", "learned", "none"):
            raise ValueError(f"unknown pos_encodings {pos_encodings!r}; choose 'rope', 'learned' or 'none'")
        self.hidden = hidden
        self.seq_len = seq_len
        self.puzzle_emb_len = puzzle_emb_len
        self.positions = seq_len + puzzle_emb_len
        self.scale = math.sqrt(hidden)
        self.embed_tokens = nn.Embedding(vocab_size, hidden)
        trunc_normal_(self.embed_tokens.weight, std=1.0 / self.scale)
        full = puzzle_emb_len * hidden
        if puzzle_emb_len > 0 and not 0 <= puzzle_emb_ndim <= full:  # no positions: no embedding, ndim unused
            raise ValueError(
                f"puzzle_emb_ndim={puzzle_emb_ndim} must be between 0 (= puzzle_emb_len * hidden) and "
                f"puzzle_emb_len * hidden = {full}"
            )
        self.puzzle_emb_ndim = puzzle_emb_ndim or full
        self.puzzle_emb = None
        if puzzle_emb_len > 0:
            self.puzzle_emb = nn.Embedding(num_puzzle_identifiers, self.puzzle_emb_ndim)
            nn.init.zeros_(self.puzzle_emb.weight)
        self.pos_encodings = pos_encodings
        self.embed_pos = None
        self.rotary = None
        if pos_encodings == "learned":
            self.embed_pos = nn.Parameter(trunc_normal_(torch.empty(self.positions, hidden), std=1.0 / self.scale))
        elif pos_encodings == "rope":
            self.rotary = RotaryEmbedding(hidden // num_heads, self.positions, rope_base)

    def rope(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The rotary tables, or ``None`` without rotary positions."""
        return None if self.rotary is None else self.rotary()

    def forward(self, inputs: torch.Tensor, puzzle_identifiers: torch.Tensor) -> torch.Tensor:
        """``inputs (B, seq_len)`` int64, ``puzzle_identifiers (B,)`` -> ``(B, S, D)``."""
        emb = self.embed_tokens(inputs)
        if self.puzzle_emb is not None:
            pe = self.puzzle_emb(puzzle_identifiers)  # (B, puzzle_emb_ndim)
            pad = self.puzzle_emb_len * self.hidden - pe.shape[-1]
            if pad:
                pe = F.pad(pe, (0, pad))
            pe = pe.view(-1, self.puzzle_emb_len, self.hidden)
            emb = torch.cat((pe.to(emb.dtype), emb), dim=1)
        if self.embed_pos is not None:
            # Scale by 1/sqrt(2) so the sum keeps the variance of one embedding (as HRM/TRM).
            emb = 0.707106781 * (emb + self.embed_pos.to(emb.dtype))
        return self.scale * emb


class OutputHeads(nn.Module):
    """Token logits from every puzzle position and the (halt, continue) Q logits from the first position."""

    def __init__(self, hidden: int, vocab_size: int, puzzle_emb_len: int):
        super().__init__()
        self.puzzle_emb_len = puzzle_emb_len
        self.lm_head = Linear(hidden, vocab_size, bias=False)
        self.q_head = Linear(hidden, 2, bias=True)
        with torch.no_grad():
            # Start by almost never halting: halting is learned once answers become right (HRM/TRM init).
            self.q_head.weight.zero_()
            self.q_head.bias.fill_(-5.0)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``h (B, S, D)`` -> ``logits (B, seq_len, V)``, ``q_halt (B,)``, ``q_continue (B,)`` (fp32)."""
        logits = self.lm_head(h[:, self.puzzle_emb_len :])
        q = self.q_head(h[:, 0]).float()
        return logits, q[:, 0], q[:, 1]
