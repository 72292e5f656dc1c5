"""Train page: learn "normal" from good images (upload, .zip or demo set), or load a model."""

from __future__ import annotations

import streamlit as st

from inspector_ui import (
    access,
    cards,
    cluster_panel,
    panels,
    region_editor,
    resources,
    state,
    widgets,
    workspace,
)

widgets.page_start("Train")
store = workspace.get_store()
workspace.sync_url(store)
workspace.ensure_demo_model(store)

st.caption(f"Runs on **{resources.device_text()}**.")
with st.container(border=True):
    st.subheader("Learn from good parts")
    settings = None
    if access.allowed("engineer"):
        settings = panels.training_panel("A", save_to_library=True)
    else:
        st.info("Training is for engineers and admins; open a library model below.")
if settings is not None:
    cluster_panel.cluster_section("A", settings, save_to_library=True)

with st.expander("…or open a model from the library, or load a model file",
                 expanded=state.get_slot("A") is None):
    workspace.library_picker(store, "A", "trainA")
    panels.model_loader("A")

if state.get_slot("A") is not None:
    st.subheader("Model card")
    cards.model_card("A")
    if access.allowed("engineer"):   # a region recalibrates the thresholds
        with st.container(border=True):
            region_editor.region_panel("A")
    st.page_link("pages/inspect.py", label="Next: inspect new images",
                 icon=":material/image_search:")
