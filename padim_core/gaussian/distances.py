"""The CPU distance kernel shared by predict and the leave-one-out calibration."""

from __future__ import annotations

import numpy as np

CACHE_BYTES = 256 << 10        # working set of one step of the CPU distance kernel (L2-sized)


def squared_distances(x: np.ndarray, mean: np.ndarray, whitener: np.ndarray,
                      out: np.ndarray, step_bytes: int = CACHE_BYTES) -> None:
    """out (b, P) ← squared Mahalanobis distances ‖(x − μ) M‖² of x (P, b, d).

    Works in the precision of ``mean`` and ``whitener`` (x is centred into it), a few
    patches at a time so that x − μ and its product stay in cache between the steps: on one
    core at d = 100, batch 32, 1.25 ms/image against 1.9 for whole-array steps.
    """
    p, b, d = x.shape
    dtype = np.result_type(mean, whitener)
    step = max(1, step_bytes // (b * d * dtype.itemsize))
    centred = np.empty((min(step, p), b, d), dtype)
    whitened = np.empty_like(centred)
    for lo in range(0, p, step):
        hi = min(lo + step, p)
        c, z = centred[:hi - lo], whitened[:hi - lo]
        np.subtract(x[lo:hi], mean[lo:hi, None, :], out=c)
        np.matmul(c, whitener[lo:hi], out=z)
        np.einsum("pbd,pbd->bp", z, z, out=out[:, lo:hi])
