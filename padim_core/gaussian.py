"""Streaming per-patch Gaussian: accumulate n, Σx, Σxxᵀ batch by batch, then invert once.

Memory does not grow with the number of images: the state is one d×d second-moment matrix
per patch position, stored as float64 upper triangles in blocks of patches. Statistics of two
shards add up exactly, so ``merge`` gives the statistics of the union.

``finalize`` turns the statistics into what scoring needs: the mean and a *whitener* M per
patch, an upper-triangular matrix with M Mᵀ = Σ⁻¹, so that the squared Mahalanobis distance is
the plain sum of squares ‖(x − μ) M‖². It works block by block and frees each block as it goes,
so peak memory stays near the size of one copy even for d = 550.

On the CPU the linear algebra runs in numpy (OpenBLAS/LAPACK); torch's batched CPU solvers
are slow or fail on some processors for these shapes. On CUDA everything stays in torch.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.linalg.blas
import torch
from threadpoolctl import threadpool_limits

from .errors import InvalidInputError

Array = np.ndarray | torch.Tensor
BLOCK_BYTES = 64 << 20
_syrk = scipy.linalg.blas.dsyrk
FULL_STORAGE_BYTES = 1 << 30   # above this, second moments are stored as upper triangles


@dataclass
class PatchGaussian:
    """Fitted per-patch Gaussians: mean (P, d) and whitener (P, d, d), float32."""

    mean: Array
    whitener: Array

    @property
    def n_patches(self) -> int:
        return int(self.mean.shape[0])

    @property
    def dim(self) -> int:
        return int(self.mean.shape[1])


def _is_torch(x: Array) -> bool:
    return isinstance(x, torch.Tensor)


def single_blas_thread() -> threadpool_limits:
    """Context for thousands of small per-patch matrix products on the CPU.

    OpenBLAS threads each small product; with the cores busy elsewhere (another user's fit,
    the backbone of a second session) the per-call hand-offs made the d = 176 Gram 15x
    slower than one thread (11 s vs 0.6 s per batch, measured on the 2-core machine).
    """
    return threadpool_limits(limits=1, user_api="blas")


class HoldoutStore:
    """Embeddings of held-out images, (P, H, d), gathered batch by batch.

    On the CPU they go to an unnamed temporary file and come back one block of patches at a
    time, so fit's memory does not grow with the number of calibration images (the page
    cache holds them, not the process). On an accelerator they stay in device memory.
    """

    def __init__(self) -> None:
        self._file = None
        self._chunks: list[tuple[int, int, int, int]] = []   # (offset, P, b, d) on disk
        self._tensors: list[torch.Tensor] = []
        self.count = 0

    def append(self, x: Array) -> None:
        """Add (P, b, d) float32 embeddings of b more images."""
        if _is_torch(x) and x.device.type != "cpu":
            self._tensors.append(x.clone())
        else:
            arr = np.ascontiguousarray(x.numpy() if _is_torch(x) else x, dtype=np.float32)
            if self._file is None:
                # lives until close(); unnamed, so it vanishes even if the process dies
                self._file = tempfile.TemporaryFile(prefix="padim-holdout-")  # noqa: SIM115
            self._chunks.append((self._file.tell(), *arr.shape))
            self._file.write(memoryview(arr).cast("B"))
            self._file.flush()
        self.count += int(x.shape[1])

    def chunks(self, lo: int, hi: int) -> Iterator[Array]:
        """Patches lo:hi of the stored images, one (hi − lo, b, d) array per appended batch,
        so working memory does not grow with the number of held-out images."""
        for t in self._tensors:
            yield t[lo:hi]
        for offset, _, b, d in self._chunks:   # pread: no shared file position, thread-safe
            raw = os.pread(self._file.fileno(), (hi - lo) * b * d * 4, offset + lo * b * d * 4)
            yield np.frombuffer(raw, dtype=np.float32).reshape(hi - lo, b, d)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tensors = []


class PatchGaussianAccumulator:
    """Running float64 sums for P patch positions of dimension d.

    ``update`` takes embeddings laid out patch-major, (P, B, d): numpy arrays on the CPU or
    torch tensors on the accelerator (``device``). ``use_torch`` forces the torch code path
    on the CPU too (tests use it to cover the GPU path without a GPU; small d only);
    ``packed`` forces (or forbids) upper-triangle storage, chosen by size when None.
    """

    def __init__(self, n_patches: int, dim: int, device: str | torch.device = "cpu",
                 block_bytes: int = BLOCK_BYTES, use_torch: bool | None = None,
                 packed: bool | None = None) -> None:
        self.n_patches, self.dim = int(n_patches), int(dim)
        self.device = torch.device(device)
        self._scratch: dict[tuple[str, tuple[int, ...]], np.ndarray] = {}
        self._use_numpy = self.device.type == "cpu" if use_torch is None else not use_torch
        self.n = 0
        per_patch = self.dim * self.dim * 8
        step = max(1, min(self.n_patches, block_bytes // per_patch))
        self.bounds = [(lo, min(lo + step, self.n_patches))
                       for lo in range(0, self.n_patches, step)]
        # Full d×d blocks are cheapest to update; upper triangles halve the memory when it
        # matters (d = 550: 3.8 GB instead of 7.6 GB).
        if packed is None:
            packed = self.n_patches * self.dim * self.dim * 8 > FULL_STORAGE_BYTES
        self.packed = bool(packed)
        rows, cols = np.triu_indices(self.dim)
        self._triu = rows * self.dim + cols          # flat positions of the upper triangle
        self._triu_t = cols * self.dim + rows        # the same entries, mirrored
        n_tri = len(rows) if self.packed else self.dim * self.dim
        if self._numpy:
            self.sum = np.zeros((self.n_patches, self.dim))
            self.second = [np.zeros((hi - lo, n_tri)) for lo, hi in self.bounds]
        else:
            self.sum = torch.zeros((self.n_patches, self.dim), dtype=torch.float64,
                                   device=self.device)
            self.second = [torch.zeros((hi - lo, n_tri), dtype=torch.float64, device=self.device)
                           for lo, hi in self.bounds]
            self._triu = torch.as_tensor(self._triu, device=self.device)
            self._triu_t = torch.as_tensor(self._triu_t, device=self.device)

    @property
    def _numpy(self) -> bool:
        return self._use_numpy

    def _as_f64(self, x: Array) -> Array:
        if self._numpy:
            x = x.numpy() if _is_torch(x) else x
            return np.asarray(x, dtype=np.float64)
        return torch.as_tensor(x, device=self.device).to(torch.float64)

    def update(self, x: Array) -> PatchGaussianAccumulator:
        """Add a batch of embeddings, shape (P, B, d)."""
        if tuple(x.shape[::2]) != (self.n_patches, self.dim):
            raise ValueError(f"expected (P={self.n_patches}, B, d={self.dim}), "
                             f"got {tuple(x.shape)}")
        b = int(x.shape[1])
        if not self._numpy:
            x = self._as_f64(x)
            self.sum += x.sum(1)
            for (lo, hi), acc in zip(self.bounds, self.second, strict=True):
                flat = _gram(x[lo:hi]).reshape(hi - lo, -1)
                acc += flat[:, self._triu] if self.packed else flat
            self.n += b
            return self
        x = x.numpy() if _is_torch(x) else x
        d = self.dim
        with single_blas_thread():
            for (lo, hi), acc in zip(self.bounds, self.second, strict=True):
                # float64 copies go into buffers reused across batches: fresh arrays of this
                # size per block and batch cost more in page faults than the arithmetic.
                xb = self._buffer("xb", (hi - lo, b, d))
                np.copyto(xb, x[lo:hi])
                self.sum[lo:hi] += xb.sum(1)
                if self.packed:
                    xt = self._buffer("xt", (hi - lo, d, b))
                    np.copyto(xt, xb.transpose(0, 2, 1))
                    gram = np.matmul(xt, xb, out=self._buffer("gram", (hi - lo, d, d)))
                    acc += gram.reshape(hi - lo, -1)[:, self._triu]
                    continue
                # Rank-b update of one triangle in place (BLAS syrk): half the flops of a
                # full product and no separate add. In C order the result is the lower one.
                blocks = acc.reshape(hi - lo, d, d)
                for i in range(hi - lo):
                    _syrk(1.0, xb[i].T, beta=1.0, c=blocks[i].T, overwrite_c=1)
        self.n += b
        return self

    def _buffer(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A float64 scratch array of ``shape``, reused across batches."""
        key = (name, shape)
        if key not in self._scratch:
            self._scratch[key] = np.empty(shape)
        return self._scratch[key]

    def merge(self, other: PatchGaussianAccumulator) -> PatchGaussianAccumulator:
        """Add another shard's statistics (same P and d) into this one."""
        if (other.n_patches, other.dim) != (self.n_patches, self.dim):
            raise ValueError("cannot merge statistics of different shapes")
        self.n += other.n
        self.sum += other.sum
        for acc, add in zip(self.second, other.second, strict=True):
            acc += add
        return self

    def _full(self, packed: Array) -> Array:
        """A block's second moments as a fresh (rows, d, d) array.

        Only the lower triangle and diagonal are guaranteed (the CPU update fills one
        triangle); everything downstream reads only those, as Cholesky does.
        """
        rows = packed.shape[0]
        if not self.packed:
            return _copy(packed.reshape(rows, self.dim, self.dim))
        if self._numpy:
            full = np.empty((rows, self.dim * self.dim))
        else:
            full = torch.empty((rows, self.dim * self.dim), dtype=torch.float64,
                               device=self.device)
        full[:, self._triu] = packed
        full[:, self._triu_t] = packed
        return full.reshape(rows, self.dim, self.dim)

    def covariance(self, lo: int = 0, hi: int | None = None, eps: float = 0.0) -> Array:
        """Unbiased covariance + eps·I for patches lo:hi (float64). For tests and inspection."""
        hi = self.n_patches if hi is None else hi
        mean = self.sum / self.n
        parts = []
        for (blo, bhi), packed in zip(self.bounds, self.second, strict=True):
            if bhi <= lo or blo >= hi:
                continue
            cov = _symmetric(_cov(self._full(packed), mean[blo:bhi], self.n, eps))
            parts.append(cov[max(lo, blo) - blo:min(hi, bhi) - blo])
        return np.concatenate(parts) if self._numpy else torch.cat(parts)

    def finalize(self, eps: float = 0.01, holdout: HoldoutStore | Array | None = None,
                 ) -> tuple[PatchGaussian, Array | None]:
        """Gaussians from all data; optionally distances of ``holdout`` under the rest.

        ``holdout`` (P, H, d), an array or a HoldoutStore, holds embeddings that were *also*
        passed to ``update``. Their
        squared Mahalanobis distances (H, P) are computed under the Gaussians of the other
        n − H samples, so thresholds can be calibrated on images the model did not see while
        the final model still uses every image. Consumes the accumulator (frees its blocks).
        """
        if self.n < 2:
            raise InvalidInputError("training images",
                                    f"need at least 2 usable images, got {self.n}")
        if holdout is not None and not isinstance(holdout, HoldoutStore):
            array, holdout = holdout, HoldoutStore()
            holdout.append(array)
        n_hold = 0 if holdout is None else holdout.count
        if holdout is not None and self.n - n_hold < 2:
            raise InvalidInputError("training images", "too few images left after calibration")
        mean = self.sum / self.n
        self._scratch.clear()
        with single_blas_thread():
            return self._finalize(eps, holdout, mean, n_hold)

    def _finalize(self, eps: float, holdout: HoldoutStore | None, mean: Array, n_hold: int,
                  ) -> tuple[PatchGaussian, Array | None]:
        p, d = self.n_patches, self.dim
        if self._numpy:
            whitener = np.empty((p, d, d), dtype=np.float32)   # pages committed block by block
            hold_dist = np.empty((n_hold, p)) if n_hold else None
        else:
            whitener = torch.empty((p, d, d), dtype=torch.float32, device=self.device)
            hold_dist = (torch.empty((n_hold, p), dtype=torch.float64, device=self.device)
                         if n_hold else None)

        def one_block(i: int) -> None:
            lo, hi = self.bounds[i]
            second = self._full(self.second[i])
            self.second[i] = None
            if holdout is not None:
                # Statistics of the other images: the held-out ones subtracted, chunk by chunk.
                rest_n = self.n - n_hold
                rest_second, rest_sum = _copy(second), _copy(self.sum[lo:hi])
                for hb in holdout.chunks(lo, hi):
                    hb = self._as_f64(hb)
                    rest_second -= _gram(hb)
                    rest_sum -= hb.sum(1)
                rest_mean = rest_sum / rest_n
                m_rest = _whitener(_cov(rest_second, rest_mean, rest_n, eps), self._numpy)
                col = 0
                for hb in holdout.chunks(lo, hi):
                    z = (self._as_f64(hb) - rest_mean[:, None, :]) @ m_rest
                    hold_dist[col:col + z.shape[1], lo:hi] = (z * z).sum(-1).T
                    col += z.shape[1]
            whitener[lo:hi] = _whitener(_cov(second, mean[lo:hi], self.n, eps), self._numpy)

        # Blocks are independent and write disjoint rows. On the CPU the backbone is idle
        # now, so they run on every core torch may use (each with one BLAS thread).
        workers = min(len(self.bounds), torch.get_num_threads()) if self._numpy else 1
        if workers > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(one_block, range(len(self.bounds))))
        else:
            for i in range(len(self.bounds)):
                one_block(i)
        self.second = []
        if self._numpy:
            return PatchGaussian(mean.astype(np.float32), whitener), hold_dist
        return PatchGaussian(mean.float(), whitener), hold_dist


