"""Panels whose buttons run actions: train, load a model file, inspect, compare, evaluate.

Each panel draws its inputs, a progress bar and the outcome, and leaves the work to
:mod:`inspector_ui.actions`; a failed action shows its message and changes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import streamlit as st

from padim_core.backbones import SPECS
from padim_core.config import DEFAULTS, default_crop

from . import actions, resources, state, uploads
from .actions import FitSettings
from .fit_options import fit_options, preset_buttons, show_preset
from .text import md
from .uploads import ImageBatch
from .widgets import UPLOAD_HELP, Progress, attempt, show_problems

if TYPE_CHECKING:
    from padim_core.datasets import MVTecCategory

IMAGE_SIZES = (128, 160, 192, 224, 256, 288, 320, 384, 448, 512)
CROP_SIZES = (96, 112, 128, 160, 192, 224, 256, 288, 320, 384, 448, 512)


# --------------------------------------------------------------------------- training


def _size_choices() -> list[int]:
    """The image sizes offered, the engine's default among them."""
    return sorted({*IMAGE_SIZES, DEFAULTS.image_size})


def _crop_choices(size: int) -> tuple[list[int], int]:
    """The crops offered for ``size`` and the default one (the engine's 7/8 rule)."""
    default = default_crop(size)
    return sorted({*(c for c in CROP_SIZES if c <= size), default}), default


def fit_settings(prefix: str) -> FitSettings | None:
    """Backbone, d, image size and crop widgets. None when nothing usable is available."""
    statuses = resources.backbones()
    available = [s for s in statuses if s.available]
    labels = {s.name: s.label for s in statuses}
    preset_slot = preset_buttons(prefix, [s.name for s in available]) if available else None
    c1, c2, c3, c4 = st.columns([3, 2, 2, 2])
    if not available:
        c1.error("No backbone has its pretrained weights on this machine.")
        for s in statuses:
            c1.caption(f"~~{s.label}~~ — {md(s.reason)}")     # names a weights file
        return None
    names = [s.name for s in available]
    st.session_state.setdefault(f"{prefix}_backbone", DEFAULTS.backbone
                                if DEFAULTS.backbone in names else names[0])  # see fit_options
    backbone = c1.selectbox("Backbone", names,
                            format_func=lambda n: labels.get(n, n), key=f"{prefix}_backbone",
                            help="Pretrained CNN whose features PaDiM models.")
    for s in statuses:
        if not s.available:
            reason = str(s.reason or "weights missing")
            short = reason.split(". ")[0].removeprefix(f"{s.name}: ")
            c1.caption(f":gray[~~{s.label}~~ — unavailable: {md(short)}]", help=md(reason))
    channels = resources.backbone_channels(backbone) or 1000
    d = c2.number_input("d (feature dims kept)", min_value=2, max_value=channels,
                        value=min(SPECS[backbone].default_d if backbone in SPECS
                                  else DEFAULTS.d, channels),
                        step=1, key=f"{prefix}_d_{backbone}",
                        help=f"Random subset of the {channels} channels of {backbone}; "
                             "smaller is faster and smaller on disk.")
    st.session_state.setdefault(f"{prefix}_size", DEFAULTS.image_size)   # see fit_options
    size = c3.select_slider("Image size", options=_size_choices(), key=f"{prefix}_size",
                            help="Images are resized to this first.")
    options = fit_options(prefix)
    crops, crop_default = _crop_choices(size)
    if options.resize != "stretch":
        crop = size
        c4.caption(f"No centre crop with padding: {size} px")
    elif len(crops) > 1:
        crop = c4.select_slider("Centre crop", options=crops, value=crop_default,
                                key=f"{prefix}_crop_{size}",
                                help="Then centre-cropped to this; maps have this size.")
    else:
        crop = crops[0]
        c4.caption(f"Centre crop: {crop} px")
    settings = FitSettings(str(backbone), int(d), int(size), int(crop), options.resize,
                           options.sigma, options.score_top_percent, options.upsample)
    if preset_slot is not None:
        show_preset(preset_slot, settings)
    return settings


