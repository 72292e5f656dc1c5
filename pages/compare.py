"""Compare page: two images under one model, or one image under two models, side by side."""

from __future__ import annotations

import streamlit as st

from inspector_ui import cards, panels, region_editor, state, views, widgets, workspace
from inspector_ui.text import md

TWO_IMAGES = "Two images, one model"
TWO_MODELS = "One image, two models"

widgets.page_start("Compare")
store = workspace.get_store()
workspace.sync_url(store)
workspace.sync_url(store, "B")
with st.expander("Model A from the library", expanded=state.get_slot("A") is None):
    saved = workspace.library_picker(store, "A", "compareA")
slot_a = widgets.require_model("A", saved)

mode = st.radio("What to compare", [TWO_IMAGES, TWO_MODELS], horizontal=True,
                key="compare_mode",   # a link that names a model B (a reload) reopens both
                index=1 if state.get_slot("B") is not None else 0)

# ---------------------------------------------------------------- images to choose from
pool: dict[str, state.ImageData] = {}
insp = state.get_inspection()
if insp is not None:
    pool.update(insp.sources)
pool.update(state.compare_sources())
with st.expander("Add images to compare", expanded=not pool):
    panels.compare_sources_panel(pool)
if not pool:
    st.info("Inspect a batch first, or add images here.")
    st.stop()
names = list(pool)

# ---------------------------------------------------------------- model B (two-model mode)
slot_b = state.get_slot("B")
if mode == TWO_MODELS:
    with st.expander("Model B — train or load a second model (e.g. another backbone or d)",
                     expanded=slot_b is None):
        tab_train, tab_library, tab_load = st.tabs(
            ["Train model B", "Model B from the library", "Load model B"])
        with tab_train:
            panels.training_panel("B", save_to_library=True)
        with tab_library:
            workspace.library_picker(store, "B", "compareB")
        with tab_load:
            panels.model_loader("B")
    if slot_b is None:
        st.info("Model B is empty: train or load it above to compare two models.")
        st.stop()

# ---------------------------------------------------------------- shared controls
with st.sidebar:
    st.subheader("Thresholds")
    two = mode == TWO_MODELS and slot_b is not None
    if two:
        st.markdown(f"**{state.SLOT_NAMES['A']}** ({md(slot_a.ref or 'not in the library')})")
    thr_a = widgets.threshold_controls("A", prefix="cmp", container=st.sidebar)
    rule_a = region_editor.defect_controls("A", prefix="cmp", container=st.sidebar)
    thr_b = rule_b = None
    if two:
        st.markdown(f"**{state.SLOT_NAMES['B']}** ({md(slot_b.ref or 'not in the library')})")
        thr_b = widgets.threshold_controls("B", prefix="cmpB", container=st.sidebar)
        rule_b = region_editor.defect_controls("B", prefix="cmpB", container=st.sidebar)
    st.subheader("Heatmap")
    alpha, cmap = widgets.display_controls(prefix="cmp", container=st.sidebar)

# ---------------------------------------------------------------- the comparison
if mode == TWO_IMAGES:
    scored = None
    if insp is not None and insp.model_token == slot_a.token:
        scored = dict(zip(insp.result.names, insp.result.scores, strict=True))
    default_left, default_right = views.extreme_pair(names, scored)
    s1, s2 = st.columns(2)
    left_name = s1.selectbox("Left image", names, index=default_left, key="compare_left")
    right_name = s2.selectbox("Right image", names, index=default_right, key="compare_right")
    left = panels.predict_one("A", left_name, pool[left_name])
    right = panels.predict_one("A", right_name, pool[right_name])
    if left is None or right is None:
        st.stop()
    vmin, vmax = views.shared_scale([left.amap, right.amap])
    display = views.Display(vmin, vmax, alpha, cmap)
    st.caption(f"Both under {state.SLOT_NAMES['A']} ({slot_a.model.config.backbone}); "
               f"colour scale {vmin:.2f} … {vmax:.2f} for both.")
    c1, c2 = st.columns(2)
    for column, side, pred in ((c1, "Left", left), (c2, "Right", right)):
        cards.comparison_side(column, side, pred, pred.amap, display, thr_a, thr_a.pixel,
                              slot_a.model.region_, rule_a)
else:
    assert slot_b is not None and thr_b is not None and rule_b is not None
    name = st.selectbox("Image", names, key="compare_image")
    pred_a = panels.predict_one("A", name, pool[name])
    pred_b = panels.predict_one("B", name, pool[name])
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
    for column, key, slot, pred, amap, thr, rule in (
            (c1, "A", slot_a, pred_a, map_a, thr_a, rule_a),
            (c2, "B", slot_b, pred_b, map_b, thr_b, rule_b)):
        cfg = slot.model.config
        about = f"{cfg.backbone}, d={cfg.d}"
        title = f"{state.SLOT_NAMES[key]}: " + (f"{md(slot.ref)} ({about})" if slot.ref
                                                else about)
        cards.comparison_side(column, title, pred, amap, display, thr, 1.0,
                              slot.model.region_, rule)
