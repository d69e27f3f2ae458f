"""Returning freed heap memory to the OS (glibc malloc_trim) between phases."""
import ctypes
import ctypes.util

import pytest

from chita_ext import _malloc, scale_plan


def _glibc():
    try:
        return hasattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), "malloc_trim")
    except OSError:
        return False


@pytest.mark.skipif(not _glibc(), reason="malloc_trim is glibc's")
def test_freed_small_blocks_leave_the_rss():
    # many 64 KiB blocks (below the mmap threshold: heap memory) with a live block at the
    # top, so freeing the others leaves holes glibc keeps resident until trimmed
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size, count = 64 << 10, 4000  # 250 MiB
    blocks = []
    for _ in range(count):
        b = libc.malloc(size)
        ctypes.memset(b, 1, size)  # resident
        blocks.append(b)
    top = blocks.pop()
    for b in blocks:
        libc.free(b)
    before = scale_plan.current_rss()
    assert _malloc.release_free_memory()
    after = scale_plan.current_rss()
    libc.free(top)
    assert before - after > 150 << 20
