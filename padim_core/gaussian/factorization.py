"""Second moments → covariance → Cholesky factor → whitener, one block of patches at a time.

For the Gaussian of n samples with sums Σx, Σxxᵀ the regularized covariance is
(Σxxᵀ − n μμᵀ)/(n − 1) + eps·I. With its Cholesky factor cov = RᵀR, the whitener M = R⁻¹ is
upper-triangular with M Mᵀ = cov⁻¹, so scoring needs one product per patch, no solve.

On the CPU everything happens in place in the upper triangle (over zeros below it) through
``lapack``: one syrk for the mean term, potrf, and a triangular inverse by halves. In torch
(accelerators) the full symmetric matrix goes through ``cholesky_ex`` and a triangular solve.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import lapack
from ..errors import InvalidInputError

Array = np.ndarray | torch.Tensor


def whitener_from_moments(second: Array, mean: Array, n: int, eps: float) -> Array:
    """Whiteners (rows, d, d) of one block from its Σxxᵀ (rows, d, d) and mean (rows, d),
    float64. Overwrites ``second`` (the CPU result is ``second`` itself)."""
    if isinstance(second, np.ndarray):
        _cov_upper(second, mean, n, eps)
        _raise_unless_ok(lapack.cholesky_upper(second), "not positive definite")
        _raise_unless_ok(lapack.invert_upper(second), "singular")
        return second
    return _whitener(_cov(second, mean, n, eps))


def covariance(stats: Any, lo: int = 0, hi: int | None = None, eps: float = 0.0) -> Array:
    """Unbiased covariance + eps·I of patches lo:hi of a statistics store (float64, both
    triangles), from copies: the store is left as it was. For tests and inspection."""
    hi = stats.n_patches if hi is None else hi
    mean = stats.mean()
    parts = []
    for i, (blo, bhi) in enumerate(stats.bounds):
        if bhi <= lo or blo >= hi:
            continue
        second = stats.second_moments(i)
        second = second.clone() if isinstance(second, torch.Tensor) else second.copy()
        cov = _symmetric(_cov(second, mean[blo:bhi], stats.n, eps))
        parts.append(cov[max(lo, blo) - blo:min(hi, bhi) - blo])
    return torch.cat(parts) if isinstance(mean, torch.Tensor) else np.concatenate(parts)


def _raise_unless_ok(first_bad: int, problem: str) -> None:
    if first_bad >= 0:
        raise InvalidInputError("training images", f"covariance is {problem}; increase eps")


def _symmetric(upper: Array) -> Array:
    """The symmetric matrices whose upper triangles are given."""
    if isinstance(upper, torch.Tensor):
        return torch.triu(upper) + torch.triu(upper, 1).transpose(1, 2)
    return np.triu(upper) + np.triu(upper, 1).transpose(0, 2, 1)


def _cov(second: Array, mean: Array, n: int, eps: float) -> Array:
    """(Σxxᵀ − n μμᵀ)/(n − 1) + eps·I, written into ``second`` to save memory."""
    outer = mean[:, :, None] * mean[:, None, :]
    outer *= n
    second -= outer
    second /= n - 1
    d = second.shape[-1]
    second.reshape(second.shape[0], d * d)[:, :: d + 1] += eps   # the diagonal, in place
    return second


def _cov_upper(second: np.ndarray, mean: np.ndarray, n: int, eps: float) -> None:
    """Upper triangles of (Σxxᵀ − n μμᵀ)/(n − 1) + eps·I, in place, as one syrk per patch."""
    lapack.syrk_upper(second, np.ascontiguousarray(mean[:, None, :]), alpha=-n / (n - 1),
                      beta=1.0 / (n - 1))
    d = second.shape[-1]
    second.reshape(second.shape[0], d * d)[:, :: d + 1] += eps


def _whitener(cov: torch.Tensor) -> torch.Tensor:
    """Upper-triangular M with M Mᵀ = cov⁻¹ (M = L⁻ᵀ for cov = L Lᵀ), in torch."""
    chol, info = torch.linalg.cholesky_ex(cov)
    if int(info.max()) != 0:
        _raise_unless_ok(0, "not positive definite")
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device).expand_as(cov)
    inv = torch.linalg.solve_triangular(chol, eye, upper=False)
    return inv.transpose(1, 2)
