"""Inspect page: score new images, then tune thresholds without re-running the model."""

from __future__ import annotations

import numpy as np
import streamlit as st

from inspector_ui import (
    camera,
    feedback_panel,
    panels,
    plots,
    recorded,
    region_editor,
    state,
    views,
    widgets,
    workspace,
)
from inspector_ui.text import md
from inspector_ui.uploads import ImageBatch

GALLERY_PAGE = 12

widgets.page_start("Inspect")
store = workspace.get_store()
workspace.sync_url(store)
workspace.ensure_demo_model(store)
with st.expander("Model from the library", expanded=state.get_slot("A") is None):
    saved = workspace.library_picker(store, "A", "inspect")
slot = widgets.require_model("A", saved)

with st.container(border=True):
    panels.inspect_panel("A")
    camera.camera_panel("A")

insp = state.get_inspection()
workspace.sync_batch_url(insp)
if insp is None and slot.library_ref is not None:
    recorded_rows = workspace.latest_inspections(store, *slot.library_ref,
                                                 batch=workspace.linked_batch())
    if recorded_rows:
        recorded.last_batch(store, recorded_rows, slot.ref)
        st.stop()
if insp is None:
    st.info("Upload images (or a .zip) to inspect, or use the demo test set.")
    st.stop()
if insp.model_token != slot.token:
    st.warning("The results below were scored by an earlier model. Inspect again to score "
               "them with the current one.")
    rescore = insp.sources and st.button("Re-score these images with the current model",
                                         key="inspect_rescore")
    if rescore and panels.run_inspection("A", ImageBatch.from_sources(insp.sources, insp.label)):
        st.rerun()
    st.stop()

res = insp.result

with st.sidebar:
    st.subheader("Thresholds")
    thr = widgets.threshold_controls("A", prefix="insp", container=st.sidebar)
    rule = region_editor.defect_controls("A", prefix="insp", container=st.sidebar)
    st.subheader("Heatmap")
    alpha, cmap = widgets.display_controls(prefix="insp", container=st.sidebar)
display = views.Display(insp.scale[0], insp.scale[1], alpha, cmap)

ng = np.asarray(res.verdicts(thr.image, rule.min_area, rule.rule, thr.pixel), dtype=bool)
table = views.results_table(res.names, res.scores, thr.image, ng)
n_ng = int(ng.sum())

st.subheader(f"Results — {md(insp.label)}")   # a file name
m = st.columns(5)
m[0].metric("Images", len(res.names))
m[1].metric("NG count", n_ng)
m[2].metric("OK count", len(res.names) - n_ng)
m[3].metric("Image threshold", f"{thr.image:.3f}")
m[4].metric("Scoring time", f"{insp.seconds:.1f} s")
if insp.problems:
    with st.expander(f"{len(insp.problems)} file(s) skipped", expanded=False):
        widgets.show_problems(insp.problems, skipped=True)
if insp.notes:
    with st.expander(f"{len(insp.notes)} image(s) far smaller than the model's input",
                     expanded=True):
        widgets.show_problems(insp.notes, skipped=True)

left, right = st.columns([3, 2])
with left:
    st.dataframe(
        table, hide_index=True, key="inspect_table", height=min(420, 38 + 35 * len(table)),
        column_config={
            "name": st.column_config.TextColumn("image"),
            "score": st.column_config.NumberColumn("score", format="%.3f"),
            "normalized_score": st.column_config.NumberColumn(
                "score / threshold", format="%.2f", help="≥ 1 means NG"),
            "verdict": st.column_config.TextColumn("verdict"),
        },
    )
    d1, d2 = st.columns(2)
    d1.download_button("Download table (CSV)", data=views.table_csv(table),
                       file_name="padim_results.csv", mime="text/csv", on_click="ignore",
                       key="inspect_csv")
    d2.download_button(
        "Download overlays (.zip)",
        data=lambda: views.overlays_zip(res.names, res.images, res.maps, table, display,
                                        thr.pixel),
        file_name="padim_overlays.zip", mime="application/zip", on_click="ignore",
        key="inspect_zip")
with right:
    st.plotly_chart(plots.score_histogram(res.scores, thr.image, "Scores of this batch", ng=ng,
                                          reference=views.calibration_scores(slot.model)),
                    key="inspect_hist")

st.subheader("Selected image")
order = views.ranked(res.scores)
pick, mode = st.columns([4, 1])


def image_label(i: int) -> str:
    return f"{res.names[i]} — score {res.scores[i]:.3f} — {'NG' if ng[i] else 'OK'}"


widgets.relabel("inspect_selected", image_label)
choice = pick.selectbox("Image", order, key="inspect_selected", format_func=image_label)
view = mode.radio("Defect view", ["Contours", "Mask"], horizontal=True, key="inspect_view")
i = int(choice if choice is not None else order[0])
c1, c2, c3 = st.columns(3)
c1.image(res.images[i], caption=f"{md(res.names[i])} (as scored)", width="stretch")
c2.image(region_editor.overlay_picture(res.images[i], res.maps[i], display, res.region),
         caption=f"Heatmap overlay — score {res.scores[i]:.3f} "
                 f"({views.ratio(res.scores[i], thr.image):.2f} × threshold)", width="stretch")
contours, found = region_editor.contour_picture(res.images[i], res.maps[i], thr.pixel,
                                                res.region, rule.min_area)
found_text = region_editor.defects_caption(found, rule.min_area)
if view == "Mask":
    c3.image(region_editor.mask_picture(res.maps[i], thr.pixel, res.region, rule.min_area),
             width="stretch", caption=f"Defect mask at pixel threshold {thr.pixel:.3f}: "
                                      f"{found_text}")
else:
    c3.image(contours, width="stretch",
             caption=f"Defect contours at pixel threshold {thr.pixel:.3f}: {found_text}")
st.markdown("Verdict: " + (":red-badge[**NG**]" if ng[i] else ":green-badge[**OK**]"))
row_id = insp.history_ids.get(str(res.names[i]))
if row_id is not None:
    with st.container(border=True):
        workspace.decision_panel(store, row_id, "inspect")
        feedback_panel.show(store, row_id, "inspect", image=(
            str(res.names[i]), insp.sources[str(res.names[i])], float(res.scores[i])))
    feedback_panel.accept_several(store, insp, ng)
elif slot.library_ref is None:
    st.caption("Decisions are recorded for models from the library: train on the Train page "
               "(it saves there) or open one above.")

st.subheader("Gallery")
g1, g2 = st.columns([2, 1])
show = g1.radio("Show", ["All", "NG only", "OK only"], horizontal=True, key="gallery_filter")
pages = views.gallery_pages(order, ng, show, GALLERY_PAGE)
page = int(g2.number_input("Page", min_value=1, max_value=len(pages), value=1,
                           key=f"gallery_page_{show}")) if len(pages) > 1 else 1
shown = pages[page - 1]
if not shown:
    st.caption("No image in this group.")
cols = st.columns(4)
for k, j in enumerate(shown):
    tile = region_editor.contour_picture(
        region_editor.overlay_picture(res.images[j], res.maps[j], display, res.region),
        res.maps[j], thr.pixel, res.region, rule.min_area)[0]
    cols[k % 4].image(tile, width="stretch",
                      caption=f"{'NG' if ng[j] else 'OK'} · {res.scores[j]:.3f} · "
                              f"{md(res.names[j])}")
