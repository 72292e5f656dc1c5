"""CPU threading for per-patch work: one BLAS thread per call, many calls in parallel.

Thousands of small per-patch matrix operations parallelize better across patches (each
thread its own share, each BLAS call single-threaded) than inside each call, and the
numpy/LAPACK calls used for them release the GIL.
"""

from __future__ import annotations

from collections.abc import Callable
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


def in_threads(work: Callable[[list[T]], object], items: list[T], workers: int) -> None:
    """Run ``work`` on ``workers`` interleaved shares of ``items``, in threads when > 1."""
    workers = min(workers, len(items))
    if workers <= 1:
        work(items)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(work, [items[w::workers] for w in range(workers)]))


def patch_ranges(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous (lo, hi) ranges covering range(n), as equal as possible."""
    parts = max(1, min(parts, n))
    edges = [n * i // parts for i in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))
