"""Compare page: two images under one model, or one image under two models, side by side."""

from __future__ import annotations

import streamlit as st

from inspector_ui import state, views, widgets
from inspector_ui.uploads import collect_images, demo_test_batch
from padim_core.errors import PadimError

TWO_IMAGES = "Two images, one model"
TWO_MODELS = "One image, two models"

widgets.page_start("Compare")
slot_a = widgets.require_model("A")

mode = st.radio("What to compare", [TWO_IMAGES, TWO_MODELS], horizontal=True,
                key="compare_mode")

# ---------------------------------------------------------------- images to choose from
pool: dict[str, state.ImageData] = {}
insp = state.get_inspection()
if insp is not None:
    pool.update(insp.sources)
pool.update(state.compare_sources())
with st.expander("Add images to compare", expanded=not pool):
    files = st.file_uploader("Images", accept_multiple_files=True, key="compare_files",
                             help=widgets.UPLOAD_HELP)
    a1, a2 = st.columns(2)
    if a1.button("Add uploaded images", key="compare_add", disabled=not files) and files:
        batch = collect_images(widgets.uploaded_pairs(files))
        widgets.show_problems(batch.problems)
        state.compare_sources().update(batch.sources())
        pool.update(batch.sources())
    if a2.button("Add the demo test set", key="compare_demo"):
        try:
            batch = demo_test_batch()
        except PadimError as err:
            st.error(f"Demo set unavailable — {err}", icon=widgets.ERROR_ICON)
        else:
            state.compare_sources().update(batch.sources())
            pool.update(batch.sources())
if not pool:
    st.info("Inspect a batch first, or add images here.")
    st.stop()
names = list(pool)

# ---------------------------------------------------------------- model B (two-model mode)
slot_b = state.get_slot("B")
if mode == TWO_MODELS:
    with st.expander("Model B — train or load a second model (e.g. another backbone or d)",
                     expanded=slot_b is None):
        tab_train, tab_load = st.tabs(["Train model B", "Load model B"])
        with tab_train:
            widgets.training_panel("B")
        with tab_load:
            widgets.model_loader("B")
    if slot_b is None:
        st.info("Model B is empty: train or load it above to compare two models.")
        st.stop()

# ---------------------------------------------------------------- shared controls
with st.sidebar:
    st.subheader("Thresholds")
    thr_a = widgets.threshold_controls("A", prefix="cmp", container=st.sidebar)
    thr_b = None
    if mode == TWO_MODELS and slot_b is not None:
        thr_b = widgets.threshold_controls("B", prefix="cmpB", container=st.sidebar)
    st.subheader("Heatmap")
    alpha, cmap = widgets.display_controls(prefix="cmp", container=st.sidebar)


def panel(column: st.delta_generator.DeltaGenerator, title: str, pred: state.Prediction,
          amap: object, display: views.Display, image_thr: float, pixel_thr: float,
          map_thr: float) -> None:
    """One side: overlay, contours, score and verdict."""
    ng = views.is_ng(pred.score, image_thr)
    with column:
        st.markdown(f"#### {title}")
        st.caption(pred.name)
        st.image(views.overlay_image(pred.image, amap, display), width="stretch",
                 caption="Heatmap overlay (shared colour scale)")
        st.image(views.contour_image(pred.image, amap, map_thr), width="stretch",
                 caption=f"Defect contours at pixel threshold {pixel_thr:.3f}")
        m1, m2, m3 = st.columns(3)
        m1.metric("Score", f"{pred.score:.3f}")
        m2.metric("× threshold", f"{views.ratio(pred.score, image_thr):.2f}")
        m3.metric("Verdict", "NG" if ng else "OK")


# ---------------------------------------------------------------- the comparison
if mode == TWO_IMAGES:
    default_right = 1 if len(names) > 1 else 0
    if insp is not None and insp.model_token == slot_a.token and len(insp.result.names) > 1:
        ranked = sorted(insp.result.names, key=dict(zip(insp.result.names,
                                                        insp.result.scores, strict=True)).get)
        default_left, default_right = names.index(ranked[-1]), names.index(ranked[0])
    else:
        default_left = 0
    s1, s2 = st.columns(2)
    left_name = s1.selectbox("Left image", names, index=default_left, key="compare_left")
    right_name = s2.selectbox("Right image", names, index=default_right, key="compare_right")
    left = widgets.predict_one("A", left_name, pool[left_name])
    right = widgets.predict_one("A", right_name, pool[right_name])
    if left is None or right is None:
        st.stop()
    vmin, vmax = views.shared_scale([left.amap, right.amap])
    display = views.Display(vmin, vmax, alpha, cmap)
    st.caption(f"Both under {state.SLOT_NAMES['A']} ({slot_a.model.config.backbone}); "
               f"colour scale {vmin:.2f} … {vmax:.2f} for both.")
    c1, c2 = st.columns(2)
    panel(c1, "Left", left, left.amap, display, thr_a.image, thr_a.pixel, thr_a.pixel)
    panel(c2, "Right", right, right.amap, display, thr_a.image, thr_a.pixel, thr_a.pixel)
else:
    assert slot_b is not None and thr_b is not None
    name = st.selectbox("Image", names, key="compare_image")
    pred_a = widgets.predict_one("A", name, pool[name])
    pred_b = widgets.predict_one("B", name, pool[name])
    if pred_a is None or pred_b is None:
        st.stop()
    # Two models score on different scales: show each map in units of its own pixel
    # threshold, so one shared colour scale means the same thing on both sides.
    map_a = views.relative_map(pred_a.amap, thr_a.pixel)
    map_b = views.relative_map(pred_b.amap, thr_b.pixel)
    vmin, vmax = views.shared_scale([map_a, map_b])
    display = views.Display(vmin, vmax, alpha, cmap)
    st.caption(f"Colour scale in multiples of each model's pixel threshold: {vmin:.2f} … "
               f"{vmax:.2f} on both sides; contours at 1.0.")
    c1, c2 = st.columns(2)
    for column, key, pred, amap, thr in ((c1, "A", pred_a, map_a, thr_a),
                                         (c2, "B", pred_b, map_b, thr_b)):
        cfg = state.get_slot(key).model.config  # type: ignore[union-attr]
        panel(column, f"{state.SLOT_NAMES[key]}: {cfg.backbone}, d={cfg.d}", pred, amap,
              display, thr.image, thr.pixel, 1.0)
