"""The fitted per-patch Gaussians: what scoring needs from training."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

Array = np.ndarray | torch.Tensor


@dataclass
class PatchGaussian:
    """Fitted per-patch Gaussians: mean (P, d) and whitener (P, d, d), float32.

    The whitener M is upper-triangular with M Mᵀ = Σ⁻¹, so the squared Mahalanobis distance
    of x is the plain sum of squares ‖(x − μ) M‖².
    """

    mean: Array
    whitener: Array

    @property
    def n_patches(self) -> int:
        return int(self.mean.shape[0])

    @property
    def dim(self) -> int:
        return int(self.mean.shape[1])
