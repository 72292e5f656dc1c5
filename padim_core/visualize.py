"""Pictures of anomaly maps for the app and the CLI (NumPy + OpenCV, no matplotlib).

All functions take and return RGB ``uint8`` images (OpenCV's BGR order is handled here).
Colour scales take an explicit ``vmin`` / ``vmax`` so several maps can share one scale:
the same score always gets the same colour.
"""

from __future__ import annotations

from types import MappingProxyType

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray

from padim_core.errors import InvalidInputError
from padim_core.regions import defect_regions, greyed

#: Colormap names offered to users -> OpenCV colormap ids (read-only).
COLORMAPS: MappingProxyType[str, int] = MappingProxyType(
    {
        "jet": cv2.COLORMAP_JET,
        "turbo": cv2.COLORMAP_TURBO,
        "inferno": cv2.COLORMAP_INFERNO,
        "viridis": cv2.COLORMAP_VIRIDIS,
        "magma": cv2.COLORMAP_MAGMA,
        "plasma": cv2.COLORMAP_PLASMA,
        "cividis": cv2.COLORMAP_CIVIDIS,
        "hot": cv2.COLORMAP_HOT,
        "bone": cv2.COLORMAP_BONE,
    }
)


def _map_2d(anomaly_map: ArrayLike) -> NDArray[np.float64]:
    arr = np.asarray(anomaly_map, dtype=np.float64)
    if arr.ndim != 2 or arr.size == 0:
        raise InvalidInputError("anomaly_map", f"expected a 2-D map, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InvalidInputError("anomaly_map", "map contains NaN or infinite values")
    return arr


def _rgb_uint8(image_rgb: ArrayLike, source: str = "image_rgb") -> NDArray[np.uint8]:
    """Return a uint8 HxWx3 copy of ``image_rgb`` (grey and RGBA are converted)."""
    img = np.asarray(image_rgb)
    if img.dtype != np.uint8:
        raise InvalidInputError(source, f"expected a uint8 image, got dtype {img.dtype}")
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim == 3 and img.shape[2] == 3:
        return img.copy()
    if img.ndim == 3 and img.shape[2] == 4:
        return np.ascontiguousarray(img[:, :, :3])
    raise InvalidInputError(source, f"expected an HxW, HxWx3 or HxWx4 image, got {img.shape}")


def _colormap_id(colormap: str) -> int:
    try:
        return COLORMAPS[colormap]
    except KeyError:
        names = ", ".join(sorted(COLORMAPS))
        raise InvalidInputError(
            "colormap", f"unknown colormap {colormap!r}; use one of {names}"
        ) from None


def heatmap(
    anomaly_map: ArrayLike, vmin: float, vmax: float, colormap: str = "jet"
) -> NDArray[np.uint8]:
    """Colour an anomaly map: uint8 HxWx3 RGB.

    Values are clipped to ``[vmin, vmax]`` and mapped linearly onto the colormap, so two maps
    drawn with the same ``vmin`` / ``vmax`` share one colour scale. If ``vmin == vmax``, values
    at or below it get the lowest colour and values above it the highest.
    """
    arr = _map_2d(anomaly_map)
    cmap = _colormap_id(colormap)
    vmin, vmax = float(vmin), float(vmax)
    if not (np.isfinite(vmin) and np.isfinite(vmax)) or vmax < vmin:
        raise InvalidInputError("vmax", f"need finite vmin <= vmax, got vmin={vmin}, vmax={vmax}")
    if vmax == vmin:
        scaled = np.where(arr > vmax, 255.0, 0.0)
    else:
        scaled = (np.clip(arr, vmin, vmax) - vmin) * (255.0 / (vmax - vmin))
    levels = np.rint(scaled).astype(np.uint8)
    bgr = cv2.applyColorMap(levels, cmap)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def overlay(
    image_rgb: ArrayLike,
    anomaly_map: ArrayLike,
    vmin: float,
    vmax: float,
    alpha: float = 0.5,
    colormap: str = "jet",
) -> NDArray[np.uint8]:
    """Blend the heatmap over the image: ``(1 - alpha) * image + alpha * heatmap`` (uint8 RGB).

    If the map's size differs from the image's, the map is resized (bilinear) to the image.
    """
    img = _rgb_uint8(image_rgb)
    if not 0.0 <= float(alpha) <= 1.0:
        raise InvalidInputError("alpha", f"must be between 0 and 1, got {alpha}")
    arr = _map_2d(anomaly_map)
    h, w = img.shape[:2]
    if arr.shape != (h, w):
        arr = cv2.resize(arr, (w, h), interpolation=cv2.INTER_LINEAR)
    heat = heatmap(arr, vmin, vmax, colormap)
    return cv2.addWeighted(img, 1.0 - float(alpha), heat, float(alpha), 0.0)


def defect_mask(anomaly_map: ArrayLike, pixel_threshold: float) -> NDArray[np.bool_]:
    """Pixels called defective: ``anomaly_map >= pixel_threshold`` (same rule as metrics)."""
    return _map_2d(anomaly_map) >= float(pixel_threshold)


def draw_contours(
    image_rgb: ArrayLike,
    mask: ArrayLike,
    color: tuple[int, int, int] = (255, 0, 0),
    thickness: int = 2,
) -> NDArray[np.uint8]:
    """Draw the outlines of the mask's regions on a copy of the image (uint8 RGB).

    ``color`` is RGB. A mask of another size is resized (nearest) to the image first;
    an empty mask returns an unchanged copy.
    """
    img = _rgb_uint8(image_rgb)
    m = np.asarray(mask)
    if m.ndim != 2:
        raise InvalidInputError("mask", f"expected a 2-D mask, got shape {m.shape}")
    m = (m != 0).astype(np.uint8)
    h, w = img.shape[:2]
    if m.shape != (h, w):
        m = cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
    if not m.any():
        return img
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    rgb_color = tuple(int(c) for c in color)
    cv2.drawContours(img, contours, -1, rgb_color, int(thickness))
    return img


def encode_png(rgb: ArrayLike) -> bytes:
    """PNG bytes of an RGB (or grey) uint8 image, for downloads and ``st.image``."""
    img = np.asarray(rgb)
    if img.dtype != np.uint8:
        raise InvalidInputError("rgb", f"expected a uint8 image, got dtype {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
    elif img.ndim != 2:
        raise InvalidInputError("rgb", f"expected an HxW, HxWx3 or HxWx4 image, got {img.shape}")
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise InvalidInputError("rgb", "OpenCV could not encode the image as PNG")
    return buf.tobytes()


#: Colour scale of ``threshold_overlay_png``, in multiples of the model's pixel threshold.
#: Fixed per model (not per image or per run), so the same colour means the same score in
#: every overlay the CLI or the service writes.
OVERLAY_SCALE = (0.5, 2.0)


def threshold_overlay_png(image_rgb: ArrayLike, anomaly_map: ArrayLike,
                          pixel_threshold: float, region: NDArray[np.bool_] | None = None,
                          min_area: int = 0) -> bytes:
    """PNG of the heat map over the image on the model's fixed scale (``OVERLAY_SCALE``),
    white outlines around the defect regions (``regions.defect_regions``: the map at or
    above ``pixel_threshold`` inside ``region``, at least ``min_area`` pixels), ignored
    pixels greyed out."""
    lo, hi = (pixel_threshold * f for f in OVERLAY_SCALE)
    pic = greyed(overlay(image_rgb, anomaly_map, lo, hi), region)
    _, kept = defect_regions(_map_2d(anomaly_map), pixel_threshold, region, min_area)
    return encode_png(draw_contours(pic, kept, color=(255, 255, 255)))