def fit_into_slot(slot_key: str, batch: ImageBatch, settings: FitSettings,
                  client: Any = None) -> bool:
    """Fit a new model on ``batch`` with a progress bar; the slot changes only on success.
    ``client``: fit on this Dask cluster (the bar then moves as its shards finish)."""
    show_problems(batch.problems)
    where = "" if client is None else " on the cluster"
    progress = Progress(f"Training {state.SLOT_NAMES[slot_key]} on {len(batch)} images{where}")
    slot = attempt(actions.fit_into_slot, slot_key, batch, settings, progress=progress,
                   client=client)
    if slot is None:
        progress.fail()
        return False
    model = slot.model
    progress.finish(f"Trained on {int(model.n_train_images_)} images, {len(slot.skipped)} "
                    f"skipped, {model.fit_seconds_:.1f} s on {model.device_}")
    skipped_text = f", {len(slot.skipped)} file(s) skipped (listed below)" \
        if slot.skipped else ""
    state.flash("success", f"{state.SLOT_NAMES[slot_key]} is ready: {md(slot.origin)} "
                           f"({model.fit_seconds_:.1f} s on {model.device_}){skipped_text}.")
    return True


def training_panel(slot_key: str, save_to_library: bool = False) -> FitSettings | None:
    """Pick data and settings, then fit a model into slot ``slot_key``; with
    ``save_to_library`` the fitted model also becomes a new version in the workspace library
    (under the typed name, else the data set's name). Returns the settings picked (None when
    no backbone is usable), for other ways to fit (the cluster)."""
    prefix = f"train{slot_key}"
    settings = fit_settings(prefix)
    save_name = ""
    if save_to_library:
        save_name = st.text_input(
            "Save in the library as", key=f"{prefix}_save_name", max_chars=200,
            placeholder="default: the data set's name (e.g. demo)",
            help="Each training adds a new version of this name to the library (Models "
                 "page); the link in the address bar then reopens it after a reload.")
    left, right = st.columns([3, 2])
    files = left.file_uploader("Images of good parts", accept_multiple_files=True,
                               key=f"{prefix}_files", help=UPLOAD_HELP,
                               max_upload_size=uploads.IMAGE_UPLOADER_MB)
    go_upload = left.button("Train on uploaded images", key=f"{prefix}_go", type="primary",
                            disabled=settings is None or not files)
    right.markdown("**No images at hand?**")
    right.caption("A synthetic set of brushed-metal plates (60 good training images) ships "
                  "with the tool.")
    go_demo = right.button("Train on the demo set", key=f"{prefix}_demo",
                           disabled=settings is None)
    if settings is None:
        return None
    batch = None
    if go_upload:
        batch = uploads.uploaded_batch(files)
    elif go_demo:
        batch = attempt(actions.load_demo, "train")
    if batch is not None:
        fit_and_save(slot_key, batch, settings, save_name if save_to_library else None)
    return settings


def fit_and_save(slot_key: str, batch: ImageBatch, settings: FitSettings,
                 save_name: str | None, client: Any = None) -> None:
    """Fit into slot ``slot_key`` (on ``client``'s cluster if given); unless ``save_name`` is
    None, save the model in the library under it (else the data set's name); rerun."""
    if not fit_into_slot(slot_key, batch, settings, client=client):
        return
    if save_name is not None:
        from . import workspace

        name = save_name.strip() or workspace.default_model_name(batch.label)
        saved = workspace.save_slot(workspace.get_store(), slot_key, name)
        if saved is None:
            return      # the error stays on screen; the new model is in the slot
        state.flash("success", f"Saved in the library as **{md(saved.ref)}**.")
    st.rerun()


def model_loader(slot_key: str) -> None:
    """Upload a saved model file into slot ``slot_key`` instead of training."""
    prefix = f"load{slot_key}"
    file = st.file_uploader("Model file (.safetensors)", key=f"{prefix}_file",
                            help="A model downloaded from this tool or saved by the CLI.",
                            max_upload_size=uploads.MODEL_UPLOADER_MB)
    clicked = st.button("Load model", key=f"{prefix}_go", disabled=file is None)
    if not clicked or file is None:
        return
    slot = attempt(actions.load_model_bytes, slot_key, file.name, file.getvalue())
    if slot is not None:
        state.flash("success", f"{state.SLOT_NAMES[slot_key]} {md(slot.origin)}.")
        st.rerun()


# --------------------------------------------------------------------------- inspection


def run_inspection(slot_key: str, batch: ImageBatch) -> bool:
    """Score ``batch`` with a progress bar; on failure the previous results stay."""
    show_problems(batch.problems)
    progress = Progress(f"Scoring {len(batch)} images")
    inspection = attempt(actions.run_inspection, slot_key, batch, progress=progress)
    if inspection is None:
        progress.fail()
        return False
    show_problems(list(inspection.result.skipped), skipped=True)
    progress.finish(f"Scored {len(inspection.result.names)} images in "
                    f"{inspection.seconds:.1f} s")
    slot = state.get_slot(slot_key)
    if slot is not None and slot.library_ref is not None:
        from . import workspace

        workspace.record_inspection(workspace.get_store(), slot, inspection,
                                    operator=st.session_state.get(workspace.OPERATOR_KEY, ""),
                                    slot_key=slot_key)
    return True


