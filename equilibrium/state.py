"""Packing of solver states: a tensor ``(B, ...)`` or a tuple of them, as one ``(B, D)`` matrix.

Solvers work on a single ``(B, D)`` buffer so that Anderson's history, the residual norms and the
per-sample freezing are written once for every kind of state. A TRM-style state ``(y, z)`` with
``y: (B, L, H)`` and ``z: (B, L, H)`` becomes ``(B, 2·L·H)``; a single tensor is only viewed, never copied
(when it is contiguous).

    packer = StatePacker((y0, z0))
    x0 = packer.flatten((y0, z0))          # (B, D)
    f_flat = packer.wrap(f)                 # (B, D) -> (B, D)
    y, z = packer.unflatten(x)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

State = torch.Tensor | tuple[torch.Tensor, ...]


class StatePacker:
    """Flattens a state (tensor or tuple of tensors sharing batch size, dtype and device) to ``(B, D)``.

    Args:
        z0: the initial state; it fixes the layout for ``flatten``, ``unflatten`` and ``wrap``.

    Raises:
        TypeError: if ``z0`` is neither a tensor nor a non-empty tuple/list of tensors.
        ValueError: if the parts disagree in batch size, dtype or device, or a part has no batch dim.
    """

    def __init__(self, z0: State | Sequence[torch.Tensor]):
        if isinstance(z0, torch.Tensor):
            parts: tuple[torch.Tensor, ...] = (z0,)
            self.is_tuple = False
        elif isinstance(z0, (tuple, list)) and len(z0) > 0 and all(isinstance(p, torch.Tensor) for p in z0):
            parts = tuple(z0)
            self.is_tuple = True
        else:
            raise TypeError(f"state must be a tensor or a non-empty tuple of tensors, got {type(z0).__name__}")
        if any(p.ndim < 1 for p in parts):
            raise ValueError("every state tensor needs a leading batch dimension")
        self.batch = parts[0].shape[0]
        self.dtype = parts[0].dtype
        self.device = parts[0].device
        for p in parts:
            if p.shape[0] != self.batch or p.dtype != self.dtype or p.device != self.device:
                raise ValueError(
                    "tuple state parts must share batch size, dtype and device; got "
                    + ", ".join(f"{tuple(q.shape)}/{q.dtype}/{q.device}" for q in parts)
                )
        self.shapes = [tuple(p.shape[1:]) for p in parts]
        self.numels = [int(torch.Size(s).numel()) for s in self.shapes]
        self.dim = sum(self.numels)
        # Column ranges of each part inside the flat (B, D) matrix.
        self.bounds: list[tuple[int, int]] = []
        start = 0
        for n in self.numels:
            self.bounds.append((start, start + n))
            start += n

    def flatten(self, z: State | Sequence[torch.Tensor]) -> torch.Tensor:
        """Pack a state into ``(B, D)`` (a view for a contiguous single tensor)."""
        if not self.is_tuple:
            if not isinstance(z, torch.Tensor) or tuple(z.shape[1:]) != self.shapes[0]:
                raise ValueError(f"expected a state of shape (B, *{self.shapes[0]}), got {_describe(z)}")
            return z.reshape(z.shape[0], self.dim)
        if not isinstance(z, (tuple, list)) or [tuple(p.shape[1:]) for p in z] != self.shapes:
            raise ValueError(f"expected a tuple state of shapes {self.shapes} after the batch dim, got {_describe(z)}")
        return torch.cat([p.reshape(p.shape[0], -1) for p in z], dim=1)

    def unflatten(self, x: torch.Tensor) -> State:
        """Inverse of `flatten`: views into ``x`` (B, D)."""
        b = x.shape[0]
        if not self.is_tuple:
            return x.reshape(b, *self.shapes[0])
        return tuple(x[:, s:e].reshape(b, *shape) for (s, e), shape in zip(self.bounds, self.shapes, strict=True))

    def wrap(self, f: Callable[[State], State]) -> Callable[[torch.Tensor], torch.Tensor]:
        """Turn ``f`` on states into ``f_flat`` on ``(B, D)``; its output is cast to the state dtype.

        The cast matters under autocast: ``f`` may return bf16 while the state (and Anderson's history)
        stays in the dtype of ``z0``.
        """

        def f_flat(x: torch.Tensor) -> torch.Tensor:
            fx = self.flatten(f(self.unflatten(x)))
            return fx if fx.dtype == self.dtype else fx.to(self.dtype)

        return f_flat

    def token_views(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Views ``(B, T, -1)`` of each part of ``x`` (B, D), for per-token residuals.

        Raises:
            ValueError: if the parts have no token dim or disagree on the number of tokens ``T``.
        """
        tokens = {s[0] if len(s) >= 1 else None for s in self.shapes}
        if len(tokens) != 1 or None in tokens:
            raise ValueError(f"per_token needs every state part shaped (B, T, ...) with one T, got {self.shapes}")
        t = tokens.pop()
        return [x[:, s:e].view(x.shape[0], t, -1) for s, e in self.bounds]


def _describe(z: object) -> str:
    if isinstance(z, torch.Tensor):
        return f"tensor {tuple(z.shape)}"
    if isinstance(z, (tuple, list)):
        return "(" + ", ".join(_describe(p) for p in z) + ")"
    return type(z).__name__
