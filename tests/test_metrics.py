"""Tests for padim_core.metrics with hand-computed expected values."""

from __future__ import annotations

import numpy as np
import pytest

from padim_core.errors import InvalidInputError
from padim_core.metrics import (
    aupro,
    f1_at_threshold,
    f1_optimal_threshold,
    image_auroc,
    pixel_auroc,
    pixel_f1_at_threshold,
    pixel_f1_optimal_threshold,
    pr_curve_points,
    pro_curve,
    roc_curve_points,
)

# --------------------------------------------------------------------------- AUPRO
#
# Hand-worked example, one 4x4 image.
#
#   mask                 scores
#   1 1 0 0              0.9 0.1 0.1 0.1
#   0 0 0 0              0.8 0.1 0.1 0.1
#   0 0 0 1              0.6 0.5 0.1 0.7
#   0 0 0 0              0.1 0.1 0.1 0.1
#
# Regions (8-connectivity): A = {(0,0), (0,1)} (size 2), B = {(2,3)} (size 1); 2 regions.
# Per-pixel PRO contributions: A pixels 1/(2*2) = 0.25, B pixel 1/(1*2) = 0.5.
# Normal pixels: 16 - 3 = 13, each adds 1/13 to FPR.
#
# Unique thresholds, descending (pixel added -> cumulative FPR, PRO):
#   t=0.9  A(0,0)                      FPR 0     PRO 0.25
#   t=0.8  normal (1,0)                FPR 1/13  PRO 0.25
#   t=0.7  B(2,3)                      FPR 1/13  PRO 0.75
#   t=0.6  normal (2,0)                FPR 2/13  PRO 0.75
#   t=0.5  normal (2,1)                FPR 3/13  PRO 0.75
#   t=0.1  A(0,1) + 10 normal (tie)    FPR 1     PRO 1.0
# Curve: (0,0) (0,.25) (1/13,.25) (1/13,.75) (2/13,.75) (3/13,.75) (1,1)
#
# Area up to FPR 0.3 (trapezoid rule):
#   [0, 1/13]     PRO 0.25 flat          -> 0.25/13
#   [1/13, 3/13]  PRO 0.75 flat          -> 1.5/13
#   [3/13, 0.3]   on the tie segment (3/13,.75)-(1,1): 0.3 - 3/13 = 0.9/13 is 0.09 of the
#                 segment width 10/13, so PRO(0.3) = 0.75 + 0.25*0.09 = 0.7725
#                 -> 0.9/13 * (0.75 + 0.7725)/2 = 0.685125/13
#   total = 2.435125/13;  AUPRO = total / 0.3 = 2.435125/3.9 = 0.624391025641...
# Full curve (fpr_limit = 1): 0.25/13 + 1.5/13 + 10/13 * (0.75+1)/2 = 10.5/13 = 0.807692...
# fpr_limit = 0.1: 0.25/13 + 0.75*(0.1 - 1/13) = 0.475/13; / 0.1 = 4.75/13 = 0.365384...

HAND_MASK = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]], dtype=bool)[None]
HAND_MAP = np.array(
    [
        [0.9, 0.1, 0.1, 0.1],
        [0.8, 0.1, 0.1, 0.1],
        [0.6, 0.5, 0.1, 0.7],
        [0.1, 0.1, 0.1, 0.1],
    ],
    dtype=np.float32,
)[None]


def test_pro_curve_hand_worked_points() -> None:
    fpr, pro = pro_curve(HAND_MASK, HAND_MAP)
    np.testing.assert_allclose(fpr, [0, 0, 1 / 13, 1 / 13, 2 / 13, 3 / 13, 1])
    np.testing.assert_allclose(pro, [0, 0.25, 0.25, 0.75, 0.75, 0.75, 1.0])


def test_aupro_hand_worked_value() -> None:
    assert aupro(HAND_MASK, HAND_MAP) == pytest.approx(2.435125 / 3.9, rel=1e-9)
    assert aupro(HAND_MASK, HAND_MAP) == pytest.approx(0.6243910256, abs=1e-9)


def test_aupro_fpr_limit_behaviour() -> None:
    assert aupro(HAND_MASK, HAND_MAP, fpr_limit=1.0) == pytest.approx(10.5 / 13, rel=1e-9)
    assert aupro(HAND_MASK, HAND_MAP, fpr_limit=0.1) == pytest.approx(4.75 / 13, rel=1e-9)
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(InvalidInputError, match="fpr_limit"):
            aupro(HAND_MASK, HAND_MAP, fpr_limit=bad)


def _two_image_case() -> tuple[np.ndarray, np.ndarray]:
    """Image 0: one 3x3 defect; image 1: good (no regions)."""
    masks = np.zeros((2, 8, 8), dtype=bool)
    masks[0, 2:5, 2:5] = True
    rng = np.random.default_rng(1)
    maps = rng.uniform(0.0, 0.4, size=masks.shape).astype(np.float32)
    return masks, maps


