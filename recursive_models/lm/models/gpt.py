"""GPT: the decoder-only Transformer baseline of the LM track (``n_layers`` pre-norm blocks, tied head).

``logits = softcap(norm(blocks(norm(wte[idx]))) @ Wembᵀ)``. It has no recurrence: ``iters`` is accepted for a
uniform interface and ignored.

    from recursive_models.lm.registry import build_lm
    model = build_lm("gpt", "tiny")                       # 4 blocks, d_model 128
    out = model(idx, targets)                             # idx (B, T) int64 -> out["logits"] (B, T, V), out["loss"]
"""

from __future__ import annotations

import torch

from recursive_models.lm.layers import LanguageModel
from recursive_models.lm.registry import LMConfig, register_lm_model


@register_lm_model("gpt")
class GPT(LanguageModel):
    """``n_layers`` blocks between the tied embedding and the tied unembedding."""

    @staticmethod
    def layer_split(n_layers: int) -> dict[str, int]:  # noqa: D102 -- every block is a plain layer
        return {"n_prelude": 0, "n_core": 0, "n_coda": 0}

    def __init__(self, config: LMConfig):
        super().__init__(config)
        self.blocks = self.make_blocks(config.n_layers)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, *, iters: int | None = None) -> dict:
        """Logits ``(B, T, V)``, loss and ``depth`` (= n_layers); ``iters`` is ignored (no recurrence)."""
        h = self.blocks(self.embed(idx), self.rope())  # (B, T, D)
        return self.output(self.decode(h), targets, depth=float(self.config.n_layers))
