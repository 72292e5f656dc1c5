"""Decoding image batches in worker threads, the next batch while the model runs the current.

Pillow's decoders and OpenCV's resize release the GIL, so a few threads turn files (or bytes,
arrays, PIL images) into resized, centre-cropped uint8 batches in parallel with the backbone,
instead of the model waiting for one image after another. The results are those of decoding
the inputs one by one: the same functions (``images.load_image``, ``images.resize_and_crop``),
byte-equal crops, in input order; an unreadable input is skipped and listed with its
``InvalidInputError`` problem. At most ``batch_size × (1 + prefetch)`` inputs are decoded ahead
of the consumer, so memory stays bounded on any number of files. Stopping early (``break``, an
exception in the consumer) cancels what is queued and waits only for the images being decoded.

For a CUDA model each batch is stacked into pinned (page-locked) host memory, so the
backbone's ``.to(device, non_blocking=True)`` copies it asynchronously.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image

from .errors import InvalidInputError
from .images import file_sha256, input_name, load_image, resize_and_crop

T = TypeVar("T")
R = TypeVar("R")

#: Most decoding threads chosen by default: past this, decoding 256² files outruns a GPU.
MAX_DEFAULT_WORKERS = 8
THREAD_PREFIX = "padim-decode"


def default_decode_workers() -> int:
    """Decoding threads when none are given: one per core, at most MAX_DEFAULT_WORKERS."""
    return max(1, min(MAX_DEFAULT_WORKERS, os.cpu_count() or 1))


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int,
                ahead: int) -> Iterator[R]:
    """``fn(item)`` for every item, in input order, computed by ``workers`` threads at most
    ``ahead`` items before the consumer asks for them (a bounded queue of futures).

    ``workers`` < 1 computes each item when it is asked for, here (the sequential path).
    An exception of ``fn`` is raised at its item's position. Closing the iterator (or
    dropping it) cancels the queued items and joins the threads.
    """
    if workers < 1:
        yield from map(fn, items)
        return
    source = iter(items)
    pending: deque[Future[R]] = deque()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=THREAD_PREFIX)
    try:
        pending.extend(pool.submit(fn, item) for item in islice(source, max(1, ahead)))
        while pending:
            result = pending.popleft().result()
            pending.extend(pool.submit(fn, item) for item in islice(source, 1))
            yield result
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class DecodedBatch:
    """One batch of readable inputs: their positions, names and crops, and the unreadable ones.

    ``crops`` (numpy) and ``pixels`` (torch) are the same (b, crop, crop, 3) uint8 memory,
    pinned when the batch was decoded for a CUDA model. ``digests``: the SHA-256 of each
    readable input's file bytes (None for arrays), when asked for; else empty.
    """

    indices: list[int]
    names: list[str]
    crops: np.ndarray
    pixels: torch.Tensor
    skipped: list[tuple[str, str]] = field(default_factory=list)
    digests: list[str | None] = field(default_factory=list)


def decode_crop(source: Any, name: str, image_size: int, crop: int,
                resize: str = "stretch") -> np.ndarray | str:
    """One input as a (crop, crop, 3) uint8 array, or the problem that makes it unreadable."""
    try:
        return resize_and_crop(load_image(source, name), image_size, crop, resize)
    except InvalidInputError as err:
        return err.problem


def _repeats_stateful_source(images: Sequence[Any]) -> bool:
    """True if one open stream or PIL image object is given more than once: decoding it
    seeks or loads it, which two threads must not do at the same time."""
    seen: set[int] = set()
    for source in images:
        if isinstance(source, Image.Image) or (hasattr(source, "read")
                                               and not hasattr(source, "getvalue")):
            if id(source) in seen:
                return True
            seen.add(id(source))
    return False


def _stacked(crops: list[np.ndarray], crop: int, pin: bool) -> tuple[np.ndarray, torch.Tensor]:
    """``crops`` in one (b, crop, crop, 3) uint8 tensor (pinned when ``pin``) and its numpy view."""
    pixels = torch.empty((len(crops), crop, crop, 3), dtype=torch.uint8, pin_memory=pin)
    array = pixels.numpy()
    if crops:
        np.stack(crops, out=array)
    return array, pixels


def decode_batches(images: Sequence[Any], names: Sequence[str] | None, image_size: int,
                   crop: int, batch_size: int, workers: int | None = None,
                   prefetch: int = 1, pin_memory: bool = False,
                   resize: str = "stretch", digests: bool = False) -> Iterator[DecodedBatch]:
    """``images`` decoded, resized and cropped in batches of ``batch_size`` inputs.

    ``workers`` threads decode (None: ``default_decode_workers()``; 0: one after another,
    here), up to ``prefetch`` batches ahead of the consumer; a single input, or arrays
    only, are cropped here without threads. ``names`` (one per image) name
    the inputs in ``skipped``; else ``images.input_name``. ``pin_memory`` stacks the batches
    in pinned memory when CUDA is present (ignored otherwise). ``resize`` is
    ``images.resize_and_crop``'s (stretch or letterbox). ``digests``: also hash each
    readable input's bytes (``images.file_sha256``) on the decoding threads, for fit's
    record of the files it learned.
    """
    workers = default_decode_workers() if workers is None else max(0, int(workers))
    workers = min(workers, len(images)) if len(images) > 1 else 0   # one image: no threads
    if all(isinstance(source, np.ndarray) for source in images):
        workers = 0      # decoded already: the crop costs less than starting threads
    if workers and _repeats_stateful_source(images):
        workers = 0
    pin = bool(pin_memory) and torch.cuda.is_available()
    labels = [names[i] if names is not None else input_name(images[i], i)
              for i in range(len(images))]

    def work(i: int) -> tuple[np.ndarray | str, str | None]:
        out = decode_crop(images[i], labels[i], image_size, crop, resize)
        return out, (file_sha256(images[i]) if digests and not isinstance(out, str) else None)

    ahead = batch_size * (1 + max(0, int(prefetch)))
    with closing(ordered_map(work, range(len(images)), workers, ahead)) as results:
        for start in range(0, len(images), batch_size):
            stop = min(start + batch_size, len(images))
            indices, crops, skipped, hashes = [], [], [], []
            for i, (out, digest) in zip(range(start, stop), islice(results, stop - start),
                                        strict=True):
                if isinstance(out, str):
                    skipped.append((labels[i], out))
                else:
                    indices.append(i)
                    crops.append(out)
                    hashes.append(digest)
            array, pixels = _stacked(crops, crop, pin)
            yield DecodedBatch(indices, [labels[i] for i in indices], array, pixels, skipped,
                               hashes if digests else [])
