"""Per-patch statistics in torch, for accelerators (tests also run it on the CPU).

Same layout and meaning as ``cpu_statistics`` without staging or threads: on a GPU a batch's
per-patch Gram matrices are one batched product. Packed storage goes through index arrays
(the CPU store uses LAPACK's pack / unpack routines instead).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .factorization import covariance
from .layout import BLOCK_BYTES, block_bounds, packed_by_default, stored_width

Array = np.ndarray | torch.Tensor


class TorchPatchStatistics:
    """n, Σx (P, d) and Σxxᵀ (P blocks, full or upper triangles) in float64 on ``device``."""

    workers = 1     # finalize's blocks run one after the other; the device does the rest

    def __init__(self, n_patches: int, dim: int, device: str | torch.device = "cpu",
                 block_bytes: int = BLOCK_BYTES, packed: bool | None = None) -> None:
        self.n_patches, self.dim = int(n_patches), int(dim)
        self.device = torch.device(device)
        self.n = 0
        self.bounds = block_bounds(self.n_patches, self.dim, block_bytes)
        self.packed = bool(packed_by_default(self.n_patches, self.dim)
                           if packed is None else packed)
        width = stored_width(self.dim, self.packed)
        self._sum = torch.zeros((self.n_patches, self.dim), dtype=torch.float64,
                                device=self.device)
        self.second: list[torch.Tensor | None] = [
            torch.zeros((hi - lo, width), dtype=torch.float64, device=self.device)
            for lo, hi in self.bounds]
        rows, cols = np.triu_indices(self.dim)
        self._triu = torch.as_tensor(rows * self.dim + cols, device=self.device)
        self._triu_t = torch.as_tensor(cols * self.dim + rows, device=self.device)

    def update(self, x: Array) -> TorchPatchStatistics:
        """Add a batch of embeddings, shape (P, B, d)."""
        if tuple(x.shape[::2]) != (self.n_patches, self.dim):
            raise ValueError(f"expected (P={self.n_patches}, B, d={self.dim}), "
                             f"got {tuple(x.shape)}")
        x = torch.as_tensor(x, device=self.device).to(torch.float64)
        self._sum += x.sum(1)
        for (lo, hi), acc in zip(self.bounds, self.second, strict=True):
            flat = (x[lo:hi].transpose(1, 2) @ x[lo:hi]).reshape(hi - lo, -1)
            acc += flat[:, self._triu] if self.packed else flat
        self.n += int(x.shape[1])
        return self

    def update_from(self, b: int, produce: Callable[[np.ndarray | None], Array]) -> Array:
        """Add b images whose (P, b, d) embeddings ``produce(None)`` returns (no staging
        here); returns them."""
        x = produce(None)
        self.update(x)
        return x

    def flush(self) -> None:
        """Nothing is staged on this path."""

    def merge(self, other: TorchPatchStatistics) -> TorchPatchStatistics:
        """Add another shard's statistics (same P, d and layout) into this one."""
        if (other.n_patches, other.dim) != (self.n_patches, self.dim):
            raise ValueError("cannot merge statistics of different shapes")
        self.n += other.n
        self._sum += other._sum
        for acc, add in zip(self.second, other.second, strict=True):
            acc += add
        return self

    @property
    def sum(self) -> torch.Tensor:
        """Σx per patch, (P, d) float64."""
        return self._sum

    def mean(self) -> torch.Tensor:
        """Σx / n per patch, (P, d) float64."""
        return self._sum / self.n

    def covariance(self, lo: int = 0, hi: int | None = None, eps: float = 0.0) -> torch.Tensor:
        """Unbiased covariance + eps·I for patches lo:hi (float64). For tests and inspection."""
        return covariance(self, lo, hi, eps)

    def second_moments(self, i: int) -> torch.Tensor:
        """Block i's Σxxᵀ as (rows, d, d), both triangles filled (torch's Cholesky reads
        the lower one)."""
        block = self.second[i]
        rows = block.shape[0]
        if not self.packed:
            return block.reshape(rows, self.dim, self.dim)
        full = torch.empty((rows, self.dim * self.dim), dtype=torch.float64, device=self.device)
        full[:, self._triu_t] = block
        full[:, self._triu] = block
        return full.reshape(rows, self.dim, self.dim)

    def take_second_moments(self, i: int) -> torch.Tensor:
        """``second_moments(i)``, dropping the store's copy (finalize consumes the store)."""
        full = self.second_moments(i)
        self.second[i] = None
        return full
