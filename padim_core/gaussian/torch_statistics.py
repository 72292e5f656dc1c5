"""Per-patch statistics in torch, for accelerators (tests also run it on the CPU).

Same layout and meaning as ``cpu_statistics`` without staging or threads: on a GPU a batch's
per-patch Gram matrices are one batched product. Packed storage goes through index arrays
(the CPU store uses LAPACK's pack / unpack routines instead).
"""

from __future__ import annotations

import numpy as np
import torch

from .layout import BLOCK_BYTES, stored_width
from .statistics import PatchStatistics

Array = np.ndarray | torch.Tensor


class TorchPatchStatistics(PatchStatistics):
    """n, Σx (P, d) and Σxxᵀ (P blocks, full or upper triangles) in float64 on ``device``."""

    workers = 1     # finalize's blocks run one after the other; the device does the rest

    def __init__(self, n_patches: int, dim: int, device: str | torch.device = "cpu",
                 block_bytes: int = BLOCK_BYTES, packed: bool | None = None) -> None:
        super().__init__(n_patches, dim, block_bytes, packed)
        self.device = torch.device(device)
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
        self._check_batch(x)
        x = torch.as_tensor(x, device=self.device).to(torch.float64)
        self._sum += x.sum(1)
        for (lo, hi), acc in zip(self.bounds, self.second, strict=True):
            flat = (x[lo:hi].transpose(1, 2) @ x[lo:hi]).reshape(hi - lo, -1)
            acc += flat[:, self._triu] if self.packed else flat
        self.n += int(x.shape[1])
        return self

    def flush(self) -> None:
        """Nothing is staged on this path."""

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

    def _write_packed_block(self, i: int, out: np.ndarray) -> None:
        block = self.second[i] if self.packed else self.second[i][:, self._triu]
        torch.from_numpy(out).copy_(block)

    def _set_packed_block(self, i: int, rows: np.ndarray) -> None:
        values = torch.as_tensor(rows, device=self.device)
        if self.packed:
            self.second[i].copy_(values)
        else:           # both triangles, as update writes them
            self.second[i][:, self._triu_t] = values
            self.second[i][:, self._triu] = values
