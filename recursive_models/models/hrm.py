"""HRM, the Hierarchical Reasoning Model (Wang et al. 2025): a slow high-level and a fast low-level module.

One supervision step runs ``h_cycles`` high-level cycles of ``l_cycles`` low-level updates::

    zL <- L(zL + zH + x)   (l_cycles times per high-level cycle)
    zH <- H(zH + zL)

with the one-step gradient approximation: everything but the final ``zL`` and ``zH`` updates runs without a
graph. Halting uses the Q-learning continue head (``act_continue=True``).

    from recursive_models import build_model
    model = build_model("hrm", "27m", task="sudoku-extreme")   # 27.28M parameters (4 + 4 layers, hidden 512)
"""

from __future__ import annotations

from typing import ClassVar

import torch

from recursive_models.base import ModelConfig, RecursiveModel, State
from recursive_models.registry import register_model


@register_model("hrm")
class HRM(RecursiveModel):
    """Hierarchical Reasoning Model; state ``(zH, zL)``, each ``(B, S, D)``."""

    SIZES: ClassVar[dict[str, dict]] = {
        "tiny": {
            "hidden_size": 64,
            "num_heads": 4,
            "layers": 1,
            "h_layers": 1,
            "h_cycles": 2,
            "l_cycles": 2,
            "halt_max_steps": 8,
            "act_continue": True,
        },
        # Not a published HRM size: HRM's 27m recipe with one layer per module (2 blocks, like TRM 7m), so that
        # 7M sweeps (`-m model=hrm,trm,... size=7m`) compare like with like.
        "7m": {
            "hidden_size": 512,
            "num_heads": 8,
            "layers": 1,
            "h_layers": 1,
            "h_cycles": 2,
            "l_cycles": 2,
            "act_continue": True,
        },
        "27m": {
            "hidden_size": 512,
            "num_heads": 8,
            "layers": 4,
            "h_layers": 4,
            "h_cycles": 2,
            "l_cycles": 2,
            "act_continue": True,
        },
    }
    TASK_ARCH: ClassVar[dict[str, dict]] = {}

    @classmethod
    def num_blocks(cls, config: ModelConfig) -> int:  # noqa: D102
        return config.h_layers + config.layers

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        if config.h_layers < 1 or config.layers < 1:
            raise ValueError("HRM needs h_layers >= 1 and layers >= 1")
        self.h_module = self.make_module(config.h_layers)
        self.l_module = self.make_module(config.layers)
        self.make_init("zh_init")
        self.make_init("zl_init")

    def init_state(self, batch_size: int, device: torch.device) -> State:  # noqa: D102
        shape = (batch_size, self.positions, self.config.hidden_size)
        return self.zh_init.to(device).expand(shape), self.zl_init.to(device).expand(shape)

    def step(self, state: State, x: torch.Tensor, rope, reset: torch.Tensor):  # noqa: D102
        state = self.reset_state(state, reset)
        c = self.config
        zh, zl = state
        with torch.no_grad():
            for h in range(c.h_cycles):
                for ll in range(c.l_cycles):
                    if h == c.h_cycles - 1 and ll == c.l_cycles - 1:
                        break
                    zl = self.l_module(zl, zh + x, rope)
                if h < c.h_cycles - 1:
                    zh = self.h_module(zh, zl, rope)
        # One-step gradient: only the last low- and high-level updates are differentiated.
        zl = self.l_module(zl, zh + x, rope)
        zh = self.h_module(zh, zl, rope)
        return (zh, zl), zh, {}
