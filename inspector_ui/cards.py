"""Cards that show what the session holds: the model card and one side of a comparison.

Drawing only, from stored models and predictions; nothing here runs the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from padim_core.regions import region_words

from . import onnx_download, plots, region_editor, state, views
from .text import md
from .widgets import show_problems


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def model_card(slot_key: str) -> None:
    """Summary, calibration histogram, skipped files and download of slot ``slot_key``."""
    slot = state.get_slot(slot_key)
    if slot is None:
        return
    model = slot.model
    card = model.card()
    st.caption(md(slot.origin))      # file and model names
    cols = st.columns([2.9, 0.9, 1.3, 1.0, 1.4, 1.4])   # the backbone name must fit
    cols[0].metric("Backbone", str(card.get("backbone", model.config.backbone)))
    cols[1].metric("d", str(card.get("d", model.config.d)))
    cols[2].metric("Training images", str(card.get("n_train_images", model.n_train_images_)))
    cols[3].metric("Fit time", f"{float(card.get('fit_seconds', model.fit_seconds_)):.1f} s")
    cols[4].metric("Image threshold", f"{float(model.image_threshold_):.3f}")
    cols[5].metric("Pixel threshold", f"{float(model.pixel_threshold_):.3f}")
    left, right = st.columns([3, 2])
    with left:
        scores = views.calibration_scores(model)
        if scores.size:
            st.plotly_chart(plots.calibration_histogram(scores, float(model.image_threshold_)),
                            key=f"card{slot_key}_hist")
    with right:
        rows = [{"field": k, "value": _fmt(v)} for k, v in card.items()
                if not isinstance(v, dict) and k not in {"skipped", "warnings", "updates"}]
        if card.get("updates"):        # the log itself (with image digests) is long
            rows.append({"field": "updates", "value": f"{len(card['updates'])}, "
                         f"+{sum(u['added_images'] for u in card['updates'])} image(s)"})
        st.dataframe(rows, hide_index=True, key=f"card{slot_key}_table")
    for warning in getattr(model, "warnings_", None) or []:
        st.warning(md(warning))         # a loaded file's own text
    if slot.skipped:
        with st.expander(f"{len(slot.skipped)} file(s) skipped while training", expanded=True):
            show_problems(slot.skipped, skipped=True)
    cfg = model.config
    stem = f"padim_{cfg.backbone}_d{cfg.d}_{cfg.crop}px"
    st.download_button("Download model (.safetensors)", data=model.to_bytes,
                       file_name=f"{stem}.safetensors",
                       mime="application/octet-stream", on_click="ignore",
                       key=f"card{slot_key}_download")
    onnx_download.onnx_panel(slot_key, stem)


def comparison_side(column: Any, title: str, pred: state.Prediction, amap: np.ndarray,
                    display: views.Display, thresholds: state.Thresholds,
                    contour_at: float, region: np.ndarray | None,
                    rule: views.DefectRule) -> None:
    """One side of a comparison: overlay, contours at ``contour_at`` (in ``amap``'s units),
    score and verdict under ``thresholds``, the model's region (ignored pixels greyed, no
    contour there) and the defect ``rule`` (minimum area, verdict by score or by area).
    ``title`` is Markdown (names in it escaped by the caller)."""
    contours, found = region_editor.contour_picture(pred.image, amap, contour_at, region,
                                                    rule.min_area)
    ng = views.verdict_ng(pred.score, amap, thresholds.image, contour_at, region, rule)
    with column:
        st.markdown(f"#### {title}")
        st.caption(md(pred.name))
        st.image(region_editor.overlay_picture(pred.image, amap, display, region),
                 width="stretch", caption="Heatmap overlay (shared colour scale)")
        st.image(contours, width="stretch",
                 caption=f"Defect contours at pixel threshold {thresholds.pixel:.3f}: "
                         f"{region_editor.defects_caption(found, rule.min_area)}"
                         + ("" if region is None else f" · inspected: {region_words(region)}"))
        m1, m2, m3 = st.columns(3)
        m1.metric("Score", f"{pred.score:.3f}")
        m2.metric("× threshold", f"{views.ratio(pred.score, thresholds.image):.2f}")
        m3.metric("Verdict", "NG" if ng else "OK",
                  help="NG for a defect region of at least the minimum area"
                  if rule.rule == "area" else "NG when the score reaches the image threshold")
