"""``patch_statistics``: the statistics store for where the embeddings live."""

from __future__ import annotations

import numpy as np
import torch

from .cpu_statistics import STAGE_BYTES, CpuPatchStatistics
from .layout import BLOCK_BYTES
from .statistics import PatchStatistics
from .torch_statistics import TorchPatchStatistics
from .updated_sums import UpdatedSums


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


def statistics_from_sums(n: int, total: np.ndarray, packed: np.ndarray,
                         device: str | torch.device = "cpu", *, use_torch: bool | None = None,
                         workers: int | None = None) -> PatchStatistics:
    """A store holding the sums of ``PatchStatistics.packed_sums``, to add more images to.
    On the CPU the kept sums are not copied: ``UpdatedSums`` adds the new images to each
    block as ``finalize`` takes it, and makes the union's packed sums then."""
    n_patches, dim = total.shape
    device = torch.device(device)
    if use_torch or (use_torch is None and device.type != "cpu"):
        store: PatchStatistics = TorchPatchStatistics(n_patches, dim, device)
        return store.load_sums(n, total, packed)
    return UpdatedSums(n, total, packed, workers=workers)
