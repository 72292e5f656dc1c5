"""CPU threading for per-patch work: one BLAS thread per call, many calls in parallel.

Thousands of small per-patch matrix operations parallelize better across patches (threads
taking blocks of patches from one queue, each BLAS call single-threaded) than inside each
call, and the numpy/LAPACK calls used for them release the GIL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch
from threadpoolctl import threadpool_limits

T = TypeVar("T")


def single_blas_thread() -> threadpool_limits:
    """Context for thousands of small per-patch matrix products on the CPU.

    OpenBLAS threads each small product; with the cores busy elsewhere (another user's fit,
    the backbone of a second session) the per-call hand-offs made the d = 176 Gram 15x
    slower than one thread (11 s vs 0.6 s per batch, measured on the 2-core machine).
    """
    return threadpool_limits(limits=1, user_api="blas")


def default_workers() -> int:
    """As many worker threads as torch may use for its own CPU work."""
    return max(1, torch.get_num_threads())


def in_threads(work: Callable[[Iterable[T]], object], items: Sequence[T],
               workers: int) -> None:
    """Run ``work`` in ``workers`` threads that share ``items``: each call of ``work``
    iterates a common queue, taking the next item whenever it is ready, so a core slowed
    by other load does not hold the rest back. ``work`` may set up per-thread buffers
    before its loop. With one worker it runs here, on every item in order.
    """
    workers = min(workers, len(items))
    if workers <= 1:
        work(items)
        return
    queue = _SharedIterator(items)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(work, queue) for _ in range(workers)]:
            future.result()


class _SharedIterator(Iterator[T]):
    """One iterator that several threads can draw from."""

    def __init__(self, items: Iterable[T]) -> None:
        self._items = iter(items)
        self._lock = threading.Lock()

    def __next__(self) -> T:
        with self._lock:
            return next(self._items)


def patch_ranges(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous (lo, hi) ranges covering range(n), as equal as possible."""
    parts = max(1, min(parts, n))
    edges = [n * i // parts for i in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))
