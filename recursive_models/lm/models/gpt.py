"""GPT: the decoder-only Transformer baseline of the LM track (``n_layers`` pre-norm blocks, tied head).

``logits = ln_f(blocks(wte[idx])) @ Wembᵀ`` with the authors' block settings (`layers.AUTHORS_BLOCKS`, their
``gpt-small-140m.py``: learned RMSNorm gains, 0.5·ReLU², QK-norm, rotary base 50000, scaled-zero orthogonal init,
no softcap), so that it differs from the Attractor LM only in what the paper compares. Their GPT also adds
nanochat's value embeddings (a ``V × D`` table mixed into the values of every other block, e.g. ~75M of their
140M parameters); ours has none, as their Attractor has none. The nanochat blocks of this suite's first version
are the overrides ``norm_weight=false embed_norm=true mlp_act_scale=1 rope_base=10000 logit_softcap=15
init=lecun init_orthogonal=false``. It has no recurrence: ``iters`` is accepted for a uniform interface and
ignored.

    from recursive_models.lm.registry import build_lm
    model = build_lm("gpt", "tiny")                       # 4 blocks, d_model 128
    out = model(idx, targets)                             # idx (B, T) int64 -> out["logits"] (B, T, V), out["loss"]
"""

from __future__ import annotations

import torch

from recursive_models.lm.layers import AUTHORS_BLOCKS, LanguageModel
from recursive_models.lm.registry import LMConfig, register_lm_model


@register_lm_model("gpt")
class GPT(LanguageModel):
    """``n_layers`` blocks between the tied embedding and the tied unembedding."""

    DEFAULTS = dict(AUTHORS_BLOCKS)  # noqa: RUF012

    @staticmethod
    def layer_split(n_layers: int) -> dict[str, int]:  # noqa: D102 -- every block is a plain layer
        return {"n_prelude": 0, "n_core": 0, "n_coda": 0}

    def __init__(self, config: LMConfig):
        super().__init__(config)
        self.blocks = self.make_blocks(config.n_layers)
        self.init_weights()

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, *, iters: int | None = None) -> dict:
        """Logits ``(B, T, V)``, loss and ``depth`` (= n_layers); ``iters`` is ignored (no recurrence)."""
        h = self.blocks(self.embed(idx), self.rope())  # (B, T, D)
        return self.output(self.decode(h), targets, depth=float(self.config.n_layers))
