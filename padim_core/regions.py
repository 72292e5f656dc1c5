"""Regions of interest, don't-care areas and the minimum defect size.

A *region* is a boolean mask on the model's crop grid (True = inspect, False = ignore). Ignored
pixels never count: the image score is taken over inspected pixels only, defect regions are
cut to it, and thresholds are quantiles over inspected pixels of the calibration maps.

A *defect region* is an 8-connected component of ``map >= pixel_threshold`` inside the
region; components smaller than the minimum defect area (pixels of the crop) are noise: no
contour, and under the ``"area"`` verdict rule no NG.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from .errors import InvalidInputError
from .scoring import image_scores

VERDICT_RULES = ("score", "area")
"""``score``: NG when the image score reaches the image threshold (PaDiM's rule);
``area``: NG when a defect region of at least the minimum area exists."""

GREY = np.array([128, 128, 128], np.float32)
MAX_MASK_BYTES = 64 << 20


@dataclass(frozen=True)
class DefectRegion:
    """One connected defect: its area in crop pixels, bounding box (x, y, width, height)
    and the highest map value inside it."""

    area: int
    bbox: tuple[int, int, int, int]
    peak: float

    def to_dict(self) -> dict[str, Any]:
        x, y, w, h = self.bbox
        return {"area": self.area, "x": x, "y": y, "width": w, "height": h,
                "peak": round(self.peak, 6)}


# ------------------------------------------------------------------ masks in
def _decode(source: str | os.PathLike | bytes | ArrayLike, name: str) -> NDArray[Any]:
    """A mask file (path or bytes) or array as a 2-D array of grey levels."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InvalidInputError(name, "mask file not found")
        if path.stat().st_size > MAX_MASK_BYTES:
            raise InvalidInputError(name, "mask file is larger than 64 MB")
        source = path.read_bytes()
    if isinstance(source, (bytes, bytearray, memoryview)):
        raw = np.frombuffer(bytes(source), np.uint8)
        arr = cv2.imdecode(raw, cv2.IMREAD_GRAYSCALE) if raw.size else None
        if arr is None:
            raise InvalidInputError(name, "is not an image (a region mask is a PNG: white = "
                                          "inspect, black = ignore)")
        return arr
    arr = np.asarray(source)
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[..., :3].max(axis=2)
    if arr.ndim != 2 or arr.size == 0:
        raise InvalidInputError(name, f"a region mask must be a 2-D image, got shape "
                                      f"{arr.shape}")
    return arr


def load_region(source: str | os.PathLike | bytes | ArrayLike, crop: int,
                name: str | None = None) -> tuple[NDArray[np.bool_], list[str]]:
    """A region mask on the (crop, crop) grid from a PNG (path or bytes) or an array, and
    notes on what was changed.

    Levels above 127 count as 1 (inspect); a mask with more than two levels is accepted
    with a note, one of another size is resized to the crop (nearest). An all-zero mask is
    refused: there would be nothing to inspect.
    """
    name = name or (str(source) if isinstance(source, (str, os.PathLike)) else "region mask")
    arr = _decode(source, name)
    notes: list[str] = []
    if arr.dtype == np.bool_:
        mask = arr
    else:
        levels = np.unique(arr)
        if levels.size > 2:
            notes.append(f"{name}: {levels.size} grey levels; levels above 127 count as "
                         "inspect, the rest as ignore")
        mask = arr > (127 if arr.max() > 1 else 0)
    if mask.shape != (crop, crop):
        notes.append(f"{name}: {mask.shape[1]}x{mask.shape[0]} mask resized to the model's "
                     f"{crop}x{crop} crop (nearest)")
        mask = cv2.resize(mask.astype(np.uint8), (crop, crop),
                          interpolation=cv2.INTER_NEAREST_EXACT).astype(bool)
    return check_region(mask, crop, name), notes


def check_region(mask: ArrayLike, crop: int, name: str = "region") -> NDArray[np.bool_]:
    """``mask`` as a (crop, crop) bool array, or a clear error."""
    arr = np.asarray(mask)
    if arr.shape != (crop, crop):
        raise InvalidInputError(name, f"must be {crop}x{crop} (the model's crop), got "
                                      f"{arr.shape}")
    arr = arr.astype(bool)
    if not arr.any():
        raise InvalidInputError(name, "nothing to inspect: the mask is all zero (black)")
    return arr


def check_min_area(min_area: float, crop: int, name: str = "min_defect_area") -> int:
    """The minimum defect area in pixels, between 0 and the crop's area."""
    if not 0 <= min_area <= crop * crop:
        raise InvalidInputError(name, f"must be between 0 and {crop * crop} pixels (the "
                                      f"{crop}x{crop} crop), got {min_area}")
    return int(round(min_area))


def check_verdict_rule(rule: str) -> str:
    if rule not in VERDICT_RULES:
        raise InvalidInputError("verdict_rule", f"must be one of {VERDICT_RULES}, got {rule!r}")
    return rule


def area_in_pixels(area_mm2: float, mm_per_pixel: float) -> float:
    """An area in mm² as pixels of the crop, given the size of one crop pixel in mm."""
    if not mm_per_pixel > 0:
        raise InvalidInputError("mm_per_pixel", f"must be positive, got {mm_per_pixel}")
    return float(area_mm2) / (float(mm_per_pixel) ** 2)


def region_from_shapes(crop: int, shapes: Sequence[tuple[str, Sequence[tuple[float, float]]]],
                       current: NDArray[np.bool_] | None = None) -> NDArray[np.bool_] | None:
    """A mask from drawn shapes: ``(kind, polygon points (x, y) in crop pixels)``, kind
    ``"include"`` or ``"exclude"``, painted in order. With any include shape the mask starts
    empty (only what is included is inspected); else from the ``current`` region (exclude
    shapes take more away from what is inspected now), or full. None when there are no
    shapes."""
    if not shapes:
        return current
    includes = any(kind == "include" for kind, _ in shapes)
    if includes:
        mask = np.zeros((crop, crop), np.uint8)
    elif current is not None:
        mask = np.asarray(current, bool).astype(np.uint8)
    else:
        mask = np.ones((crop, crop), np.uint8)
    for kind, points in shapes:
        pts = np.round(np.asarray(points, np.float64)).astype(np.int32).reshape(-1, 1, 2)
        if len(pts) >= 3:
            cv2.fillPoly(mask, [pts], 1 if kind == "include" else 0)
    return mask.astype(bool)


# ------------------------------------------------------------------ scores and thresholds
def masked_scores(maps: torch.Tensor, region: NDArray[np.bool_] | None,
                  top_percent: float = 0.0) -> torch.Tensor:
    """Image scores (``scoring.image_scores``) over the inspected pixels of (B, H, W) maps."""
    if region is None:
        return image_scores(maps, top_percent)
    keep = torch.from_numpy(np.ascontiguousarray(region.reshape(-1))).to(maps.device)
    return image_scores(maps.flatten(1)[:, keep], top_percent)


def inspected_pixels(maps: NDArray[np.floating], region: NDArray[np.bool_] | None,
                     ) -> NDArray[np.floating]:
    """The map values the pixel threshold is a quantile of: every pixel, or the inspected
    ones."""
    return maps.reshape(-1) if region is None else maps[:, region].reshape(-1)


# ------------------------------------------------------------------ defects
def defect_regions(anomaly_map: ArrayLike, pixel_threshold: float,
                   region: NDArray[np.bool_] | None = None, min_area: int = 0,
                   ) -> tuple[list[DefectRegion], NDArray[np.bool_]]:
    """The defect regions of one map, largest first, and the mask of their pixels.

    8-connected components of ``map >= pixel_threshold`` inside ``region`` (OpenCV);
    components under ``min_area`` pixels are dropped.
    """
    arr = np.asarray(anomaly_map, np.float32)
    hot = arr >= float(pixel_threshold)
    if region is not None:
        hot &= region
    n, labels, stats, _ = cv2.connectedComponentsWithStats(hot.astype(np.uint8), connectivity=8)
    found: list[DefectRegion] = []
    keep = np.zeros(n, bool)
    for k in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[k])
        if area >= max(1, min_area):
            keep[k] = True
            found.append(DefectRegion(area, (x, y, w, h),
                                      float(arr[y:y + h, x:x + w][labels[y:y + h, x:x + w] == k]
                                            .max())))
    found.sort(key=lambda r: -r.area)
    return found, keep[labels]


def summary(found: Sequence[DefectRegion]) -> dict[str, Any]:
    """Per-image report: count, largest area and bounding boxes (JSON-safe)."""
    return {"n_defect_regions": len(found),
            "largest_defect_area": max((r.area for r in found), default=0),
            "defect_regions": [r.to_dict() for r in found]}


# ------------------------------------------------------------------ pictures
def greyed(image_rgb: NDArray[np.uint8], region: NDArray[np.bool_] | None,
           strength: float = 0.7) -> NDArray[np.uint8]:
    """A copy of an RGB picture with the ignored pixels washed towards grey."""
    if region is None:
        return image_rgb
    if region.shape != image_rgb.shape[:2]:
        region = cv2.resize(region.astype(np.uint8), image_rgb.shape[1::-1],
                            interpolation=cv2.INTER_NEAREST_EXACT).astype(bool)
    out = image_rgb.astype(np.float32)
    out[~region] = (1 - strength) * out[~region] + strength * GREY
    return np.rint(out).astype(np.uint8)


def region_words(region: NDArray[np.bool_] | None) -> str:
    """What a model inspects, for cards and reports."""
    if region is None:
        return "whole image"
    return f"{100 * region.mean():.1f}% of the crop (the rest ignored)"
