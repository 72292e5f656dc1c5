"""Decision thresholds from normal images only.

PaDiM gives distances, not probabilities, so the threshold must come from data. Without
defective examples the honest choice is a quantile of scores on normal images the model did
not train on: a threshold at false-positive rate ``fpr`` flags about that fraction of normal
parts. (Picking the minimum score, as an "adaptive" threshold does when it sees only normals,
would flag every normal part.)
"""

from __future__ import annotations

import numpy as np

from .errors import InvalidInputError

# Mahalanobis distances of normal patches are of the order of sqrt(d); anything below this is
# float32 rounding noise (e.g. an image identical to all training images).
MIN_THRESHOLD = 1e-3
MIN_CALIBRATION_IMAGES = 1
MIN_FIT_IMAGES = 2


def is_ng(scores: np.ndarray | float, threshold: float) -> np.ndarray:
    """The verdict rule, the one every entry point calls: NG where a score is at or above the
    threshold (as in scikit-learn's curves and the defect masks), and NG where a score is not
    a number: a part the model could not score is never passed as good.
    """
    scores = np.asarray(scores, dtype=np.float64)
    return ~np.isfinite(scores) | (scores >= threshold)


def calibration_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rest, calibration) of ``n`` normal images, reproducible from ``seed``.

    Every image is fitted; the calibration share is scored leave-one-out. At least
    ``MIN_FIT_IMAGES`` stay outside it; with too few images there is no calibration share
    and the caller must calibrate on training scores (and say so).
    """
    if not 0.0 <= fraction < 1.0:
        raise InvalidInputError("calibration_fraction", f"must be in [0, 1), got {fraction}")
    n_cal = int(round(fraction * n))
    if fraction > 0 and n >= MIN_FIT_IMAGES + MIN_CALIBRATION_IMAGES:
        n_cal = max(n_cal, MIN_CALIBRATION_IMAGES)
    n_cal = min(n_cal, max(0, n - MIN_FIT_IMAGES))
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_cal:]), np.sort(order[:n_cal])


def threshold_at_fpr(normal_scores: np.ndarray, fpr: float) -> float:
    """The score above which a fraction ``fpr`` of these normal scores lie (linear quantile).

    Returned just above the quantile, so that with the rule "score >= threshold is NG" a
    normal score equal to the quantile stays OK, and never below ``MIN_THRESHOLD``.
    """
    scores = np.asarray(normal_scores, dtype=np.float64).ravel()
    if scores.size == 0:
        raise InvalidInputError("calibration", "no normal scores to set a threshold from")
    if not 0.0 <= fpr < 1.0:
        raise InvalidInputError("fpr", f"must be in [0, 1), got {fpr}")
    quantile = float(np.quantile(scores, 1.0 - fpr))
    return max(float(np.nextafter(quantile, np.inf)), MIN_THRESHOLD)


def is_ng_by_area(scores: np.ndarray, n_defect_regions: np.ndarray) -> np.ndarray:
    """The area verdict rule: NG where an image has a defect region of at least the minimum
    defect area (``regions.defect_regions``), and, as in ``is_ng``, where its score is not a
    number."""
    scores = np.asarray(scores, dtype=np.float64)
    return ~np.isfinite(scores) | (np.asarray(n_defect_regions) > 0)
