"""Shared-queue thread helper: every item exactly once, errors reach the caller."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from padim_core.threads import in_threads, patch_ranges


@pytest.mark.parametrize("workers", [1, 2, 5])
def test_every_item_is_done_once_by_some_thread(workers: int) -> None:
    done: list[tuple[int, int]] = []
    lock = threading.Lock()

    def work(items) -> None:
        me = threading.get_ident()
        for i in items:
            time.sleep(0.002 if i % 3 == 0 else 0)       # uneven items
            with lock:
                done.append((i, me))

    in_threads(work, list(range(40)), workers)
    assert Counter(i for i, _ in done) == Counter(range(40))
    assert len({t for _, t in done}) <= workers


def test_a_slow_worker_does_not_hold_its_share() -> None:
    # The first item stalls one thread; the other takes everything else meanwhile.
    by_thread: Counter[int] = Counter()
    lock = threading.Lock()

    def work(items) -> None:
        for i in items:
            if i == 0:
                time.sleep(0.3)
            with lock:
                by_thread[threading.get_ident()] += 1

    in_threads(work, list(range(20)), 2)
    assert sorted(by_thread.values()) == [1, 19]


def test_errors_reach_the_caller() -> None:
    def work(items) -> None:
        for i in items:
            if i == 7:
                raise ValueError("item 7")

    with pytest.raises(ValueError, match="item 7"):
        in_threads(work, list(range(10)), 3)


def test_patch_ranges_cover_without_overlap() -> None:
    ranges = patch_ranges(3136, 16)
    assert ranges[0][0] == 0 and ranges[-1][1] == 3136
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    assert max(h - lo for lo, h in ranges) - min(h - lo for lo, h in ranges) <= 1
