"""The per-patch statistics are float64 and exact on every device here (CUDA where present).

Why: issue #18 moves the work to the GPU; the sums Σx and Σxxᵀ behind every Gaussian must
stay the float64 reference there too. Embeddings with a large common offset are the case
where accumulating in float32, or a careless Σxxᵀ/n − μμᵀ, loses digits. On a machine
without CUDA this runs the CPU store only; ``bench/gpu_check.sh`` runs it on a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from padim_core.gaussian import patch_statistics

# "cpu+torch": the torch store (the GPU's code path) on the CPU.
DEVICES = ["cpu", "cpu+torch"] + (["cuda"] if torch.cuda.is_available() else [])


def _numpy(a: object) -> np.ndarray:
    return a.cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("device", DEVICES)
def test_statistics_match_the_float64_reference(device: str, packed: bool) -> None:
    rng = np.random.default_rng(3)
    n_patches, n, d = 6, 50, 12
    x = (200.0 + rng.standard_normal((n_patches, n, d))).astype(np.float32)
    where = device.split("+")[0]
    store = patch_statistics(n_patches, d, where, packed=packed,
                             use_torch=True if device.endswith("+torch") else None)
    for lo in range(0, n, 16):                       # in batches, as fit adds them
        store.update(torch.from_numpy(x[:, lo:lo + 16].copy()).to(where))
    ref = x.astype(np.float64)
    mean, cov = _numpy(store.mean()), _numpy(store.covariance())
    assert mean.dtype == cov.dtype == np.float64
    np.testing.assert_allclose(mean, ref.mean(axis=1), rtol=1e-13)
    want = np.stack([np.cov(ref[p], rowvar=False) for p in range(n_patches)])
    np.testing.assert_allclose(cov, want, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("device", DEVICES)
def test_packed_sums_are_the_upper_triangles_in_triu_order(device: str, packed: bool) -> None:
    """Why: the sums a model keeps for updates are written to its file in
    ``np.triu_indices`` order; each store writes them its own way (a slice copy, LAPACK's
    trttp, a device transfer), and all must give the same numbers in that order."""
    rng = np.random.default_rng(4)
    n_patches, n, d = 7, 20, 9
    x = rng.standard_normal((n_patches, n, d)).astype(np.float32)
    where = device.split("+")[0]
    store = patch_statistics(n_patches, d, where, packed=packed,
                             use_torch=True if device.endswith("+torch") else None)
    store.update(torch.from_numpy(x).to(where))
    got_n, total, triu = store.packed_sums()
    ref = x.astype(np.float64)
    second = np.einsum("pni,pnj->pij", ref, ref)
    rows, cols = np.triu_indices(d)
    assert got_n == n and len(store.bounds) > 1          # written block by block
    assert isinstance(triu, np.ndarray) and triu.dtype == np.float64
    np.testing.assert_allclose(total, ref.sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(triu, second[:, rows, cols], rtol=1e-12)
