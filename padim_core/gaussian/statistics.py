"""The statistics store: n, Σx and Σxxᵀ per patch, added batch by batch, mergeable.

Memory does not grow with the number of images: the state is one d×d second-moment matrix
per patch position, in float64 blocks of patches (``layout``). Statistics of two shards add
up exactly, so ``merge`` gives the statistics of the union. ``finalize`` turns a store into
the fitted Gaussians.

Two implementations share one interface, picked by ``patch_statistics``: numpy/OpenBLAS on
the CPU (``cpu_statistics``) and torch on accelerators (``torch_statistics``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch

from .cpu_statistics import STAGE_BYTES, CpuPatchStatistics
from .layout import BLOCK_BYTES
from .torch_statistics import TorchPatchStatistics

Array = np.ndarray | torch.Tensor


class PatchStatistics(Protocol):
    """What every statistics store offers (state: ``n``, ``sum``, the ``second`` blocks)."""

    n_patches: int
    dim: int
    n: int                              # images added
    device: torch.device
    bounds: list[tuple[int, int]]       # (lo, hi) patches of each block of ``second``
    packed: bool                        # blocks hold upper triangles, not d×d
    second: list[Array | None]          # Σxxᵀ per block
    workers: int                        # threads finalize may use

    def update(self, x: Array) -> PatchStatistics:
        """Add embeddings (P, B, d)."""

    def update_from(self, b: int, produce: Callable[[np.ndarray | None], Array]) -> Array:
        """Add b images whose embeddings ``produce(buffer or None)`` returns."""

    def merge(self, other: PatchStatistics) -> PatchStatistics:
        """Add another shard's statistics."""

    def flush(self) -> None:
        """Make the sums complete (add anything staged)."""

    @property
    def sum(self) -> Array:
        """Σx, (P, d) float64."""

    def mean(self) -> Array:
        """Σx / n, (P, d) float64."""

    def covariance(self, lo: int = 0, hi: int | None = None, eps: float = 0.0) -> Array:
        """Covariance + eps·I of patches lo:hi, for tests and inspection."""

    def second_moments(self, i: int) -> Array:
        """Block i's Σxxᵀ as (rows, d, d), upper triangle at least."""

    def take_second_moments(self, i: int) -> Array:
        """The same, dropping the store's copy (finalize consumes the store)."""


def patch_statistics(n_patches: int, dim: int, device: str | torch.device = "cpu", *,
                     use_torch: bool | None = None, block_bytes: int = BLOCK_BYTES,
                     packed: bool | None = None, stage_bytes: int = STAGE_BYTES,
                     workers: int | None = None) -> PatchStatistics:
    """An empty store for P patch positions of dimension d, for embeddings on ``device``.

    numpy on the CPU, torch elsewhere; ``use_torch`` forces the torch store on the CPU too
    (tests cover the GPU code path that way; small d only). ``packed`` forces (or forbids)
    upper-triangle storage, chosen by size when None. ``stage_bytes`` and ``workers`` tune
    the CPU store (staged images before one update; threads, default torch's count).
    """
    device = torch.device(device)
    if use_torch or (use_torch is None and device.type != "cpu"):
        return TorchPatchStatistics(n_patches, dim, device, block_bytes, packed)
    return CpuPatchStatistics(n_patches, dim, block_bytes, packed, stage_bytes, workers)
