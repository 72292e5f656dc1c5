"""Anomaly maps: batched Mahalanobis distance per patch, upsampling and Gaussian smoothing.

No Python loop over single patches: batched matrix products over a few patches at a time
(``gaussian.squared_distances``, sized to stay in cache). On the CPU they run through numpy
(OpenBLAS), several times faster than torch's batched small matrix products on this kind of
machine, with blocks of patches drawn by torch's CPU threads (numpy releases the GIL); on
CUDA it is one batched product on the GPU.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from .gaussian import PatchGaussian, squared_distances
from .threads import default_workers, in_threads, patch_ranges, single_blas_thread

DEFAULT_SIGMA = 4.0


def mahalanobis(embedding: torch.Tensor, gaussian: PatchGaussian,
                workers: int | None = None) -> torch.Tensor:
    """Mahalanobis distance of every patch: (H, W, B, d) → (B, H, W) float32."""
    h, w, b, d = embedding.shape
    x = embedding.reshape(h * w, b, d)
    if isinstance(gaussian.whitener, np.ndarray):
        x = x.numpy()
        sq = np.empty((b, h * w), dtype=np.float32)

        def work(ranges: Iterable[tuple[int, int]]) -> None:
            for lo, hi in ranges:
                squared_distances(x[lo:hi], gaussian.mean[lo:hi], gaussian.whitener[lo:hi],
                                  out=sq[:, lo:hi])

        workers = workers or default_workers()
        with single_blas_thread():
            in_threads(work, patch_ranges(h * w, 8 * workers), workers)
        dist = torch.from_numpy(np.sqrt(sq, out=sq))
    else:
        z = torch.matmul(x - gaussian.mean[:, None, :], gaussian.whitener)
        dist = z.pow(2).sum(-1).sqrt().T
    return dist.reshape(b, h, w)


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """The same normalized kernel scipy.ndimage.gaussian_filter uses."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).float()


def _symmetric_index(n: int, radius: int, device: torch.device) -> torch.Tensor:
    """Indices that pad a length-n axis by ``radius`` the way scipy's mode='reflect' does."""
    idx = torch.arange(-radius, n + radius, device=device)
    period = 2 * n
    idx = torch.remainder(idx, period)
    return torch.where(idx >= n, period - 1 - idx, idx)


def gaussian_blur(maps: torch.Tensor, sigma: float = DEFAULT_SIGMA,
                  axes: tuple[int, ...] = (1, 2)) -> torch.Tensor:
    """Separable Gaussian blur of (B, H, W) maps, matching scipy.ndimage.gaussian_filter."""
    if sigma <= 0:
        return maps
    kernel = gaussian_kernel1d(sigma).to(maps.device, maps.dtype)
    radius = (len(kernel) - 1) // 2
    x = maps.unsqueeze(1)
    for axis in axes:
        dim = axis + 1
        x = x.index_select(dim, _symmetric_index(x.shape[dim], radius, maps.device))
        shape = [1, 1, 1, 1]
        shape[dim] = -1
        x = F.conv2d(x, kernel.view(shape))
    return x.squeeze(1)


def image_scores(maps: torch.Tensor, top_percent: float = 0.0) -> torch.Tensor:
    """Image score: the maximum of its anomaly map (``top_percent`` 0, the reference), else
    the mean of its top ``top_percent`` % of pixels (at least one pixel).

    The mean over a small share of the map rewards a defect that is both strong and not a
    single hot pixel; large defects then outscore noise spikes on good parts.
    """
    flat = maps.flatten(1)
    if top_percent <= 0:
        return flat.amax(1)
    k = max(1, min(flat.shape[1], round(flat.shape[1] * top_percent / 100.0)))
    return flat.topk(k, dim=1, sorted=False).values.mean(1)



class MapRenderer:
    """Patch distances (B, h, w) → smoothed pixel maps (B, size, size) in two matmuls.

    Bilinear upsampling and the Gaussian blur are both linear and separable, so together
    they are one (size × h) matrix per axis: map = A_h · D · A_wᵀ. Same numbers as
    upsampling then blurring (the reference order), at a fraction of the cost.
    """

    def __init__(self, grid: tuple[int, int], size: int, sigma: float = DEFAULT_SIGMA,
                 device: torch.device | str = "cpu") -> None:
        self.grid, self.size, self.sigma = tuple(grid), int(size), float(sigma)
        self.rows = self._axis(self.grid[0]).to(device)
        self.cols_t = self._axis(self.grid[1]).T.contiguous().to(device)

    def _axis(self, n: int) -> torch.Tensor:
        eye = torch.eye(n, dtype=torch.float64).view(n, 1, n, 1)
        up = F.interpolate(eye, size=(self.size, 1), mode="bilinear", align_corners=False)
        basis = up[:, 0, :, 0].T.contiguous()                    # (size, n): column j = e_j
        if self.sigma > 0:
            basis = gaussian_blur(basis.T.unsqueeze(-1), self.sigma, axes=(1,))[..., 0].T
        return basis.float().contiguous()

    def __call__(self, distances: torch.Tensor) -> torch.Tensor:
        b, h, w = distances.shape
        tmp = (distances.reshape(b * h, w) @ self.cols_t).reshape(b, h, self.size)
        return torch.matmul(self.rows, tmp)
