"""Per-matrix BLAS/LAPACK through scipy's capsules against numpy's own linear algebra."""

from __future__ import annotations

import numpy as np
import pytest

from padim_core import lapack


def spd(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, 3 * d, d))
    return np.einsum("nki,nkj->nij", x, x) / d + 0.1 * np.eye(d)


def test_syrk_updates_only_the_upper_triangle() -> None:
    rng = np.random.default_rng(1)
    x, c = rng.standard_normal((4, 7, 5)), rng.standard_normal((4, 5, 5))
    before = c.copy()
    lapack.syrk_upper(c, x, alpha=-0.5, beta=2.0)
    want = 2 * before - 0.5 * np.einsum("nki,nkj->nij", x, x)
    np.testing.assert_allclose(np.triu(c), np.triu(want), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(np.tril(c, -1), np.tril(before, -1))


def test_cholesky_inverse_and_solve_match_numpy() -> None:
    a = spd(5, 6)
    work = a.copy()
    assert lapack.cholesky_upper(work) == -1
    r = np.triu(work)
    np.testing.assert_allclose(r, np.linalg.cholesky(a).transpose(0, 2, 1), rtol=1e-10,
                               atol=1e-12)
    y = np.random.default_rng(2).standard_normal((5, 3, 6))
    z = y.copy()
    lapack.solve_upper_transposed(work, z)
    np.testing.assert_allclose(np.einsum("nkd,nkd->nk", z, z),
                               np.einsum("nki,nij,nkj->nk", y, np.linalg.inv(a), y), rtol=1e-9)
    assert lapack.invert_upper(work) == -1
    np.testing.assert_allclose(np.triu(work), np.linalg.inv(r), rtol=1e-9, atol=1e-12)
    w = np.triu(work)                                       # the whitener: W Wᵀ = a⁻¹
    np.testing.assert_allclose(w @ w.transpose(0, 2, 1), np.linalg.inv(a), rtol=1e-9,
                               atol=1e-12)


def test_failures_report_the_first_bad_matrix() -> None:
    a = spd(4, 3)
    a[2] = -np.eye(3)
    assert lapack.cholesky_upper(a) == 2
    singular = np.tile(np.triu(np.ones((3, 3))), (3, 1, 1))
    singular[1, 1, 1] = 0.0
    assert lapack.invert_upper(singular) == 1


@pytest.mark.parametrize("bad", [np.zeros((2, 3, 3), np.float32), np.zeros((3, 3)),
                                 np.zeros((2, 3, 3))[:, :, ::-1]])
def test_rejects_arrays_it_cannot_pass_to_fortran(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="C-contiguous float64"):
        lapack.cholesky_upper(bad)


@pytest.mark.parametrize(("d", "split_above"), [(9, 2), (100, 64), (131, 64), (131, 1000)])
def test_inverse_by_halves_matches_numpy(d: int, split_above: int) -> None:
    # (9, 2): three levels of halves with odd sizes; (131, 1000): LAPACK's trtri alone.
    a = spd(3, d, seed=d)
    lapack.cholesky_upper(a)
    r = np.triu(a)
    lower_before = np.tril(a, -1)
    assert lapack.invert_upper(a, split_above=split_above) == -1
    np.testing.assert_allclose(np.triu(a), np.linalg.inv(r), rtol=1e-9,
                               atol=1e-12 * np.abs(np.linalg.inv(r)).max())
    np.testing.assert_array_equal(np.tril(a, -1), lower_before)   # other triangle untouched


@pytest.mark.parametrize("zero_at", [0, 4, 8])      # in the first half, second half, last
def test_inverse_by_halves_reports_singular_matrices(zero_at: int) -> None:
    r = np.tile(np.triu(np.ones((9, 9))) + np.eye(9), (3, 1, 1))
    r[2, zero_at, zero_at] = 0.0
    assert lapack.invert_upper(r, split_above=2) == 2


def test_packed_syrk_and_unpack_match_the_full_upper_triangle() -> None:
    rng = np.random.default_rng(5)
    n, k, d = 4, 6, 9
    rows, cols = np.triu_indices(d)
    start = rng.standard_normal((n, d, d))
    packed = np.ascontiguousarray(start.reshape(n, -1)[:, rows * d + cols])
    x = rng.standard_normal((n, k, d))
    lapack.syrk_packed_upper(packed, x, alpha=0.5, beta=2.0)
    want = 2 * start + 0.5 * np.einsum("nki,nkj->nij", x, x)
    np.testing.assert_allclose(packed, want.reshape(n, -1)[:, rows * d + cols], rtol=1e-12)
    full = np.full((n, d, d), 7.0)
    lapack.unpack_upper(packed, full)
    np.testing.assert_allclose(np.triu(full), np.triu(want), rtol=1e-12)
    below = np.tril_indices(d, -1)
    np.testing.assert_array_equal(full[:, below[0], below[1]], 7.0)   # untouched
