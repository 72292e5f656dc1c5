"""Statistics → fitted Gaussians (``finalize``), plus the calibration images' leave-one-out
distances.

Works block by block of patches (factorization, then the calibration distances of those
patches) and frees each block's sums as it goes, so peak memory stays near the size of one
copy even for d = 550. On the CPU the blocks run in threads, one BLAS thread each.
"""

from __future__ import annotations

import numpy as np
import torch

from ..allocator import large_empty
from ..errors import InvalidInputError
from ..threads import in_threads, single_blas_thread
from .factorization import whitener_from_moments
from .holdout import HoldoutStore
from .leave_one_out import calibration_distances
from .patch_gaussian import PatchGaussian
from .statistics import PatchStatistics

Array = np.ndarray | torch.Tensor


def finalize(stats: PatchStatistics, eps: float = 0.01,
             holdout: HoldoutStore | Array | None = None) -> tuple[PatchGaussian, Array | None]:
    """Gaussians from all data; optionally leave-one-out distances of ``holdout``.

    ``holdout`` (P, H, d), an array or a HoldoutStore, holds embeddings of calibration
    images that were *also* added to ``stats``. Their squared Mahalanobis distances (H, P)
    are each image's under the Gaussians of the other n − 1 (``leave_one_out``), so
    thresholds are calibrated on images the model did not see while the final model still
    uses every image. Consumes ``stats``.
    """
    holdout = _checked_holdout(stats.n, holdout)
    mean = stats.mean()
    n, p, d = stats.n, stats.n_patches, stats.dim
    n_hold = 0 if holdout is None else holdout.count
    if isinstance(mean, np.ndarray):
        mean32 = mean.astype(np.float32)
        whitener = large_empty((p, d, d), np.float32)   # pages committed block by block
        hold_sq = np.empty((n_hold, p)) if n_hold else None
    else:
        mean32 = mean.float()
        whitener = torch.empty((p, d, d), dtype=torch.float32, device=mean.device)
        hold_sq = (torch.empty((n_hold, p), dtype=torch.float64, device=mean.device)
                   if n_hold else None)

    def one_block(i: int) -> None:
        lo, hi = stats.bounds[i]
        m = whitener_from_moments(stats.take_second_moments(i), mean[lo:hi], n, eps)
        whitener[lo:hi] = m
        if holdout is not None:
            fast = (mean32[lo:hi], whitener[lo:hi]) if isinstance(m, np.ndarray) else None
            hold_sq[:, lo:hi] = calibration_distances(holdout, lo, hi, n, (mean[lo:hi], m),
                                                      fast)

    # Blocks are independent and write disjoint rows. On the CPU the backbone is idle
    # now, so they run on every core torch may use (each with one BLAS thread).
    with single_blas_thread():
        in_threads(lambda ids: [one_block(i) for i in ids], list(range(len(stats.bounds))),
                   stats.workers)
    return PatchGaussian(mean32, whitener), hold_sq


def _checked_holdout(n: int, holdout: HoldoutStore | Array | None) -> HoldoutStore | None:
    """The calibration embeddings as a store (None when there are none), or a clear error
    when there are too few images for them."""
    if n < 2:
        raise InvalidInputError("training images", f"need at least 2 usable images, got {n}")
    if holdout is not None and not isinstance(holdout, HoldoutStore):
        array, holdout = holdout, HoldoutStore()
        holdout.append(array)
    if holdout is None or holdout.count == 0:
        return None
    if n < 3:
        raise InvalidInputError("training images",
                                "need at least 3 images to score any of them left out")
    return holdout
