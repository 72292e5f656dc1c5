"""Where memory comes from: glibc malloc tuned for reuse, big arrays on their own pages.

With glibc's defaults every allocation above the mmap threshold (at most 32 MB) gets fresh
pages from the kernel and gives them back when freed. torch's CPU activations for a batch
of 32 images are such allocations, so every forward pass page-faults them in again: on the
2-core VM EfficientNet-Lite0 over 213 images took 2.7 million page faults and spent half of
its 6.2 s in the kernel, against 2.6 s with freed memory kept for reuse.

``keep_freed_memory()`` raises the mmap and trim thresholds (freed blocks stay in the heap
and are reused) and limits malloc to one arena, so threads started afterwards share that
heap (a thread's own arena hands big blocks back to the kernel just the same). The price:
the process keeps its high-water mark instead of returning memory to the system.

Called by the entry points (CLI, app, benchmark), never on import: it changes the whole
process. A thread that already allocated keeps its own arena, which is why ``make run``
also starts Streamlit with ``ENVIRONMENT``, the same settings as environment variables.

The engine's biggest arrays do not go through malloc: ``page_backed`` maps them directly, so
their pages are committed on first write and return to the system the moment they are freed.
Without that, a heap that keeps freed memory would hold the Wide-ResNet sums (3.8 GB) and the
whitener (3.8 GB) at the same time, and 220 MB embedding batches fragment it. Arrays under
``PAGE_BACKED_BYTES`` (see ``large_empty``) stay on the heap on purpose: a fresh map costs a
page fault per 4 KiB (this VM grants no huge pages), 27 ms for 40 MB against 5 ms for reused
heap memory.
"""

from __future__ import annotations

import ctypes
import mmap
import sys
from typing import Any

import numpy as np

MMAP_THRESHOLD = 256 << 20   # above the largest activation of a batch of 32 (154 MB, Lite0)
TRIM_THRESHOLD = 1 << 30
ENVIRONMENT = {"MALLOC_ARENA_MAX": "1",
               "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD),
               "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD)}

PAGE_BACKED_BYTES = 128 << 20   # ``large_empty`` maps arrays from this size on

_M_TRIM_THRESHOLD = -1    # mallopt parameter numbers from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def _glibc_function(name: str, argtypes: list[Any]) -> Any:
    """glibc's ``name`` as a ctypes function returning int, or None where libc is not glibc.

    (Checked by symbol, not ``platform.libc_ver()``, which reads the interpreter's binary: the
    app calls ``keep_freed_memory`` on every rerun.)
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, name):
        return None
    function = getattr(libc, name)
    function.argtypes, function.restype = argtypes, ctypes.c_int
    return function


def _nbytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


def keep_freed_memory() -> bool:
    """Apply the settings to this process; False where the C library is not glibc."""
    mallopt = _glibc_function("mallopt", [ctypes.c_int, ctypes.c_int])
    if mallopt is None:
        return False
    done = [mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
            mallopt(_M_ARENA_MAX, 1)]
    return all(done)


def release_free_memory() -> bool:
    """Hand the heap's free memory back to the system now (glibc ``malloc_trim``).

    For the big-memory case (packed sums, d = 550): between batches, so the heap kept for
    reuse does not add fragmentation on top of the gigabytes of sums. False where not glibc.
    """
    trim = _glibc_function("malloc_trim", [ctypes.c_size_t])
    if trim is None:
        return False
    trim(0)
    return True


def page_backed(shape: tuple[int, ...], dtype: np.dtype | type = np.float64) -> np.ndarray:
    """A zero-filled array on its own anonymous memory map (not the malloc heap).

    Pages are committed on first write and go back to the system as soon as the array and
    its views are garbage, whatever malloc keeps for reuse. Huge pages are asked for, as
    numpy does for its own large arrays.
    """
    dtype = np.dtype(dtype)
    nbytes = _nbytes(shape, dtype)
    if nbytes == 0:
        return np.zeros(shape, dtype)
    buf = mmap.mmap(-1, nbytes)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        buf.madvise(mmap.MADV_HUGEPAGE)
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


def large_empty(shape: tuple[int, ...], dtype: np.dtype | type = np.float64) -> np.ndarray:
    """An array the caller fills completely: ``page_backed`` from ``PAGE_BACKED_BYTES`` on,
    else uninitialized heap memory (no zeroing pass on the per-batch path)."""
    dtype = np.dtype(dtype)
    if _nbytes(shape, dtype) >= PAGE_BACKED_BYTES:
        return page_backed(shape, dtype)
    return np.empty(shape, dtype)
