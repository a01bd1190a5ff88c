"""Attractor-TRM ("Solve the Loop", 2026): a backbone proposal refined to a fixed point by a small attractor.

The backbone proposes the answer embedding; a weight-tied attractor module refines ``(y, z)`` to a fixed point
found by Anderson, differentiated implicitly.

One supervision step::

    p = backbone(x)                                    # non-recurrent proposal, (B, S, D)
    f(y, z) = (A(y + z'), z')  with  z' = A(z + y + p)  # TRM's round, the proposal injected every iteration
    (y*, z*) = fixed_point(f, (y0, z0))                # equilibrium.fixed_point: Anderson forward,
                                                       # phantom (default) / one-step / IFT backward

The solve is warm-started from the previous supervision step's ``(y, z)``; at step zero ``y0 = p`` (the
learned proposal) and ``z0`` is a fixed random vector. Training memory is that of the backward mode's short
graph, independent of ``solver.max_iter``. With ``solver.max_iter=0`` the solve is skipped and the warm start
is decoded: at step zero that is the backbone's proposal alone (the paper's equilibrium-internalization test).

    from recursive_models import build_model
    model = build_model("attractor", "27m", task="sudoku-extreme", solver={"max_iter": 12})
"""

from __future__ import annotations

from typing import ClassVar

import torch

from equilibrium import fixed_point
from recursive_models.base import ModelConfig, RecursiveModel, State, _where_rows
from recursive_models.registry import register_model


@register_model("attractor")
class AttractorTRM(RecursiveModel):
    """Backbone + weight-tied attractor; state ``(y, z)``, each ``(B, S, D)``; logs solver steps and residuals."""

    SIZES: ClassVar[dict[str, dict]] = {
        "tiny": {
            "hidden_size": 64,
            "num_heads": 4,
            "backbone_layers": 2,
            "layers": 2,
            "halt_max_steps": 8,
            "solver": {"max_iter": 6, "phantom_steps": 2},
        },
        "7m": {"hidden_size": 512, "num_heads": 8, "backbone_layers": 1, "layers": 1},
        "27m": {"hidden_size": 512, "num_heads": 8, "backbone_layers": 6, "layers": 2},
    }
    TASK_ARCH: ClassVar[dict[str, dict]] = {}

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        if config.backbone_layers < 1 or config.layers < 1:
            raise ValueError("the Attractor model needs backbone_layers >= 1 and layers >= 1")
        self.backbone = self.make_module(config.backbone_layers)
        self.attractor = self.make_module(config.layers)
        self.make_init("z_init")

    def init_state(self, batch_size: int, device: torch.device) -> State:  # noqa: D102
        shape = (batch_size, self.positions, self.config.hidden_size)
        # y's initial value is the proposal, filled in by `step`; zeros here only give the carry its shape.
        return torch.zeros(shape, device=device), self.z_init.to(device).expand(shape)

    def step(self, state: State, x: torch.Tensor, rope, reset: torch.Tensor):  # noqa: D102
        s = self.config.solver
        p = self.backbone(x, None, rope)  # (B, S, D) proposal
        y0, z0 = state
        y0 = _where_rows(reset, p.detach().to(y0.dtype), y0)
        z0 = _where_rows(reset, self.z_init.to(z0.dtype).expand_as(z0), z0)
        b = x.shape[0]
        if s.max_iter == 0:
            # Decode the warm start directly; at step zero it is `p` itself, so keep p's graph.
            y = torch.where(reset.view(-1, 1, 1), p.to(y0.dtype), y0)
            zeros = torch.zeros(b, device=x.device)
            return (y0, z0), y, {"solver_nstep": zeros, "solver_residual": zeros}

        def f(state: State) -> State:
            y, z = state
            z = self.attractor(z, y + p, rope).to(z0.dtype)
            y = self.attractor(y, z, rope).to(y0.dtype)
            return y, z

        (y, z), stats = fixed_point(
            f,
            (y0, z0),
            backward=s.backward,
            phantom_steps=s.phantom_steps,
            phantom_tau=s.phantom_tau,
            ift_max_iter=s.ift_max_iter,
            ift_tol=s.ift_tol,
            method=s.method,
            max_iter=s.max_iter,
            min_iter=s.min_iter,
            tol=s.tol,
            stop_mode=s.stop_mode,
            m=s.m,
            beta=s.beta,
        )
        info = {"solver_nstep": stats.nstep.float(), "solver_residual": stats.residual.float()}
        return (y, z), y, info