def test_aupro_perfect_detector_is_one() -> None:
    masks, maps = _two_image_case()
    maps[masks] += 1.0  # every anomalous pixel above every normal pixel
    assert aupro(masks, maps) == pytest.approx(1.0, abs=1e-12)
    assert pixel_auroc(masks, maps) == pytest.approx(1.0)


def test_aupro_inverted_detector_is_zero() -> None:
    masks, maps = _two_image_case()
    maps[masks] -= 1.0  # every anomalous pixel below every normal pixel
    assert aupro(masks, maps) == pytest.approx(0.0, abs=1e-12)
    assert pixel_auroc(masks, maps) == pytest.approx(0.0)


def test_aupro_regions_count_equally_whatever_their_size() -> None:
    # one 1-pixel region and one 20-pixel region (apart, so two regions)
    masks = np.zeros((1, 10, 10), dtype=bool)
    masks[0, 0, 0] = True
    masks[0, 5:9, 4:9] = True
    small_found = np.zeros(masks.shape, dtype=np.float32)
    small_found[0, 0, 0] = 2.0  # only the small region scores above all normal pixels
    small_found[0, 5:9, 4:9] = -1.0  # the large one below all of them
    # PRO is 0.5 from FPR 0 until FPR 1: AUPRO 0.5 (pixel-weighted it would be 1/21)
    assert aupro(masks, small_found) == pytest.approx(0.5, abs=1e-12)
    large_found = -small_found
    assert aupro(masks, large_found) == pytest.approx(0.5, abs=1e-12)


def test_aupro_uses_8_connectivity() -> None:
    # a diagonal pair (one region under 8-connectivity) + one isolated pixel; the detector
    # finds only the isolated pixel.
    masks = np.zeros((1, 6, 6), dtype=bool)
    masks[0, 0, 0] = masks[0, 1, 1] = True  # one region under 8-connectivity
    masks[0, 4, 4] = True  # second region
    maps = np.zeros(masks.shape, dtype=np.float32)
    maps[0, 4, 4] = 1.0
    maps[0, 0, 0] = maps[0, 1, 1] = -1.0
    # 8-connectivity: 2 regions, PRO 1/2. (4-connectivity would give 3 regions, PRO 1/3.)
    assert aupro(masks, maps) == pytest.approx(0.5, abs=1e-12)


def test_aupro_good_images_only_add_normal_pixels() -> None:
    # appending a good image whose pixels all score below the defect changes nothing
    mask = HAND_MASK.copy()
    good_mask = np.zeros_like(mask)
    good_map = np.full(HAND_MAP.shape, 0.0, dtype=np.float32)
    masks = np.concatenate([mask, good_mask])
    maps = np.concatenate([HAND_MAP, good_map])
    # 29 normal pixels now: points (0,.25) (1/29,.25) (1/29,.75) (2/29,.75) (3/29,.75)
    # tie at 0.1: (13/29, 1); then 16 zeros of the good image: (1, 1)
    fpr, pro = pro_curve(masks, maps)
    np.testing.assert_allclose(fpr, [0, 0, 1 / 29, 1 / 29, 2 / 29, 3 / 29, 13 / 29, 1])
    np.testing.assert_allclose(pro, [0, 0.25, 0.25, 0.75, 0.75, 0.75, 1, 1])


def test_aupro_without_regions_raises() -> None:
    masks = np.zeros((2, 4, 4), dtype=bool)
    maps = np.ones((2, 4, 4), dtype=np.float32)
    with pytest.raises(InvalidInputError, match="no anomalous regions"):
        aupro(masks, maps)


def test_pixel_inputs_validated() -> None:
    with pytest.raises(InvalidInputError, match="maps"):
        aupro(HAND_MASK, HAND_MAP[:, :3])
    bad = HAND_MAP.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        pixel_auroc(HAND_MASK, bad)


# --------------------------------------------------------------------------- AUROC / F1


def test_image_auroc_known_value() -> None:
    # positives 0.8, 0.4; negatives 0.5, 0.1. Pairs (pos > neg): (0.8,0.5) (0.8,0.1) (0.4,0.1)
    # = 3 of 4 -> 0.75
    assert image_auroc([1, 1, 0, 0], [0.8, 0.4, 0.5, 0.1]) == pytest.approx(0.75)
    # a tie counts one half: pos 0.5 vs neg 0.5 -> (1 + 0.5) / 2
    assert image_auroc([1, 1, 0, 0], [0.9, 0.5, 0.5, 0.1]) == pytest.approx(0.875)


def test_image_auroc_single_class_is_clear_error() -> None:
    with pytest.raises(InvalidInputError, match="labels") as info:
        image_auroc([0, 0, 0], [0.1, 0.2, 0.3])
    assert "only normal" in str(info.value)
    with pytest.raises(InvalidInputError, match="only anomalous"):
        image_auroc([1, 1], [0.1, 0.2])


