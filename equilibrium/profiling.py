"""Memory accounting for tests and benchmarks: bytes saved for backward, and peak allocation.

Usage:

    with SavedTensorBytes() as saved:
        z, _ = fixed_point(f, z0, backward="phantom", max_iter=64)
    print(saved.bytes)                    # identical for max_iter=4 and 64: the paper's constant-memory claim

    peak = peak_allocated_bytes(lambda: solve(f, z0), device)   # CUDA allocator or CPU profiler
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from typing import Any

import torch

from equilibrium.solvers import release_workspace


class SavedTensorBytes:
    """Counts the bytes autograd saves for backward inside the ``with`` block.

    Storages are counted once each (by data pointer), so a parameter saved by every unrolled step counts
    once and the total measures activations. Uses `torch.autograd.graph.saved_tensors_hooks`.

    Attributes:
        bytes: total bytes of distinct storages saved.
        count: number of save events.
    """

    def __init__(self) -> None:
        self.bytes = 0
        self.count = 0
        self._seen: set[tuple[str, int]] = set()
        self._hooks: Any = None

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        self.count += 1
        storage = t.untyped_storage()
        key = (str(t.device), storage.data_ptr())
        if key not in self._seen:
            self._seen.add(key)
            self.bytes += storage.nbytes()
        return t

    def __enter__(self) -> SavedTensorBytes:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)


def peak_allocated_bytes(fn: Callable[[], Any], device: torch.device | str) -> tuple[int, Any]:
    """Peak bytes allocated while ``fn()`` runs, above what was allocated before it.

    CUDA: `torch.cuda.max_memory_allocated`. CPU: the torch profiler's memory events, so only tensor
    allocations made by torch count. The Anderson history kept between CPU solves is released first, so
    that its allocation inside ``fn`` is counted.

    Args:
        fn: the work to measure; its return value is passed through.
        device: where ``fn`` allocates.

    Returns:
        ``(peak_bytes, fn())``.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        out = fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base, out
    from torch.profiler import ProfilerActivity, profile

    release_workspace()

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        with open(path) as fh:
            events = json.load(fh)["traceEvents"]
    finally:
        os.unlink(path)
    mem = sorted((e for e in events if e.get("name") == "[memory]"), key=lambda e: e["ts"])
    if not mem:
        return 0, out
    # "Total Allocated" counts every allocation and free seen while some profiler was on, so it drifts when
    # memory allocated under an earlier profile is freed outside one; the baseline is the total just before
    # the first event here.
    base = mem[0]["args"]["Total Allocated"] - mem[0]["args"]["Bytes"]
    return max(0, max(e["args"]["Total Allocated"] for e in mem) - base), out