def inspect_panel(slot_key: str) -> None:
    """Upload images (or use the demo test set) and score them with slot ``slot_key``."""
    left, right = st.columns([3, 2])
    files = left.file_uploader("Images to inspect", accept_multiple_files=True,
                               key="inspect_files", help=UPLOAD_HELP,
                               max_upload_size=uploads.IMAGE_UPLOADER_MB)
    go_upload = left.button("Inspect uploaded images", type="primary", key="inspect_go",
                            disabled=not files)
    right.markdown("**Demo test set**")
    slot = state.get_slot(slot_key)
    of_demo = slot is None or "demo" in slot.origin
    right.caption("Good plates and plates with scratches, stains and holes."
                  + ("" if of_demo else " Made for the demo model: under a model of other "
                                        "parts every plate looks anomalous."))
    go_demo = right.button("Inspect the demo test set", key="inspect_demo")
    batch = None
    if go_upload and files:
        batch = uploads.uploaded_batch(files)
    elif go_demo:
        batch = attempt(actions.load_demo, "test")
    if batch is not None:
        run_inspection(slot_key, batch)


def predict_one(slot_key: str, name: str, data: state.ImageData) -> state.Prediction | None:
    """Score one image under slot ``slot_key`` (or re-use its earlier score); None after an
    error, which is shown. A fresh score by a library model is recorded in the history."""
    slot = state.get_slot(slot_key)
    fresh = slot is not None and state.cached_prediction(slot.token, name) is None
    with st.spinner(f"Scoring {md(name)} with {state.SLOT_NAMES[slot_key]}…"):
        prediction = attempt(actions.predict_one, slot_key, name, data)
    if prediction is not None and fresh and slot is not None and slot.library_ref is not None:
        from . import workspace

        workspace.record_prediction(workspace.get_store(), slot_key, prediction, data,
                                    operator=st.session_state.get(workspace.OPERATOR_KEY, ""))
    return prediction


def compare_sources_panel(pool: dict[str, state.ImageData]) -> None:
    """Add uploaded images or the demo test set to the Compare page's images (and ``pool``)."""
    files = st.file_uploader("Images", accept_multiple_files=True, key="compare_files",
                             help=UPLOAD_HELP, max_upload_size=uploads.IMAGE_UPLOADER_MB)
    a1, a2 = st.columns(2)
    batch = None
    if a1.button("Add uploaded images", key="compare_add", disabled=not files) and files:
        batch = uploads.uploaded_batch(files)
        show_problems(batch.problems)
    if a2.button("Add the demo test set", key="compare_demo"):
        batch = attempt(actions.load_demo, "test")
    if batch is not None:
        state.compare_sources().update(batch.sources())
        pool.update(batch.sources())


# --------------------------------------------------------------------------- evaluation


def run_evaluation(slot_key: str, category: MVTecCategory, label: str, scratch: Path | None = None,
                   fit_first: FitSettings | None = None) -> bool:
    """Evaluate slot ``slot_key`` on a labelled MVTec category (optionally fitting it first)."""
    if fit_first is not None and not fit_into_slot(
            slot_key, uploads.train_batch(category, f"{label}, train/good"), fit_first):
        return False
    progress = Progress(f"Evaluating on {len(category.test)} labelled images")
    evaluation = attempt(actions.run_evaluation, slot_key, category, label,
                         progress=progress, scratch=scratch)
    if evaluation is None:
        progress.fail()
        return False
    progress.finish(f"Evaluated {evaluation.report.n_images} images in "
                    f"{evaluation.seconds:.1f} s")
    return True


def evaluate_zip(slot_key: str, name: str, data: bytes,
                 fit_first: FitSettings | None = None) -> bool:
    """Unpack an uploaded labelled set into a private scratch folder and evaluate on it."""
    with uploads.scratch_dir() as tmp:
        opened = attempt(actions.open_labelled_zip, name, data, tmp)
        if opened is None:
            return False
        category, skipped = opened
        show_problems(skipped)
        return run_evaluation(slot_key, category, name, scratch=tmp, fit_first=fit_first)


def evaluate_demo(slot_key: str, fit_first: FitSettings | None = None) -> bool:
    """Evaluate on the demo set's labelled test images."""
    category = attempt(actions.load_demo_category)
    return category is not None and run_evaluation(slot_key, category, "demo set",
                                                   fit_first=fit_first)
