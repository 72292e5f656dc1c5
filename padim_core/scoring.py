"""Anomaly maps: batched Mahalanobis distance per patch, upsampling and Gaussian smoothing.

No Python loop over patches: one batched matrix product per batch of images. On the CPU it
runs through numpy (OpenBLAS), which is several times faster than torch's batched small
matrix products on this kind of machine; on CUDA it stays on the GPU.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .gaussian import PatchGaussian

DEFAULT_SIGMA = 4.0


def to_patch_major(embedding: torch.Tensor) -> torch.Tensor:
    """(B, d, H, W) → (H·W, B, d), the layout the per-patch matrix products want."""
    b, d, h, w = embedding.shape
    return embedding.permute(2, 3, 0, 1).reshape(h * w, b, d).contiguous()


def mahalanobis(embedding: torch.Tensor, gaussian: PatchGaussian) -> torch.Tensor:
    """Mahalanobis distance of every patch: (B, d, H, W) → (B, H, W) float32."""
    b, _, h, w = embedding.shape
    x = to_patch_major(embedding)
    if isinstance(gaussian.whitener, np.ndarray):
        diff = x.numpy() - gaussian.mean[:, None, :]
        z = np.matmul(diff, gaussian.whitener)
        sq = np.einsum("pbd,pbd->bp", z, z)
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


def gaussian_blur(maps: torch.Tensor, sigma: float = DEFAULT_SIGMA) -> torch.Tensor:
    """Separable Gaussian blur of (B, H, W) maps, matching scipy.ndimage.gaussian_filter."""
    if sigma <= 0:
        return maps
    kernel = gaussian_kernel1d(sigma).to(maps.device)
    radius = (len(kernel) - 1) // 2
    _, h, w = maps.shape
    x = maps.unsqueeze(1)
    x = x.index_select(2, _symmetric_index(h, radius, maps.device))
    x = F.conv2d(x, kernel.view(1, 1, -1, 1))
    x = x.index_select(3, _symmetric_index(w, radius, maps.device))
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    return x.squeeze(1)


def anomaly_maps(distances: torch.Tensor, size: int, sigma: float = DEFAULT_SIGMA) -> torch.Tensor:
    """Patch distances (B, h, w) → smoothed pixel maps (B, size, size), as in PaDiM."""
    up = F.interpolate(distances.unsqueeze(1), size=(size, size), mode="bilinear",
                       align_corners=False).squeeze(1)
    return gaussian_blur(up, sigma)


def image_scores(maps: torch.Tensor) -> torch.Tensor:
    """Image score = the maximum of its anomaly map."""
    return maps.flatten(1).amax(1)

