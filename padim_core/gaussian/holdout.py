"""Calibration embeddings kept during fit for the leave-one-out thresholds."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence

import numpy as np
import torch

Array = np.ndarray | torch.Tensor
HOLDOUT_MEMORY_BYTES = 64 << 20   # calibration embeddings kept in memory before spilling


class HoldoutStore:
    """Embeddings of the calibration images, (P, H, d), gathered batch by batch.

    On the CPU the first ``memory_bytes`` stay in memory; beyond that everything moves to an
    unnamed temporary file and comes back one block of patches at a time, so fit's memory
    does not grow with the number of calibration images (the page cache holds them, not
    the process). On an accelerator they stay in device memory.
    """

    def __init__(self, memory_bytes: int = HOLDOUT_MEMORY_BYTES) -> None:
        self.memory_bytes = int(memory_bytes)
        self._file = None
        self._chunks: list[tuple[int, int, int, int]] = []   # (offset, P, b, d) on disk
        self._arrays: list[np.ndarray] = []                   # in memory, before any spill
        self._tensors: list[torch.Tensor] = []
        self.count = 0
        self.n_patches = 0

    @classmethod
    def of(cls, x: Array) -> HoldoutStore:
        """A store over existing embeddings x (P, H, d), kept as they are: no copy, no
        spill (read-only)."""
        store = cls()
        if isinstance(x, torch.Tensor) and x.device.type != "cpu":
            store._tensors.append(x)
        else:
            store._arrays.append(np.asarray(x.numpy() if isinstance(x, torch.Tensor) else x,
                                            np.float32))
        store.n_patches, store.count = int(x.shape[0]), int(x.shape[1])
        return store

    def append(self, x: Array, images: Sequence[int] | None = None) -> None:
        """Keep a copy of images ``images`` (default all) of float32 embeddings x (P, b, d)."""
        images = range(x.shape[1]) if images is None else [int(i) for i in images]
        self.n_patches = int(x.shape[0])
        if isinstance(x, torch.Tensor) and x.device.type != "cpu":
            self._tensors.append(x.index_select(1, _device_index(images, x.device)))
        else:
            src = x.numpy() if isinstance(x, torch.Tensor) else x
            # One strided copy per image: several times faster than np.take on axis 1.
            arr = np.empty((src.shape[0], len(images), src.shape[2]), np.float32)
            for col, i in enumerate(images):
                arr[:, col] = src[:, i]
            self._arrays.append(arr)
            if self._file is not None or \
                    sum(a.nbytes for a in self._arrays) > self.memory_bytes:
                self._spill()
        self.count += len(images)

    def _spill(self) -> None:
        """Move the in-memory embeddings to the temporary file."""
        if self._file is None:
            # lives until close(); unnamed, so it vanishes even if the process dies
            self._file = tempfile.TemporaryFile(prefix="padim-holdout-")  # noqa: SIM115
        for arr in self._arrays:
            self._chunks.append((self._file.tell(), *arr.shape))
            self._file.write(memoryview(arr).cast("B"))
        self._file.flush()
        self._arrays = []

    def chunks(self, lo: int, hi: int) -> Iterator[Array]:
        """Patches lo:hi of the stored images, one (hi − lo, b, d) array per appended batch,
        so working memory does not grow with the number of calibration images. Read-only:
        in-memory batches come back as views."""
        for t in self._tensors:
            yield t[lo:hi]
        for offset, _, b, d in self._chunks:   # preadv: no shared file position, thread-safe
            out = np.empty((hi - lo, b, d), dtype=np.float32)
            got = os.preadv(self._file.fileno(), [memoryview(out).cast("B")],
                            offset + lo * b * d * 4)
            if got != out.nbytes:
                raise OSError(f"calibration embeddings: short read ({got} of {out.nbytes} bytes)")
            yield out
        for arr in self._arrays:
            yield arr[lo:hi]

    def to_array(self) -> np.ndarray:
        """Every stored embedding as one new (P, H, d) float32 numpy array, in the order
        they were appended (what a model keeps to recalibrate after adding images)."""
        parts = [c.cpu().numpy() if isinstance(c, torch.Tensor) else c
                 for c in self.chunks(0, self.n_patches)]
        return np.concatenate(parts, axis=1) if parts else np.zeros((0, 0, 0), np.float32)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tensors = []
        self._arrays = []


def _device_index(images: Sequence[int], device: torch.device) -> torch.Tensor:
    """``images`` as an index tensor on ``device``; from CUDA pinned memory without waiting
    (a copy from ordinary host memory would wait for everything queued on the device)."""
    index = torch.as_tensor(list(images), dtype=torch.long)
    if device.type == "cuda":
        index = index.pin_memory()
    return index.to(device, non_blocking=True)
