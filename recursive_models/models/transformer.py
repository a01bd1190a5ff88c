"""The Transformer baseline: the same blocks applied once, no recursion and no latent carry.

``h = blocks(x)``, decoded by the same heads. With ``halt_max_steps=1`` (all sizes) one supervision step is
the whole computation, so it is a plain encoder-only Transformer of ``layers`` blocks trained on the same
data, loss and optimiser as the recursive models.

    from recursive_models import build_model
    model = build_model("transformer", "27m", task="sudoku-extreme")   # 8 layers, hidden 512
"""

from __future__ import annotations

from typing import ClassVar

import torch

from recursive_models.base import ModelConfig, RecursiveModel, State
from recursive_models.registry import register_model


@register_model("transformer")
class Transformer(RecursiveModel):
    """Non-recurrent encoder; its state is empty."""

    SIZES: ClassVar[dict[str, dict]] = {
        "tiny": {"hidden_size": 64, "num_heads": 4, "layers": 4, "halt_max_steps": 1},
        "7m": {"hidden_size": 512, "num_heads": 8, "layers": 2, "halt_max_steps": 1},
        "27m": {"hidden_size": 512, "num_heads": 8, "layers": 8, "halt_max_steps": 1},
    }
    TASK_ARCH: ClassVar[dict[str, dict]] = {}

    @classmethod
    def num_blocks(cls, config: ModelConfig) -> int:  # noqa: D102
        return config.layers

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.net = self.make_module(config.layers)

    def init_state(self, batch_size: int, device: torch.device) -> State:  # noqa: D102
        return ()

    def step(self, state: State, x: torch.Tensor, rope, reset: torch.Tensor):  # noqa: D102
        return (), self.net(x, None, rope), {}
