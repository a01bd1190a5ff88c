"""TRM, the Tiny Recursive Model (Jolicoeur-Martineau 2025): one small network recursing on ``(y, z)``.

One supervision step runs ``T = h_cycles`` rounds; a round updates the latent ``n = l_cycles`` times and then
the answer once::

    z <- net(z + y + x)    (n times)
    y <- net(y + z)

Only the last round carries gradients (the first ``T - 1`` run under ``no_grad``); the answer ``y`` is decoded
by the heads. ``(y, z)`` start from fixed random vectors (buffers) and are carried, detached, across steps.

    from recursive_models import build_model
    model = build_model("trm", "7m", task="sudoku-extreme")    # 6.83M parameters (hidden 512, 2 layers)
"""

from __future__ import annotations

from typing import ClassVar

import torch

from recursive_models.base import ModelConfig, RecursiveModel, State
from recursive_models.registry import register_model


@register_model("trm")
class TRM(RecursiveModel):
    """Tiny Recursive Model; state ``(y, z)``, each ``(B, S, D)``."""

    # The reference sizes give the puzzle embedding TRM's 16 positions of which only the first is learned
    # (``puzzle_emb_len: 16``, ``puzzle_emb_ndim: hidden_size`` in TRM's arch config); tiny keeps one position.
    SIZES: ClassVar[dict[str, dict]] = {
        "tiny": {"hidden_size": 64, "num_heads": 4, "layers": 2, "h_cycles": 2, "l_cycles": 3, "halt_max_steps": 8},
        "7m": {"hidden_size": 512, "num_heads": 8, "layers": 2, "puzzle_emb_len": 16, "puzzle_emb_ndim": 512},
        "27m": {"hidden_size": 512, "num_heads": 8, "layers": 8, "puzzle_emb_len": 16, "puzzle_emb_ndim": 512},
    }
    TASK_ARCH: ClassVar[dict[str, dict]] = {
        "sudoku": {"h_cycles": 3, "l_cycles": 6},
        "maze": {"h_cycles": 3, "l_cycles": 4},
    }

    @classmethod
    def num_blocks(cls, config: ModelConfig) -> int:  # noqa: D102
        return config.layers

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.net = self.make_module(config.layers)
        self.make_init("y_init")
        self.make_init("z_init")

    def init_state(self, batch_size: int, device: torch.device) -> State:  # noqa: D102
        shape = (batch_size, self.positions, self.config.hidden_size)
        return self.y_init.to(device).expand(shape), self.z_init.to(device).expand(shape)

    def round(self, y: torch.Tensor, z: torch.Tensor, x: torch.Tensor, rope) -> tuple[torch.Tensor, torch.Tensor]:
        """One round: ``n`` latent updates then one answer update."""
        for _ in range(self.config.l_cycles):
            z = self.net(z, y + x, rope)
        y = self.net(y, z, rope)
        return y, z

    def step(self, state: State, x: torch.Tensor, rope, reset: torch.Tensor):  # noqa: D102
        state = self.reset_state(state, reset)
        y, z = state
        with torch.no_grad():
            for _ in range(self.config.h_cycles - 1):
                y, z = self.round(y, z, x, rope)
        y, z = self.round(y, z, x, rope)
        return (y, z), y, {}