def _copy(x: Array) -> Array:
    return x.clone() if _is_torch(x) else x.copy()


def _gram(x: Array) -> Array:
    """Per-patch xᵀx for x of shape (p, B, d)."""
    if isinstance(x, np.ndarray):
        # A contiguous transpose keeps numpy's stacked matmul on its plain BLAS path.
        return np.matmul(np.ascontiguousarray(x.transpose(0, 2, 1)), x)
    return x.transpose(1, 2) @ x


def _symmetric(lower: Array) -> Array:
    """The symmetric matrices whose lower triangles are given."""
    if _is_torch(lower):
        return torch.tril(lower) + torch.tril(lower, -1).transpose(1, 2)
    return np.tril(lower) + np.tril(lower, -1).transpose(0, 2, 1)


def _cov(second: Array, mean: Array, n: int, eps: float) -> Array:
    """(Σxxᵀ − n μμᵀ)/(n − 1) + eps·I, written into ``second`` to save memory."""
    outer = mean[:, :, None] * mean[:, None, :]
    outer *= n
    second -= outer
    second /= n - 1
    d = second.shape[-1]
    second.reshape(second.shape[0], d * d)[:, :: d + 1] += eps   # the diagonal, in place
    return second


def _whitener(cov: Array, use_numpy: bool) -> Array:
    """Upper-triangular M with M Mᵀ = cov⁻¹ (M = L⁻ᵀ for cov = L Lᵀ)."""
    if use_numpy:
        try:
            chol = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            raise InvalidInputError("training images", "covariance is not positive definite; "
                                    "increase eps") from None
        # chol[k].T is an F-ordered view of Lᵀ; inverting it in place leaves M = L⁻ᵀ there,
        # so chol[k] holds Mᵀ and the transposed view of chol is M, with no extra copies.
        for k in range(chol.shape[0]):
            upper = chol[k].T
            inv, info = scipy.linalg.lapack.dtrtri(upper, lower=0, overwrite_c=1)
            if info != 0:
                raise InvalidInputError("training images", "singular covariance; increase eps")
            if not np.shares_memory(inv, upper):
                upper[...] = inv
        return chol.transpose(0, 2, 1)
    chol, info = torch.linalg.cholesky_ex(cov)
    if int(info.max()) != 0:
        raise InvalidInputError("training images", "covariance is not positive definite; "
                                "increase eps")
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device).expand_as(cov)
    inv = torch.linalg.solve_triangular(chol, eye, upper=False)
    return inv.transpose(1, 2)
