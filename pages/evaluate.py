"""Evaluate page: accuracy of model A on a labelled set in MVTec layout (.zip or demo)."""

from __future__ import annotations

import json

import streamlit as st

from inspector_ui import (
    access,
    feedback_panel,
    panels,
    plots,
    state,
    uploads,
    views,
    widgets,
    workspace,
)
from inspector_ui.text import md

widgets.page_start("Evaluate")
workspace.sync_url(workspace.get_store())
slot = state.get_slot("A")

st.markdown(
    "Measure how well the model separates good from defective parts on a **labelled set in "
    "MVTec layout**: `train/good/`, `test/good/`, `test/<defect type>/` and (for pixel "
    "metrics) `ground_truth/<defect type>/<name>_mask.png`."
)
with st.container(border=True):
    may_train = access.allowed("engineer")
    fit_first = may_train and st.checkbox(
        "Train model A on the set's train/good images first", value=slot is None,
        key="eval_fit_first", help="Replaces model A. Without this, the current model A is "
                                   "evaluated.")
    if not may_train:
        st.caption("Training is for engineers and admins: the model A you opened is "
                   "evaluated.")
    settings = None
    if fit_first:
        settings = panels.fit_settings("evalfit")
    left, right = st.columns([3, 2])
    archive = left.file_uploader("Labelled set (.zip)", key="eval_zip",
                                 help="A zip of one MVTec-style category folder.",
                                 max_upload_size=uploads.IMAGE_UPLOADER_MB)
    go_zip = left.button("Evaluate the uploaded set", key="eval_go", type="primary",
                         disabled=archive is None)
    right.markdown("**Demo set**")
    right.caption("30 labelled test images with masks.")
    go_demo = right.button("Evaluate on the demo set", key="eval_demo")
    can_run = fit_first or slot is not None
    train_with = settings if fit_first else None
    if (go_zip or go_demo) and not can_run:
        st.error("There is no model A yet: train or load one, or tick the box above."
                 if may_train else "There is no model A yet: open one from the library.")
    elif (go_zip or go_demo) and fit_first and settings is None:
        st.error("No backbone is available to train with.")
    elif go_zip and archive is not None:
        if panels.evaluate_zip("A", archive.name, archive.getvalue(), fit_first=train_with):
            st.rerun()
    elif go_demo and panels.evaluate_demo("A", fit_first=train_with):
        st.rerun()

with st.container(border=True):
    feedback_panel.history_evaluation(workspace.get_store())

ev = state.get_evaluation()
if ev is None:
    st.info("Upload a labelled .zip or use the demo set.")
    st.stop()
slot = state.get_slot("A")
current = slot is not None and ev.model_token == slot.token
if not current:
    st.warning("This report belongs to an earlier model A; evaluate again for the current one.")
rep = ev.report
fmt = views.metric_text

st.subheader(f"Results — {md(ev.label)}")   # the .zip's name
st.caption(f"{rep.n_images} images ({rep.n_anomalous} defective), "
           f"{rep.n_pixel_images} with pixel ground truth · {ev.seconds:.1f} s")
m = st.columns(5)
m[0].metric("Image AUROC", fmt(rep.image_auroc))
m[1].metric("Pixel AUROC", fmt(rep.pixel_auroc))
m[2].metric("AUPRO (FPR ≤ 0.3)", fmt(rep.aupro))
m[3].metric("Image F1 (best)", fmt(rep.image_f1),
            help=f"At image threshold {rep.image_f1_threshold:.3f}; F1 at the model's own "
                 f"threshold: {fmt(rep.image_f1_at_model_threshold)}")
m[4].metric("Pixel F1 (best)", fmt(rep.pixel_f1),
            help=f"At pixel threshold {fmt(rep.pixel_f1_threshold)}; F1 at the model's own "
                 f"threshold: {fmt(rep.pixel_f1_at_model_threshold)}")

c1, c2 = st.columns(2)
curves = views.image_curves(ev.labels, ev.scores)
if curves is not None:
    c1.plotly_chart(plots.roc_figure(curves.fpr, curves.tpr, rep.image_auroc), key="eval_roc")
    c2.plotly_chart(plots.pr_figure(curves.precision, curves.recall, rep.image_f1,
                                    base_rate=curves.base_rate), key="eval_pr")
else:
    c1.info("ROC and PR curves need both good and defective images.")

st.markdown("**Per defect type**")
st.dataframe(views.defect_type_rows(rep.per_defect_type), hide_index=True, key="eval_per_type",
             column_config={"mean score": st.column_config.NumberColumn(format="%.3f")})

st.markdown("**Recommended thresholds (F1-optimal on this set)**")
t = st.columns(3)
t[0].metric("Image threshold", f"{rep.image_f1_threshold:.3f}",
            help=f"Model's own: {fmt(rep.model_image_threshold)}")
t[1].metric("Pixel threshold", fmt(rep.pixel_f1_threshold),
            help=f"Model's own: {fmt(rep.model_pixel_threshold)}")
if t[2].button("Apply to the Inspect sliders", key="eval_apply", type="primary",
               disabled=not current):
    state.set_thresholds("A", image=rep.image_f1_threshold,
                         pixel=rep.pixel_f1_threshold)
    st.success(f"Inspect now uses image threshold {rep.image_f1_threshold:.3f}"
               + (f" and pixel threshold {rep.pixel_f1_threshold:.3f}."
                  if rep.pixel_f1_threshold is not None else "."))
    st.page_link("pages/inspect.py", label="Go to Inspect", icon=":material/image_search:")

if rep.skipped:
    with st.expander(f"{len(rep.skipped)} image(s) could not be read"):
        widgets.show_problems(list(rep.skipped), skipped=True)
if rep.no_pixel_ground_truth:
    with st.expander(f"{len(rep.no_pixel_ground_truth)} defective image(s) without a mask"):
        st.dataframe(views.no_mask_rows(rep.no_pixel_ground_truth), hide_index=True)
st.download_button("Download report (JSON)",
                   data=json.dumps(rep.to_dict(), indent=2).encode("utf-8"),
                   file_name="padim_evaluation.json", mime="application/json",
                   on_click="ignore", key="eval_json")
