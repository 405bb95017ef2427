"""The process's memory allocator while latency is timed.

Both the latency tables (:mod:`prunekit.latency.timing`) and the evaluation's latency
(``latency_ms``, ``speedup`` of ``result.json``) are timed with the allocator made
steady, so that a predictor fitted on the tables is checked against measurements taken
under the same allocator; ``result.json`` records which one was in effect
(``latency_allocator``), as the latency cache key does (``allocator``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

#: glibc ``mallopt`` parameters (malloc.h) and the value both are fixed to
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
STEADY_BYTES = 1 << 30
_steady: bool | None = None


def steady_allocator() -> bool:
    """Fix glibc's mmap and trim thresholds (``mallopt``) for this process, once, so
    that the megabyte-sized tensors of a forward are reused from the heap instead of
    being returned to the kernel and faulted in again on the next call. Without it, a
    ResNet-20 conv at batch 64 (28x28 maps) ran at 3.3-3.8 ms per call or at 9.2-10.4 ms
    with 2,046-2,320 minor page faults and 3.9-7.3 ms of system time per call (which the
    thread clock counts), depending on the allocator's state left by earlier
    allocations -- so table entries jumped between two levels from one loop to the next
    (benchmarks/results/latency_predictor.md). The cost: memory freed by this process
    is no longer given back to the kernel. Returns whether it took effect (False off
    glibc, e.g. macOS or musl)."""
    global _steady
    if _steady is None:
        _steady = False
        if platform.system() == "Linux":
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                _steady = (
                    libc.mallopt(_M_MMAP_THRESHOLD, STEADY_BYTES) == 1
                    and libc.mallopt(_M_TRIM_THRESHOLD, STEADY_BYTES) == 1
                )
            except (OSError, AttributeError):
                pass
    return _steady


def allocator_in_effect() -> str:
    """Make the allocator steady (:func:`steady_allocator`, once) and name the one in
    effect: ``"steady"``, or ``"default"`` where it cannot be set (off glibc)."""
    return "steady" if steady_allocator() else "default"
