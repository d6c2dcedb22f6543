"""Flat resident memory under batches of changing shape (glibc's malloc).

glibc serves an allocation with mmap only above a threshold, and it raises that threshold to the size
of every mapped block that is freed (up to 32 MiB). Training and embedding allocate tensors of a new
shape at nearly every batch, so after a few steps every activation comes from the heap, whose free
space fragments and is seldom returned to the system. Measured (bench/steady_rss.py, tiny preset,
batches of 8,192 tokens and random lengths): anonymous memory climbs from 0.8 to 2.7 GB in 100 steps,
and holds 4-5 GB over a long run, for a 1.8M-parameter model. Fixing the threshold at glibc's initial
128 KiB stops the adjustment: large tensors are mapped and unmapped, and memory stays flat.

`steady_heap()` applies it once per process (the CLI entry point and the training loop call it). It
leaves the process alone where the allocator is not glibc, where the user set MALLOC_MMAP_THRESHOLD_
themselves, or under PROTLM_STEADY_HEAP=0.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
THRESHOLD = 128 * 1024
_applied: bool | None = None


def steady_heap() -> bool:
    """Fix glibc's mmap threshold (once); returns whether it is in force."""
    global _applied
    if _applied is None:
        _applied = False
        if (sys.platform.startswith("linux") and "MALLOC_MMAP_THRESHOLD_" not in os.environ
                and os.environ.get("PROTLM_STEADY_HEAP", "1") != "0"):  # fmt: skip
            try:
                libc = ctypes.CDLL(None)
                _applied = hasattr(libc, "gnu_get_libc_version") and libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD) == 1
            except (OSError, AttributeError):
                _applied = False
    return _applied
