"""PaDiM patch embeddings: three feature maps on one grid, reduced to ``d`` channels.

The reference code concatenates all channels (layer 2 and 3 replicated onto layer 1's grid,
which is nearest-neighbour upsampling) and then keeps a random subset of ``d`` channels.
Selecting the channels first and upsampling only those gives the same numbers with less work.
Kim et al. 2021 (arXiv 2105.14737) replace the subset by a semi-orthogonal projection.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InvalidInputError

REDUCTIONS = ("random", "orthogonal")


def random_channel_subset(total: int, d: int, seed: int) -> np.ndarray:
    """Sorted indices of ``d`` channels out of ``total``, reproducible from ``seed``."""
    if not 1 <= d <= total:
        raise InvalidInputError("d", f"must be between 1 and {total} for this backbone, got {d}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(total, size=d, replace=False)).astype(np.int64)


def semi_orthogonal_projection(total: int, d: int, seed: int) -> np.ndarray:
    """A (total, d) matrix with orthonormal columns (QR of a seeded Gaussian matrix)."""
    if not 1 <= d <= total:
        raise InvalidInputError("d", f"must be between 1 and {total} for this backbone, got {d}")
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((total, d)))
    return (q * np.sign(np.diag(r))).astype(np.float32)


class Embedder:
    """Turns backbone feature maps into (B, d, H, W) embeddings on layer 1's grid."""

    def __init__(self, channels: tuple[int, ...], channel_index: np.ndarray | None = None,
                 projection: np.ndarray | None = None) -> None:
        if (channel_index is None) == (projection is None):
            raise ValueError("give exactly one of channel_index or projection")
        self.channels = tuple(int(c) for c in channels)
        self.channel_index = channel_index
        self.projection = projection
        self._per_layer: list[torch.Tensor] = []
        if channel_index is not None:
            bounds = np.cumsum((0, *self.channels))
            for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
                local = channel_index[(channel_index >= lo) & (channel_index < hi)] - lo
                self._per_layer.append(torch.as_tensor(local, dtype=torch.long))

    @property
    def dim(self) -> int:
        if self.channel_index is not None:
            return int(len(self.channel_index))
        return int(self.projection.shape[1])

    def __call__(self, features: list[torch.Tensor]) -> torch.Tensor:
        size = features[0].shape[-2:]
        if self.channel_index is not None:
            parts = []
            for feat, idx in zip(features, self._per_layer, strict=True):
                if len(idx) == 0:
                    continue
                feat = feat.index_select(1, idx.to(feat.device))
                if feat.shape[-2:] != size:
                    feat = F.interpolate(feat, size=size, mode="nearest")
                parts.append(feat)
            return torch.cat(parts, dim=1)
        full = torch.cat([f if f.shape[-2:] == size else F.interpolate(f, size=size, mode="nearest")
                          for f in features], dim=1)
        proj = torch.as_tensor(self.projection, device=full.device, dtype=full.dtype)
        return torch.einsum("bchw,cd->bdhw", full, proj)
