"""Flat resident memory under batches of changing shape (glibc's malloc).

Training and embedding allocate tensors of a new shape at nearly every batch. glibc raises its mmap
threshold to the size of every mapped block that is freed, so after a few steps activations come from
the heap, whose free space fragments and is seldom given back. Measured (bench/steady_rss.py, tiny
preset, 8,192 tokens per batch): anonymous memory climbs from 0.8 to 2.7 GB in 100 steps of random
lengths, and held 4-5 GB over a long Swiss-Prot run, for a 1.8M-parameter model.

`HeapTrim` hands the free pages back: `malloc_trim(0)` every `every` steps (it releases free memory
inside every arena, not only at the top of the heap). Over 2,000 Swiss-Prot steps the floor of anonymous
memory stayed at 0.38-0.41 GB (without: it climbed to 4.2 GB), for 0.97x the tokens/s (within this
machine's noise; bench/RESULTS.md). Fixing the mmap threshold instead (mallopt) also kept memory flat,
but cost 28% of training throughput here (every large tensor mapped and page-faulted afresh), so it is
not used.

It does nothing where the allocator is not glibc, or under PROTLM_STEADY_HEAP=0.
"""

from __future__ import annotations

import ctypes
import os
import sys


def _malloc_trim():
    """glibc's malloc_trim, or None."""
    if not sys.platform.startswith("linux") or os.environ.get("PROTLM_STEADY_HEAP", "1") == "0":
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc.malloc_trim if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "malloc_trim") else None


class HeapTrim:
    """Call `step()` once per training step or batch; every `every` calls the free heap goes back."""

    def __init__(self, every: int = 10, enabled: bool = True):
        self.every, self.calls, self._trim = every, 0, _malloc_trim() if enabled else None

    @property
    def active(self) -> bool:
        return self._trim is not None

    def step(self) -> None:
        self.calls += 1
        if self._trim is not None and self.calls % self.every == 0:
            self._trim(0)
