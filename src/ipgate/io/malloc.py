"""glibc malloc tuning for the live gateway's buffers.

Each TCP super-packet (GRO, up to 64 KB) passes through a few Python
`bytes` of its size, allocated and freed thousands of times a second.  With
glibc's default M_TRIM_THRESHOLD (128 KB, mallopt(3)) freeing them often
leaves enough at the top of the heap to give back with sbrk(), and the next
allocation faults the pages in again: measured here, that cost a third of
the gateway's TCP throughput (bench/live.py).  Keeping up to TRIM bytes of
freed heap avoids it, for a bounded amount of resident memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1  # malloc.h
TRIM = 16 << 20


def keep_freed_heap(nbytes: int = TRIM) -> bool:
    """mallopt(M_TRIM_THRESHOLD, nbytes); False where the C library has no mallopt (not glibc)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_TRIM_THRESHOLD, nbytes))
