"""Hand freed heap memory back to the OS between the long phases of a large prune().

glibc keeps memory freed by one phase in its arenas (one per thread that allocated)
unless it sits at the top of the heap: after the gradient pass or a block pass, gigabytes
of freed activations and block batches can stay resident and add to the next phase's
peak RSS. ``malloc_trim(0)`` returns those free pages (madvise), at a cost of milliseconds.
A no-op where the C library has no ``malloc_trim`` (not glibc).
"""
from __future__ import annotations

import ctypes
import ctypes.util

_trim = None


def _load():
    global _trim
    if _trim is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _trim = libc.malloc_trim
            _trim.argtypes, _trim.restype = [ctypes.c_size_t], ctypes.c_int
        except (OSError, AttributeError):
            _trim = False
    return _trim


def release_free_memory() -> bool:
    """Return the heap's free pages to the OS; True when the C library could do it."""
    trim = _load()
    if not trim:
        return False
    trim(0)
    return True
