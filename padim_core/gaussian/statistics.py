"""The statistics store: n, Σx and Σxxᵀ per patch, added batch by batch, mergeable.

Memory does not grow with the number of images: the state is one d×d second-moment matrix
per patch position, in float64 blocks of patches (``layout``). Statistics of two shards add
up exactly, so ``merge`` gives the statistics of the union. ``fitting.finalize`` turns a
store into the fitted Gaussians.

``PatchStatistics`` is the interface and what both stores share; ``factory.patch_statistics``
picks one: numpy/OpenBLAS on the CPU (``cpu_statistics``), torch on accelerators
(``torch_statistics``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np
import torch

from .factorization import covariance
from .layout import block_bounds, packed_by_default

Array = np.ndarray | torch.Tensor


class PatchStatistics(ABC):
    """Running float64 sums for P patch positions of dimension d.

    State: ``n`` (images added), ``sum`` Σx (P, d) and ``second``, the Σxxᵀ of each block of
    patches ``bounds`` (full d×d, or upper triangles when ``packed``), on ``device``.
    ``workers`` is how many threads ``finalize`` may use on its blocks.
    """

    device: torch.device
    workers: int
    #: Whether ``packed_sums`` is made while ``finalize`` consumes the store (after it),
    #: rather than before it (``updated_sums``).
    sums_after_finalize: bool = False

    def __init__(self, n_patches: int, dim: int, block_bytes: int, packed: bool | None) -> None:
        self.n_patches, self.dim = int(n_patches), int(dim)
        self.n = 0
        self.bounds = block_bounds(self.n_patches, self.dim, block_bytes)
        self.packed = bool(packed_by_default(self.n_patches, self.dim)
                           if packed is None else packed)
        self._sum: Array
        self.second: list[Array | None]

    @abstractmethod
    def update(self, x: Array) -> PatchStatistics:
        """Add a batch of embeddings, shape (P, B, d)."""

    def update_from(self, b: int, produce: Callable[[np.ndarray | None], Array]) -> Array:
        """Add b images whose (P, b, d) embeddings ``produce(out)`` returns, where ``out``
        is a buffer of the store to write them into (saves a copy) or None; returns them.
        (None here: a store with a staging buffer offers it.)"""
        x = produce(None)
        self.update(x)
        return x

    @abstractmethod
    def flush(self) -> None:
        """Make the sums complete (add anything staged)."""

    @abstractmethod
    def second_moments(self, i: int) -> Array:
        """Block i's Σxxᵀ as (rows, d, d), the upper triangle at least."""

    @abstractmethod
    def _write_packed_block(self, i: int, out: np.ndarray) -> None:
        """Write block i's Σxxᵀ upper triangles into ``out`` (rows, d(d+1)/2) float64."""

    @abstractmethod
    def _set_packed_block(self, i: int, rows: np.ndarray) -> None:
        """Set block i's Σxxᵀ from upper triangles (rows, d(d+1)/2)."""

    def packed_sums(self) -> tuple[int, np.ndarray, np.ndarray]:
        """(n, Σx (P, d), Σxxᵀ upper triangles (P, d(d+1)/2)) as new float64 numpy arrays,
        in ``np.triu_indices`` order whatever the store's layout and device: what a model
        keeps so that images can be added later (``load_sums``), and writes to its file."""
        self.flush()
        total = self._sum.cpu().numpy() if isinstance(self._sum, torch.Tensor) else self._sum
        # Each block is written once, straight into the result (from a device: one
        # transfer per block, no host-side staging copy).
        packed = np.empty((self.n_patches, self.dim * (self.dim + 1) // 2), np.float64)
        for i, (lo, hi) in enumerate(self.bounds):
            self._write_packed_block(i, packed[lo:hi])
        return self.n, np.array(total, np.float64), packed

    def load_sums(self, n: int, total: np.ndarray, packed: np.ndarray) -> PatchStatistics:
        """Set an empty store to sums from ``packed_sums`` (copied in); returns self.

        Adding images afterwards gives the sums of the union exactly, as ``merge`` does.
        """
        width = self.dim * (self.dim + 1) // 2
        if self.n or total.shape != (self.n_patches, self.dim) or \
                packed.shape != (self.n_patches, width):
            raise ValueError(f"expected an empty store and sums of (P={self.n_patches}, "
                             f"d={self.dim}), got {total.shape} and {packed.shape}")
        self.n = int(n)
        if isinstance(self._sum, torch.Tensor):
            self._sum.copy_(torch.as_tensor(total))
        else:
            self._sum[...] = total
        for i, (lo, hi) in enumerate(self.bounds):
            self._set_packed_block(i, np.ascontiguousarray(packed[lo:hi], np.float64))
        return self

    def _check_batch(self, x: Array) -> None:
        if tuple(x.shape[::2]) != (self.n_patches, self.dim):
            raise ValueError(f"expected (P={self.n_patches}, B, d={self.dim}), "
                             f"got {tuple(x.shape)}")

    def merge(self, other: PatchStatistics) -> PatchStatistics:
        """Add another shard's statistics (same P and d) into this one."""
        if (other.n_patches, other.dim) != (self.n_patches, self.dim):
            raise ValueError("cannot merge statistics of different shapes")
        if (other.bounds, other.packed) != (self.bounds, self.packed):
            raise ValueError("cannot merge statistics stored in different layouts")
        self.flush()
        other.flush()
        self.n += other.n
        self._sum += other._sum
        for acc, add in zip(self.second, other.second, strict=True):
            acc += add
        return self

    @property
    def sum(self) -> Array:
        """Σx per patch, (P, d) float64, staged embeddings included."""
        self.flush()
        return self._sum

    def mean(self) -> Array:
        """Σx / n per patch, (P, d) float64."""
        return self.sum / self.n

    def covariance(self, lo: int = 0, hi: int | None = None, eps: float = 0.0) -> Array:
        """Unbiased covariance + eps·I for patches lo:hi (float64). For tests and inspection."""
        return covariance(self, lo, hi, eps)

    def take_second_moments(self, i: int) -> Array:
        """``second_moments(i)``, dropping the store's copy (finalize consumes the store
        block by block, so peak memory stays near one copy)."""
        full = self.second_moments(i)
        self.second[i] = None
        return full
