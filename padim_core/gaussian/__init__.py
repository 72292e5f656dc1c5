"""Streaming per-patch Gaussians: accumulate n, Σx, Σxxᵀ batch by batch, then invert once.

One module per step, in the order fit uses them:

- ``statistics``: the store interface ``PatchStatistics`` (and what both stores share),
  ``factory.patch_statistics`` to get one; the stores themselves in ``cpu_statistics``
  (numpy/OpenBLAS: staging, packed d = 550 storage, worker threads) and
  ``torch_statistics`` (accelerators), their block layout in ``layout``.
- ``updated_sums``: ``UpdatedSums``, a fitted model's kept sums plus new images
  (``partial_fit`` on the CPU), added block by block inside ``finalize``.
- ``holdout``: ``HoldoutStore``, the calibration images' embeddings kept during fit.
- ``fitting``: ``finalize``, statistics → ``PatchGaussian`` (``patch_gaussian``: mean and
  whitener per patch), block by block, through ``factorization`` (covariance → Cholesky →
  whitener) and ``leave_one_out`` (the calibration images' distances under the other
  images' Gaussians).
- ``distances``: the cache-sized CPU distance kernel, shared with scoring.
"""

from .distances import squared_distances
from .factory import patch_statistics, statistics_from_sums
from .fitting import finalize
from .holdout import HoldoutStore
from .patch_gaussian import PatchGaussian
from .statistics import PatchStatistics

__all__ = ["HoldoutStore", "PatchGaussian", "PatchStatistics", "finalize", "patch_statistics",
           "squared_distances", "statistics_from_sums"]
