"""The region a model inspects and the minimum defect size, in the app (docs/regions.md).

On Train: draw rectangles / polygons to include or exclude over the mean training image
(``streamlit-drawable-canvas``), or upload a mask PNG; applying it recalibrates the model's
thresholds for the region (no image is read again). On Inspect: a minimum-area slider and the
area verdict rule, live like the thresholds (they only re-read the stored maps).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import streamlit as st
from PIL import Image

from padim_core import visualize
from padim_core.errors import InvalidInputError
from padim_core.regions import (
    DefectRegion,
    check_min_area,
    defect_regions,
    greyed,
    load_region,
    region_from_shapes,
    region_words,
)

from . import state, uploads, views, workspace
from .views import DefectRule
from .widgets import attempt

EXCLUDE = ("#ff3b30", "rgba(255, 59, 48, 0.35)")
INCLUDE = ("#34c759", "rgba(52, 199, 89, 0.35)")
CANVAS_PX = 448
APPLIED_KEY = "region_applied_"
ORIGIN = {"left": 0.0, "top": 0.0, "center": 0.5, "right": 1.0, "bottom": 1.0}


# ------------------------------------------------------------------ actions
def apply_region(slot_key: str, region: np.ndarray | None, min_area: int,
                 rule: str | None = None) -> state.ModelSlot:
    """Put a copy of the slot's model with this region (thresholds recalibrated), minimum
    defect area and verdict rule (None: unchanged) into the slot, as a new model (results
    scored before go stale)."""
    slot = state.get_slot(slot_key)
    if slot is None:
        raise InvalidInputError("model", "train or load a model first")
    model = copy.copy(slot.model)        # the slot's model may be shared (library, demo)
    model.set_region(region)
    model.set_defect_rule(check_min_area(min_area, model.config.crop, "minimum defect area"),
                          rule)
    origin = slot.origin.split(" · region:")[0].split(" · library:")[0]
    new = state.set_slot(slot_key, model, f"{origin} · region: {region_words(region)}",
                         slot.skipped)
    new.fingerprint = slot.fingerprint          # the same training images
    return new


def shapes_of(json_data: dict[str, Any] | None, scale: float,
              ) -> list[tuple[str, list[tuple[float, float]]]]:
    """Canvas objects → ``(include|exclude, polygon in crop pixels)``; the stroke colour
    says which."""
    shapes = []
    for obj in (json_data or {}).get("objects", []):
        kind = "include" if obj.get("stroke") == INCLUDE[0] else "exclude"
        sx, sy = float(obj.get("scaleX", 1)), float(obj.get("scaleY", 1))
        left, top = float(obj.get("left", 0)), float(obj.get("top", 0))
        if obj.get("type", "").lower() == "rect":
            w, h = float(obj.get("width", 0)) * sx, float(obj.get("height", 0)) * sy
            pts = [(left, top), (left + w, top), (left + w, top + h), (left, top + h)]
        elif obj.get("points"):
            # Fabric keeps the points as drawn; left/top place the shape's origin (its
            # bounding box corner or centre, stroke included), which moves when dragged.
            xs = [float(p["x"]) for p in obj["points"]]
            ys = [float(p["y"]) for p in obj["points"]]
            half = float(obj.get("strokeWidth", 0)) / 2
            ox = ORIGIN.get(obj.get("originX", "left"), 0.0)
            oy = ORIGIN.get(obj.get("originY", "top"), 0.0)
            rx = min(xs) + ox * (max(xs) - min(xs))
            ry = min(ys) + oy * (max(ys) - min(ys))
            pts = [(left + (1 - 2 * ox) * half + (x - rx) * sx,
                    top + (1 - 2 * oy) * half + (y - ry) * sy)
                   for x, y in zip(xs, ys, strict=True)]
        else:
            continue
        shapes.append((kind, [(x / scale, y / scale) for x, y in pts]))
    return shapes


# ------------------------------------------------------------------ pictures
def background(model: Any) -> np.ndarray:
    """The mean training crop with the current region greyed out (grey for old files)."""
    crop = model.config.crop
    mean = getattr(model, "mean_image_", None)
    if mean is None:
        mean = np.full((crop, crop, 3), 160, np.uint8)
    return greyed(mean, model.region_)


def overlay_picture(image: np.ndarray, amap: np.ndarray, display: views.Display,
                    region: np.ndarray | None) -> np.ndarray:
    """Heat map over the image, ignored pixels greyed out."""
    return greyed(views.overlay_image(image, amap, display), region)


def contour_picture(image: np.ndarray, amap: np.ndarray, pixel_threshold: float,
                    region: np.ndarray | None, min_area: int,
                    ) -> tuple[np.ndarray, list[DefectRegion]]:
    """The image with outlines of its defect regions (inside the region, at least
    ``min_area`` pixels), ignored pixels greyed out; and the regions."""
    found, kept = defect_regions(amap, pixel_threshold, region, min_area)
    return visualize.draw_contours(greyed(image, region), kept), found


def mask_picture(amap: np.ndarray, pixel_threshold: float, region: np.ndarray | None,
                 min_area: int) -> np.ndarray:
    """The defect regions as a black / white image, ignored pixels grey."""
    kept = defect_regions(amap, pixel_threshold, region, min_area)[1]
    pic = np.repeat((kept.astype(np.uint8) * 255)[..., None], 3, axis=2)
    return greyed(pic, region, strength=0.5)


def defects_caption(found: list[DefectRegion], min_area: int) -> str:
    if not found:
        return f"no defect region ≥ {min_area} px"
    return (f"{len(found)} defect region(s) ≥ {min_area} px, largest "
            f"{max(r.area for r in found)} px")


# ------------------------------------------------------------------ widgets
def region_panel(slot_key: str) -> None:
    """Draw or upload the region the model in ``slot_key`` inspects, and its minimum
    defect area; "Apply" recalibrates the thresholds for it."""
    slot = state.get_slot(slot_key)
    if slot is None:
        return
    model = slot.model
    crop = model.config.crop
    prefix = f"region{slot_key}"
    st.subheader("Region to inspect")
    st.caption(f"Now: **{region_words(model.region_)}**, defects from "
               f"**{model.config.min_defect_area} px**. Ignored areas (labels, clamps, "
               "background) never raise an alarm; the thresholds are recalibrated for the "
               "region from the calibration images.")
    # The canvas is mounted only on request: once its background has loaded it reports its
    # size as a value, which reruns *this* page; arriving just after a click on another page
    # in the menu, that rerun sent the user back to Train.
    if not st.toggle("Edit the region and minimum defect area", key=f"{prefix}_edit"):
        return
    _show_applied(slot_key, slot.token)
    min_area = int(st.number_input("Minimum defect area (pixels of the crop)", 0, crop * crop,
                                   int(model.config.min_defect_area), key=f"{prefix}_min",
                                   help="Smaller defect regions get no contour."))
    rule = "area" if st.toggle("NG only for a defect region ≥ minimum area",
                               value=model.config.verdict_rule == "area",
                               key=f"{prefix}_area_rule",
                               help="Off: NG when the score reaches the image threshold.") \
        else "score"
    draw, upload = st.tabs(["Draw", "Upload a mask"])
    with draw:
        drawn = _canvas(model, prefix, slot.token)
        c1, c2 = st.columns(2)
        if c1.button("Apply drawn region", key=f"{prefix}_apply", type="primary"):
            region = region_from_shapes(crop, drawn, model.region_) if drawn else model.region_
            _apply(slot_key, region, min_area, rule)
        if c2.button("Inspect the whole image", key=f"{prefix}_clear"):
            _apply(slot_key, None, min_area, rule)
    with upload:
        file = st.file_uploader("Mask PNG (white = inspect, black = ignore)", type=["png"],
                                key=f"{prefix}_file", max_upload_size=uploads.IMAGE_UPLOADER_MB)
        if st.button("Apply mask", key=f"{prefix}_apply_file", disabled=file is None):
            loaded = attempt(load_region, file.getvalue(), crop, file.name)
            if loaded is not None:
                _apply(slot_key, loaded[0], min_area, rule, [("info", n) for n in loaded[1]])


def _apply(slot_key: str, region: np.ndarray | None, min_area: int, rule: str,
           notes: list[tuple[str, str]] | None = None) -> None:
    """Apply, then save the result as the next version of the slot's library model (as
    "accept as normal" does), so a reload, the history and ``padim`` see the same model."""
    before = state.get_slot(slot_key)
    ref = before.library_ref if before is not None else None
    slot = attempt(apply_region, slot_key, region, min_area, rule)
    if slot is None:
        return
    said = [*(notes or []), ("success", f"Region applied: {region_words(region)}, defects "
                                        f"from {min_area} px, verdict by {rule}; thresholds "
                                        f"image {slot.model.image_threshold_:.3f}, pixel "
                                        f"{slot.model.pixel_threshold_:.3f}.")]
    if ref is None:
        said.append(("warning", "This model is not in the library, so the region lasts until "
                                "a reload: save model A on the Models page to keep it."))
    else:
        previous = f"{ref[0]}@{ref[1]}"
        saved = workspace.save_slot(workspace.get_store(), slot_key, ref[0],
                                    note=f"{previous} with region: {region_words(region)}, "
                                         f"defects from {min_area} px, verdict by {rule}")
        if saved is not None:
            said.append(("success", f"Saved as {saved.ref} ({previous} is kept)."))
    st.session_state[f"{APPLIED_KEY}{slot_key}"] = (slot.token, said)
    st.rerun()


def _show_applied(slot_key: str, token: str) -> None:
    """What the last Apply did, for as long as its model is in the slot (the canvas reruns
    the page when it loads, which would take a one-time message away before it is read)."""
    applied = st.session_state.get(f"{APPLIED_KEY}{slot_key}")
    if applied is not None and applied[0] == token:
        for kind, text in applied[1]:
            getattr(st, kind)(text)


def _canvas(model: Any, prefix: str, token: str) -> list[tuple[str, list[tuple[float, float]]]]:
    """The drawing canvas (or, where the component cannot load, nothing to draw with)."""
    try:
        from streamlit_drawable_canvas import st_canvas
    except Exception as err:  # noqa: BLE001 - the component registers at import
        st.info(f"The drawing canvas is not available here ({type(err).__name__}); upload "
                "a mask PNG instead.")
        return []
    m1, m2 = st.columns(2)
    mode = m1.radio("Shapes", ["exclude", "include"], horizontal=True, key=f"{prefix}_mode",
                    help="Include shapes: only they are inspected. Exclude shapes: ignored.")
    shape = m2.radio("Draw", ["rect", "polygon"], horizontal=True, key=f"{prefix}_shape",
                     help="Polygon: click the corners, then click the first one to close it.")
    stroke, fill = INCLUDE if mode == "include" else EXCLUDE
    picture = Image.fromarray(background(model)).resize((CANVAS_PX, CANVAS_PX),
                                                          Image.Resampling.NEAREST)
    result = st_canvas(fill_color=fill, stroke_color=stroke, stroke_width=2,
                       background_image=picture, drawing_mode=shape, width=CANVAS_PX,
                       height=CANVAS_PX, key=f"{prefix}_canvas_{token}")
    return shapes_of(result.json_data, CANVAS_PX / model.config.crop)


def defect_controls(slot_key: str, *, prefix: str, container: Any = None) -> DefectRule:
    """Minimum-area slider and the area verdict rule for the model in ``slot_key``; they
    start at the model's own settings and only re-read the stored maps."""
    where = container if container is not None else st
    slot = state.get_slot(slot_key)
    assert slot is not None, "defect_controls needs a model in the slot"
    cfg = slot.model.config
    top = cfg.crop * cfg.crop
    min_area = where.select_slider(
        "Minimum defect area (px)", views.area_steps(top, int(cfg.min_defect_area)),
        int(cfg.min_defect_area), key=f"{prefix}_min_area_{slot.token}",
        help="Defect regions smaller than this get no contour (pixels of the crop; the "
             "model's own value is one of the steps; set any value in the region editor on "
             "Train).")
    by_area = where.toggle("NG only for a defect region ≥ minimum area",
                           value=cfg.verdict_rule == "area",
                           key=f"{prefix}_area_rule_{slot.token}",
                           help="Off: NG when the score reaches the image threshold.")
    return DefectRule(int(min_area), "area" if by_area else "score")
