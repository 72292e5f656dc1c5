"""Models page: the workspace's model library (names, versions, cards) and what to do with
a version: open it as model A, set it as default, save thresholds, rename, download, delete;
add model A or an uploaded file as a new version."""

from __future__ import annotations

import shlex

import streamlit as st

from inspector_ui import access, state, uploads, widgets, workspace
from inspector_ui.text import code, md

widgets.page_start("Models")
store = workspace.get_store()
workspace.sync_url(store)
st.caption(f"Workspace: `{store.data_dir}` · database `{store.url}`")

entries = store.library.models(verify=True)
slot = state.get_slot("A")

if access.allowed("engineer"):   # adding versions is for engineers and admins
    with st.expander("Add a model to the library", expanded=not entries):
        left, right = st.columns(2)
        with left:
            st.markdown("**Model A of this session**")
            if slot is None:
                st.caption("No model A yet: train one on the Train page, or upload a file.")
            else:
                st.caption(md(slot.origin))
            save_name = st.text_input("Name", key="models_save_name", max_chars=200,
                                      placeholder="e.g. transistor line 3")
            note = st.text_input("Note (optional)", key="models_save_note")
            if st.button("Save model A to the library", key="models_save", disabled=slot is None):
                saved = workspace.save_slot(store, "A", save_name, note)
                if saved is not None:
                    state.flash("success", f"Saved as {md(saved.ref)}.")
                    st.rerun()
        with right:
            st.markdown("**A model file (.safetensors)**")
            upload = st.file_uploader("Model file", type=["safetensors"], key="models_upload",
                                      max_upload_size=uploads.MODEL_UPLOADER_MB)
            upload_name = st.text_input("Name", key="models_upload_name", max_chars=200,
                                        placeholder="default: the file name")
            if st.button("Add the file to the library", key="models_upload_go",
                         disabled=upload is None):
                name = upload_name or upload.name.removesuffix(".safetensors")
                added = workspace.upload_model(store, upload.getvalue(), upload.name, name)
                if added is not None:
                    state.flash("success", f"Added as {md(added.ref)}.")
                    st.rerun()

if not entries:
    st.info("The library is empty. Train a model and save it here, or add a model file.")
    workspace.audit_panel(store)
    st.stop()

st.dataframe(workspace.versions_table(entries), hide_index=True, width="stretch")
if any(v.status != "ok" for e in entries for v in e.versions):
    st.warning("Some versions' model files are missing or damaged on disk (column *file*); "
               "they cannot be opened or downloaded. Every other model works.")

by_name = {e.name: e for e in entries}
renamed_to = st.session_state.pop("models_renamed_to", None)
if renamed_to in by_name:      # stay on the renamed model, its "New name" box emptied
    st.session_state["models_name"], st.session_state["models_new_name"] = renamed_to, ""
slot_a = state.get_slot("A")              # the pickers start on the open model
opened = slot_a.library_ref if slot_a is not None else None
left, right = st.columns([3, 1])
names = list(by_name)
widgets.follow_open_model("models_name")
name = left.selectbox("Model", names, key="models_name",
                      index=names.index(opened[0]) if opened and opened[0] in by_name else 0)
entry = by_name[name]
numbers = [v.version for v in entry.versions]
current = entry.current
start = opened[1] if opened and opened[0] == name and opened[1] in numbers else \
    current.version if current else numbers[0]
widgets.follow_open_model(f"models_version_{name}")
number = right.selectbox("Version", numbers, key=f"models_version_{name}",
                         index=numbers.index(start))
version = next(v for v in entry.versions if v.version == number)

with st.container(border=True):
    image, pixel = version.thresholds
    st.markdown(      # the name, the note and a file's device are typed text: escaped
        f"**{md(version.ref)}**{' · default' if version.is_default else ''} · file: "
        f"{version.status}  \n"
        f"{version.backbone}, d = {version.d}, {version.image_size} → {version.crop} px · "
        f"{version.n_train_images} training images · fit {version.fit_seconds:.1f} s on "
        f"{md(version.device)}  \n"
        f"thresholds: image {image:.3f}, pixel {pixel:.3f} "
        f"({'calibrated' if version.operating_image_threshold is None else 'saved'})"
        f" · created {version.created_at:%Y-%m-%d %H:%M} UTC"
        + (f"  \nnote: {md(version.note)}" if version.note else ""))
    c1, c2, c3, c4 = st.columns(4)
    usable = version.status == "ok"
    if (c1.button("Open as model A", key="models_open", type="primary", disabled=not usable)
            and workspace.open_version(store, version)):
        st.rerun()
    engineer, admin = access.allowed("engineer"), access.allowed("admin")
    if (engineer and c2.button("Set as default", key="models_default",
                               disabled=version.is_default)
            and workspace.run_action("Not changed", store.library.set_default, name, number,
                                     role="engineer")):
        state.flash("success", f"{md(version.ref)} is now the default version of {md(name)}.")
        st.rerun()
    thr = state.get_thresholds("A")
    slot_a = state.get_slot("A")
    a_ref = None if slot_a is None or slot_a.library_ref is None else \
        f"{slot_a.library_ref[0]}@{slot_a.library_ref[1]}"
    if (engineer and c3.button("Save model A's thresholds here", key="models_save_thr",
                               disabled=thr is None,
                               help="The image / pixel thresholds set with the sliders on "
                                    "Inspect.")
            and workspace.run_action("Not saved", store.library.set_thresholds, version,
                                     thr.image, thr.pixel, role="engineer")):
        state.flash("success", f"Thresholds {thr.image:.3f} / {thr.pixel:.3f} saved on "
                               f"{md(version.ref)}.")
        st.rerun()
    if engineer and thr is not None and a_ref != version.ref:
        c3.caption(f":orange[Model A is {md(a_ref or 'not a library version')}: its "
                   f"thresholds would go onto {md(version.ref)}.]")
    if usable:   # read when clicked: a default model file is 0.7 GB
        c4.download_button("Download", data=lambda: store.library.read_bytes(version),
                           file_name=f"{name}-v{number}.safetensors",
                           mime="application/octet-stream", key="models_download")
        if version.operating_image_threshold is not None \
                or version.operating_pixel_threshold is not None:
            command = code(f"padim predict --model {shlex.quote(version.ref)}")
            c4.caption("The file holds the calibrated thresholds; the saved ones stay in "
                       f"the library ({command} uses them).")

    if admin:   # renaming and deleting
        rename_col, delete_col = st.columns(2)
        new_name = rename_col.text_input("New name", key="models_new_name", max_chars=200)
        if (rename_col.button("Rename model", key="models_rename", disabled=not new_name)
                and workspace.run_action("Not renamed", store.library.rename, name, new_name,
                                         role="admin")):
            workspace.renamed(name, new_name.strip())
            state.flash("success", f"Renamed {md(name)} to {md(new_name.strip())}.")
            st.session_state["models_renamed_to"] = new_name.strip()
            st.rerun()
        # One box per version: a tick must never arm the delete of another version.
        sure = delete_col.checkbox(f"Yes, delete {md(version.ref)}",
                                   key=f"models_delete_sure_{version.id}",
                                   help="Its history rows are kept.")
        if (delete_col.button("Delete this version", key="models_delete", disabled=not sure)
                and workspace.run_action("Not deleted", store.library.delete, name, number,
                                         role="admin")):
            state.flash("success", f"Deleted {md(version.ref)}; its history rows are kept.")
            st.rerun()

workspace.audit_panel(store)
