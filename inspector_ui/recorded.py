"""The last recorded inspection, redrawn from the workspace history after a reload.

A reload empties the session, so the full-size results of the last batch are gone; the
history still has every image's score, verdict, thresholds, decision and two small JPEGs
(the image and its heat-map overlay). This view shows all of that the way Inspect shows a
fresh batch: counts, the table, the selected image with its overlay and decision, and a
gallery, so an operator who pressed F5 carries on where they were.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from padim_core.store import Inspection, Store

from . import feedback_panel, views, workspace
from .text import md

GALLERY_PAGE = 12


def _thumbnails(store: Store, rows: list[Inspection]) -> dict[int, tuple[bytes | None,
                                                                           bytes | None]]:
    """(image JPEG, overlay JPEG) per row id; (None, None) where the size cap pruned them."""
    return {r.id: store.history.thumbnails(r.id) for r in rows}


def thumbnail_pair(image: bytes | None, overlay: bytes | None, image_caption: str,
                   overlay_caption: str) -> None:
    """A history row's two JPEGs side by side, or a note that the size cap pruned them."""
    if image is None and overlay is None:
        st.caption("The thumbnails of this image were pruned (the history's size cap keeps "
                   "the newest); its row is kept.")
        return
    c1, c2 = st.columns(2)
    if image is not None:
        c1.image(image, caption=image_caption, width="stretch")
    if overlay is not None:
        c2.image(overlay, caption=overlay_caption, width="stretch")


def _badge(verdict: str) -> str:
    return ":red-badge[**NG**]" if verdict == "NG" else ":green-badge[**OK**]"


def last_batch(store: Store, rows: list[Inspection],
               open_ref: str | None = None) -> None:
    """Draw a recorded batch (``rows`` from :func:`workspace.latest_inspections`, newest
    first): metrics, table, the selected image's thumbnails and decision, a gallery.
    ``open_ref``: the open model (``NAME@N``), named when the rows were recorded with another
    version."""
    rows = sorted(rows, key=lambda r: -r.score)          # most suspect first, as on Inspect
    ng = np.array([r.verdict == "NG" for r in rows], dtype=bool)
    when = min(r.inspected_at for r in rows).astimezone()
    thresholds = sorted({round(r.image_threshold, 6) for r in rows})
    st.subheader(f"Last recorded inspection with {md(rows[0].model_ref)}")
    st.caption(f"From the history, {when:%Y-%m-%d %H:%M}: the scores, verdicts and decisions "
               "as recorded (at the thresholds of that moment; the sliders do not change "
               "them), with the stored thumbnails. Inspect again for full-size heat maps.")
    if open_ref is not None and rows[0].model_ref != open_ref:
        st.info(f"Recorded with {md(rows[0].model_ref)}; the open model is now "
                f"{md(open_ref)}. Inspect again to score these parts with it.")
    m = st.columns(5)
    m[0].metric("Images", len(rows))
    m[1].metric("NG count", int(ng.sum()))
    m[2].metric("OK count", int((~ng).sum()))
    m[3].metric("Image threshold", " / ".join(f"{t:.3f}" for t in thresholds))
    m[4].metric("Decisions", sum(r.decision is not None for r in rows))
    st.dataframe(workspace.history_table(rows), hide_index=True, key="inspect_recorded",
                 height=min(420, 38 + 35 * len(rows)),
                 column_config={
                     "score": st.column_config.NumberColumn(format="%.3f"),
                     "score / threshold": st.column_config.NumberColumn(format="%.2f")})
    thumbs = _thumbnails(store, rows)

    st.subheader("Selected image")
    by_id = {r.id: r for r in rows}
    picked = st.selectbox("Image", list(by_id), key="inspect_recorded_row",
                          format_func=lambda k: f"{by_id[k].file_name} — score "
                                                f"{by_id[k].score:.3f} — {by_id[k].verdict}")
    row = by_id[int(picked if picked is not None else rows[0].id)]
    thumbnail_pair(*thumbs[row.id], f"{md(row.file_name)} (thumbnail)",
                   f"Heatmap overlay — score {row.score:.3f} "
                   f"({row.normalized_score:.2f} × threshold)")
    st.markdown("Verdict: " + _badge(row.verdict))
    with st.container(border=True):
        workspace.decision_panel(store, row.id, "inspect_rec")
        feedback_panel.show(store, row.id, "inspect_rec")

    st.subheader("Gallery")
    g1, g2 = st.columns([2, 1])
    show = g1.radio("Show", ["All", "NG only", "OK only"], horizontal=True,
                    key="recorded_gallery_filter")
    pages = views.gallery_pages(list(range(len(rows))), ng, show, GALLERY_PAGE)
    page = int(g2.number_input("Page", min_value=1, max_value=len(pages), value=1,
                               key=f"recorded_gallery_page_{show}")) if len(pages) > 1 else 1
    if not pages[page - 1]:
        st.caption("No image in this group.")
    cols = st.columns(4)
    for k, j in enumerate(pages[page - 1]):
        r = rows[j]
        overlay = thumbs[r.id][1]
        caption = f"{r.verdict} · {r.score:.3f} · {md(r.file_name)}" \
            + (f" · {r.decision_label}" if r.decision else "")
        if overlay is None:
            cols[k % 4].caption(f"{caption} (thumbnail pruned)")
        else:
            cols[k % 4].image(overlay, width="stretch", caption=caption)
    st.page_link("pages/history.py", label="Open the History page", icon=":material/history:")


__all__ = ["last_batch", "thumbnail_pair"]
