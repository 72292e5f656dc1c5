"""Tests for padim_core.visualize."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from padim_core.errors import InvalidInputError
from padim_core.visualize import (
    COLORMAPS,
    defect_mask,
    draw_contours,
    encode_png,
    heatmap,
    overlay,
)


def _jet_rgb(level: int) -> np.ndarray:
    """RGB colour OpenCV's jet gives to a uint8 level."""
    bgr = cv2.applyColorMap(np.array([[level]], dtype=np.uint8), cv2.COLORMAP_JET)
    return bgr[0, 0, ::-1]


def test_colormaps_listed_and_read_only() -> None:
    for name in ("jet", "turbo", "inferno", "viridis", "magma"):
        assert name in COLORMAPS
    assert COLORMAPS["jet"] == cv2.COLORMAP_JET
    with pytest.raises(TypeError):
        COLORMAPS["mine"] = 0  # type: ignore[index]


def test_heatmap_shape_dtype_and_rgb_order() -> None:
    amap = np.linspace(0.0, 1.0, 20 * 30, dtype=np.float32).reshape(20, 30)
    rgb = heatmap(amap, 0.0, 1.0)
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8
    # jet: low values are blue, high values are red -> RGB order, not BGR
    assert rgb[0, 0, 2] > 100 and rgb[0, 0, 0] < 50
    assert rgb[-1, -1, 0] > 100 and rgb[-1, -1, 2] < 50
    np.testing.assert_array_equal(rgb[0, 0], _jet_rgb(0))
    np.testing.assert_array_equal(rgb[-1, -1], _jet_rgb(255))


def test_heatmap_shared_scale_clips_both_maps() -> None:
    low = np.full((4, 4), 2.0)  # half-way on a 0..4 scale
    high = np.full((4, 4), 10.0)  # above vmax -> clipped to the top colour
    below = np.full((4, 4), -3.0)  # below vmin -> clipped to the bottom colour
    a, b, c = (heatmap(m, 0.0, 4.0) for m in (low, high, below))
    np.testing.assert_array_equal(a[0, 0], _jet_rgb(128))  # round(2/4 * 255) = 128
    np.testing.assert_array_equal(b[0, 0], _jet_rgb(255))
    np.testing.assert_array_equal(c[0, 0], _jet_rgb(0))
    # the same value gets the same colour in two different maps on one scale
    mixed = np.array([[2.0, 10.0]])
    m = heatmap(mixed, 0.0, 4.0)
    np.testing.assert_array_equal(m[0, 0], a[0, 0])
    np.testing.assert_array_equal(m[0, 1], b[0, 0])
    # whereas per-map scaling would have coloured "low" as the top colour
    assert not np.array_equal(heatmap(low, 0.0, 2.0)[0, 0], a[0, 0])


def test_heatmap_rejects_bad_inputs() -> None:
    with pytest.raises(InvalidInputError, match="colormap"):
        heatmap(np.zeros((2, 2)), 0, 1, colormap="rainbow-unicorn")
    with pytest.raises(InvalidInputError, match="vmax"):
        heatmap(np.zeros((2, 2)), 1, 0)
    with pytest.raises(InvalidInputError, match="anomaly_map"):
        heatmap(np.zeros((2, 2, 2)), 0, 1)
    flat = heatmap(np.array([[0.0, 1.0]]), 0.5, 0.5)  # vmin == vmax: a step
    np.testing.assert_array_equal(flat[0, 0], _jet_rgb(0))
    np.testing.assert_array_equal(flat[0, 1], _jet_rgb(255))


def test_overlay_blends_and_resizes() -> None:
    image = np.full((8, 8, 3), 100, dtype=np.uint8)
    amap = np.zeros((8, 8))
    out = overlay(image, amap, 0.0, 1.0, alpha=0.5)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    expected = np.rint(0.5 * 100 + 0.5 * _jet_rgb(0).astype(float)).astype(np.uint8)
    np.testing.assert_allclose(out[3, 3].astype(int), expected.astype(int), atol=1)
    np.testing.assert_array_equal(overlay(image, amap, 0, 1, alpha=0.0), image)
    # a map of another size is resized to the image
    out2 = overlay(np.zeros((16, 12), dtype=np.uint8), np.ones((4, 3)), 0, 1, alpha=1.0)
    assert out2.shape == (16, 12, 3)
    np.testing.assert_array_equal(out2[5, 5], _jet_rgb(255))
    with pytest.raises(InvalidInputError, match="alpha"):
        overlay(image, amap, 0, 1, alpha=1.5)
    with pytest.raises(InvalidInputError, match="uint8"):
        overlay(image.astype(np.float32), amap, 0, 1)


def test_defect_mask_threshold_inclusive() -> None:
    amap = np.array([[0.1, 0.5], [0.7, 0.49]])
    np.testing.assert_array_equal(defect_mask(amap, 0.5), [[False, True], [True, False]])
    assert defect_mask(amap, 0.5).dtype == np.bool_


def test_draw_contours_colours_the_outline_only() -> None:
    image = np.zeros((20, 20, 3), dtype=np.uint8)
    mask = np.zeros((20, 20), dtype=bool)
    mask[5:15, 5:15] = True
    out = draw_contours(image, mask, color=(255, 0, 0), thickness=1)
    assert out.shape == image.shape and out.dtype == np.uint8
    red = np.all(out == (255, 0, 0), axis=2)
    # the outline of the square is red, its inside and the far background are not
    assert red[5, 5] and red[5, 10] and red[14, 14] and red[10, 5]
    assert not red[10, 10] and not red[0, 0] and not red[19, 19]
    assert red.sum() == 36  # perimeter of a 10x10 square, thickness 1
    assert not red[~mask].any()  # thickness 1: drawn on the region's boundary pixels
    assert image.sum() == 0  # input untouched


def test_draw_contours_empty_mask_draws_nothing() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(10, 12, 3), dtype=np.uint8)
    out = draw_contours(image, np.zeros((10, 12), dtype=bool))
    np.testing.assert_array_equal(out, image)
    assert out is not image


def test_encode_png_round_trip_keeps_rgb_order() -> None:
    rgb = np.zeros((3, 4, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # red
    rgb[1, 2] = (1, 2, 3)
    data = encode_png(rgb)
    assert isinstance(data, bytes) and data[:8] == b"\x89PNG\r\n\x1a\n"
    decoded_bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(decoded_bgr[..., ::-1], rgb)
    grey = encode_png(np.full((2, 2), 7, dtype=np.uint8))
    assert cv2.imdecode(np.frombuffer(grey, np.uint8), cv2.IMREAD_UNCHANGED).shape == (2, 2)
    with pytest.raises(InvalidInputError, match="uint8"):
        encode_png(rgb.astype(np.float64))
