"""Leave-one-out distances of the calibration images, from the final model in closed form.

The calibration images were also used to fit the Gaussians. Each one's squared Mahalanobis
distance under the Gaussians of the *other* n − 1 images follows from its distance under
the final ones (``leave_one_out``), so thresholds come from images the model did not see at
the cost of one small product per image, not a second factorization.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from .distances import squared_distances
from .holdout import HoldoutStore
from .layout import BLOCK_BYTES

Array = np.ndarray | torch.Tensor
# Calibration distances are computed in float32 unless an image's share of its patch's
# scatter is above this: leaving it out then magnifies the rounding (by 1 / (1 - share)).
MAX_LOO_SHARE = 0.9
TRIAL_PATCHES = 8       # tried in float32 before a block's precision is chosen


def leave_one_out(sq: Array, n: int) -> Array:
    """Squared distances of training samples under the Gaussian of the *other* n − 1, from
    their squared distances ``sq`` under the Gaussian of all n.

    Dropping sample x moves the mean by (x − μ)/(n − 1) and the scatter by a rank-one term,
    so by Sherman-Morrison D²₋ = (n − 2) n² D² / ((n − 1)((n − 1)² − n D²)) (the classical
    deleted Mahalanobis distance). With the eps·I regularization it is exact when the
    left-out model's eps is eps·(n − 1)/(n − 2), a shade more (0.5 % at n = 200): removing
    a sample rescales the covariance, which the identity term does not follow.
    """
    if n < 3:
        raise ValueError("leave-one-out distances need n >= 3")
    return (n - 2) * n * n * sq / ((n - 1) * ((n - 1) ** 2 - n * sq))


def calibration_distances(holdout: HoldoutStore, lo: int, hi: int, n: int,
                          exact: tuple[Array, Array],
                          fast: tuple[np.ndarray, np.ndarray] | None = None) -> Array:
    """(H, hi − lo) leave-one-out squared distances of the stored calibration images on
    patches lo:hi, for a model fitted on n images.

    ``exact`` is the (mean, whitener) of those patches in float64. On the CPU ``fast``, the
    same in float32 (predict's own precision, 3x faster), is used unless leaving an image
    out would magnify the rounding: then those patches again in float64. When d is close to
    n nearly every patch is such a patch (d = 192, n = 214: 3133 of 3136), so a few patches
    are tried first and a block whose trial is mostly shaky goes to float64 directly.
    """
    if fast is None:
        return leave_one_out(_in_sample(holdout, lo, hi, *exact), n)
    mean32, whitener32 = fast
    trial = min(hi - lo, TRIAL_PATCHES)
    if len(_shaky(_in_sample(holdout, lo, lo + trial, mean32[:trial], whitener32[:trial]),
                  n)) * 2 > trial:
        return leave_one_out(_in_sample(holdout, lo, hi, *exact), n)
    sq = _in_sample(holdout, lo, hi, mean32, whitener32)
    shaky = _shaky(sq, n)
    mean, whitener = exact
    if len(shaky) == hi - lo:
        sq = _in_sample(holdout, lo, hi, mean, whitener)
    elif len(shaky):
        sq[:, shaky] = _in_sample(holdout, lo, hi, mean[shaky], whitener[shaky], patches=shaky)
    return leave_one_out(sq, n)


def _shaky(sq: np.ndarray, n: int) -> np.ndarray:
    """Patches (columns of the (H, p) squared distances) where some image's share of the
    scatter is above MAX_LOO_SHARE, or a distance is not finite."""
    return np.flatnonzero((~np.isfinite(sq) | (n * sq > MAX_LOO_SHARE * (n - 1) ** 2)).any(0))


def _in_sample(holdout: HoldoutStore, lo: int, hi: int, mean: Array, whitener: Array,
               patches: np.ndarray | None = None) -> Array:
    """(H, p) squared distances of the stored embeddings of patches lo:hi (only
    ``patches`` of them, if given) under the final whitener and mean of those patches,
    in their precision."""
    on_cpu = isinstance(whitener, np.ndarray)
    parts = []
    for hb in _holdout_groups(holdout, lo, hi, None if on_cpu else whitener.device):
        if on_cpu:
            if patches is not None:
                hb = hb[patches]
            sq = np.empty((hb.shape[1], hb.shape[0]))
            squared_distances(hb, mean, whitener, out=sq)
            parts.append(sq)
        else:
            hb -= mean[:, None, :]
            z = hb @ whitener
            parts.append((z * z).sum(-1).T)
    return np.concatenate(parts) if on_cpu else torch.cat(parts)


def _holdout_groups(holdout: HoldoutStore, lo: int, hi: int, device: torch.device | None,
                    ) -> Iterator[Array]:
    """Calibration embeddings of patches lo:hi as fresh arrays (hi − lo, k, d): float32
    on the CPU (``device`` None; the distance kernel centres them in the whitener's
    precision), float64 tensors on ``device`` otherwise.

    Stored batches are joined up to about BLOCK_BYTES, so each product covers many
    images while memory stays bounded.
    """
    group: list[Array] = []
    size = 0
    for hb in holdout.chunks(lo, hi):
        group.append(hb)
        size += hb.shape[0] * hb.shape[1] * hb.shape[2] * 8
        if size >= BLOCK_BYTES:
            yield _joined(group, device)
            group, size = [], 0
    if group:
        yield _joined(group, device)


def _joined(parts: list[Array], device: torch.device | None) -> Array:
    if device is not None:
        return torch.cat([torch.as_tensor(p, device=device).to(torch.float64) for p in parts],
                         dim=1)
    rows, _, d = parts[0].shape
    out = np.empty((rows, sum(p.shape[1] for p in parts), d), np.float32)
    col = 0
    for p in parts:
        out[:, col:col + p.shape[1]] = p
        col += p.shape[1]
    return out