def test_image_inputs_validated() -> None:
    with pytest.raises(InvalidInputError, match="scores"):
        image_auroc([0, 1], [0.1])
    with pytest.raises(InvalidInputError, match="labels"):
        image_auroc([0, 2], [0.1, 0.2])


def test_pixel_auroc_known_value() -> None:
    masks = np.array([[[1, 0], [0, 0]], [[0, 1], [0, 0]]], dtype=bool)
    maps = np.array([[[0.8, 0.5], [0.1, 0.2]], [[0.3, 0.4], [0.0, 0.6]]], dtype=np.float32)
    # positives 0.8, 0.4; negatives 0.5 0.1 0.2 0.3 0.0 0.6:
    # 0.8 beats 6, 0.4 beats 4 (0.1 0.2 0.3 0.0) -> 10 / 12
    assert pixel_auroc(masks, maps) == pytest.approx(10 / 12)


def test_f1_threshold_separable_case() -> None:
    labels = [0, 0, 0, 1, 1]
    scores = [0.1, 0.2, 0.3, 0.7, 0.9]
    threshold, f1 = f1_optimal_threshold(labels, scores)
    assert threshold == pytest.approx(0.7)  # lowest positive score: score >= 0.7 is anomalous
    assert f1 == pytest.approx(1.0)


def test_f1_threshold_overlapping_case() -> None:
    labels = [0, 0, 1, 0, 1, 1]
    scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    # t=0.6: P1 R1/3 F1 .5 ; t=0.5: P1 R2/3 F1 .8 ; t=0.4: P2/3 R2/3 F1 2/3 ; t=0.3: P3/4 R1
    # F1 = 6/7 ~ .857 ; t=0.2: P3/5 R1 F1 .75 -> best 0.3 with 6/7
    threshold, f1 = f1_optimal_threshold(labels, scores)
    assert threshold == pytest.approx(0.3)
    assert f1 == pytest.approx(6 / 7)
    assert f1_at_threshold(labels, scores, 0.5) == pytest.approx(0.8)
    # strict (PadimModel's "score > threshold"): 0.5 itself is no longer called anomalous
    assert f1_at_threshold(labels, scores, 0.5, strict=True) == pytest.approx(0.5)


def test_pixel_f1_threshold_separable_and_subsampled() -> None:
    rng = np.random.default_rng(3)
    masks = np.zeros((4, 32, 32), dtype=bool)
    masks[:2, 10:20, 10:20] = True
    maps = rng.uniform(0.0, 0.5, size=masks.shape).astype(np.float32)
    maps[masks] = rng.uniform(0.6, 1.0, size=int(masks.sum())).astype(np.float32)
    threshold, f1 = pixel_f1_optimal_threshold(masks, maps)
    assert f1 == pytest.approx(1.0)
    assert threshold == pytest.approx(float(maps[masks].min()))
    # forced subsample (1000 of 4096 pixels): deterministic and still separable
    t1, f1_sub = pixel_f1_optimal_threshold(masks, maps, max_pixels=1000)
    t2, _ = pixel_f1_optimal_threshold(masks, maps, max_pixels=1000)
    assert t1 == t2
    assert f1_sub == pixel_f1_at_threshold(masks, maps, t1) > 0.9     # on all the pixels
    assert 0.5 < t1 <= 1.0
    assert pixel_f1_at_threshold(masks, maps, threshold) == pytest.approx(1.0)
    assert pixel_f1_at_threshold(masks, maps, 2.0) == 0.0


def test_subsampled_best_pixel_f1_is_what_its_threshold_achieves() -> None:
    """The audit: 'best pixel F1' 0.6752 (a 2 M-pixel subsample's) was above the best any
    threshold reaches on all pixels (0.6738)."""
    rng = np.random.default_rng(7)
    masks = np.zeros((6, 64, 64), dtype=bool)
    masks[:3, 20:40, 20:40] = True
    maps = rng.normal(0.0, 1.0, masks.shape).astype(np.float32) + 1.5 * masks
    exact_t, exact = pixel_f1_optimal_threshold(masks, maps, max_pixels=10**9)
    t, f1 = pixel_f1_optimal_threshold(masks, maps, max_pixels=2000)
    assert f1 == pixel_f1_at_threshold(masks, maps, t)
    assert f1 <= exact and f1 == pytest.approx(exact, abs=0.02)


def test_curve_points_are_plain_arrays() -> None:
    labels = [0, 0, 1, 1]
    scores = [0.1, 0.4, 0.35, 0.8]
    fpr, tpr, thr = roc_curve_points(labels, scores)
    assert isinstance(fpr, np.ndarray) and fpr.shape == tpr.shape == thr.shape
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    precision, recall, pthr = pr_curve_points(labels, scores)
    assert precision.shape == recall.shape == (pthr.size + 1,)
    assert precision[-1] == 1.0 and recall[-1] == 0.0
    assert recall[0] == 1.0
