"""Reusable Streamlit pieces: progress, synced sliders, training / loading panels, model card.

Pages call these; they hold widgets and calls into padim_core, no PaDiM math.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from padim_core import PadimModel
from padim_core.errors import PadimError, WeightsUnavailableError

from . import plots, resources, state, views
from .app_frame import require_app_frame
from .uploads import ImageBatch, collect_images, demo_train_batch

ERROR_ICON = ":material/error:"
IMAGE_SIZES = (128, 160, 192, 224, 256, 288, 320, 384, 448, 512)
CROP_SIZES = (96, 112, 128, 160, 192, 224, 256, 288, 320, 384, 448, 512)
DEFAULT_IMAGE_SIZE = 256
DEFAULT_CROP = 224
DEFAULT_D = 100
UPLOAD_HELP = ("Images (PNG, JPEG, BMP, TIFF, WebP) or .zip archives of them. "
               "Several files at once are fine.")


# --------------------------------------------------------------------------- messages / status


def show_messages() -> None:
    """Show messages queued by an action before a rerun."""
    for kind, text in state.pop_messages():
        getattr(st, kind, st.info)(text)


def show_problems(problems: list[tuple[str, str]]) -> None:
    """One ``st.error`` per bad file: "name: problem"."""
    for name, problem in problems:
        st.error(f"{name}: {problem}", icon=ERROR_ICON)


def sidebar_status() -> None:
    """Device and model slots, on every page."""
    with st.sidebar:
        st.caption(f"Device: **{resources.device_text()}**")
        for key, title in state.SLOT_NAMES.items():
            slot = state.get_slot(key)
            if slot is not None:
                cfg = slot.model.config
                st.caption(f"{title}: **{cfg.backbone}**, d={cfg.d}, "
                           f"{cfg.image_size}/{cfg.crop} px · {slot.origin}")
            elif key == "A":
                st.caption(f"{title}: none yet — train one on the Train page")


class Progress:
    """``st.progress`` bar plus status line, usable as the engine's progress callback."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.start = time.perf_counter()
        self.bar = st.progress(0.0, text=f"{what}: starting…")

    def elapsed(self) -> float:
        """Seconds since the bar appeared."""
        return time.perf_counter() - self.start

    def __call__(self, done: int, total: int, stage: str = "") -> None:
        frac = min(1.0, max(0.0, done / total)) if total else 0.0
        stage_text = f" — {stage}" if stage else ""
        # A progress update must never break a fit (e.g. a call from a worker thread).
        with contextlib.suppress(Exception):
            self.bar.progress(frac, text=f"{self.what}{stage_text}: {done}/{total} · "
                                         f"{self.elapsed():.1f} s")

    def finish(self, text: str) -> None:
        """Fill the bar and say what happened."""
        self.bar.progress(1.0, text=text)

    def fail(self) -> None:
        """Remove the bar after an error (the error itself is shown by the caller)."""
        self.bar.empty()


# --------------------------------------------------------------------------- synced widgets


def _store_widget(widget_key: str, store: Callable[[Any], None]) -> None:
    store(st.session_state[widget_key])


def bound(factory: Callable[..., Any], label: str, *, key: str, value: Any,
          store: Callable[[Any], None], **kwargs: Any) -> Any:
    """Draw widget ``factory`` showing ``value`` from shared state; user changes go to ``store``.

    Widget state is dropped by Streamlit when a page stops drawing the widget, so the value
    lives elsewhere (per-session state shared by all pages) and is copied in before drawing,
    on every run: a skipped copy (the key still held the same value after the widget had been
    hidden by an ``st.stop``) let the browser redraw the slider at its minimum and send that.
    """
    st.session_state[key] = value
    return factory(label, key=key, on_change=_store_widget, args=(key, store), **kwargs)


def _nice_step(hi: float) -> float:
    """A slider step giving roughly 500 positions over [0, hi]."""
    raw = max(hi, 1e-9) / 500.0
    return float(10 ** np.floor(np.log10(raw)))


def threshold_ranges(slot_key: str) -> tuple[float, float]:
    """Upper ends of the image / pixel threshold sliders of a slot, the same on every page:
    past the calibration scores, the thresholds and the current batch's scores and maps."""
    slot = state.get_slot(slot_key)
    assert slot is not None
    model = slot.model
    image_values = [2.0 * float(model.image_threshold_)]
    pixel_values = [2.0 * float(model.pixel_threshold_)]
    calibration = np.asarray(getattr(model, "calibration_scores_", []), dtype=float)
    if calibration.size:
        image_values.append(1.25 * float(calibration.max()))
    insp = state.get_inspection()
    if insp is not None and insp.model_token == slot.token and len(insp.result.names):
        image_values.append(1.25 * float(np.max(insp.result.scores)))
        pixel_values.append(1.1 * float(insp.scale[1]))
    return max(image_values), max(pixel_values)


def threshold_controls(slot_key: str, *, prefix: str,
                       container: Any = None) -> state.Thresholds:
    """Image- and pixel-threshold sliders for slot ``slot_key`` (shared by all pages)."""
    where = container if container is not None else st
    thr = state.get_thresholds(slot_key)
    assert thr is not None, "threshold_controls needs a model in the slot"
    image_hi, pixel_hi = threshold_ranges(slot_key)
    # Only widen to fit a threshold set elsewhere (e.g. Evaluate); never grow on each drag.
    image_hi = max(image_hi, thr.image, 1e-6)
    pixel_hi = max(pixel_hi, thr.pixel, 1e-6)
    title = state.SLOT_NAMES[slot_key]
    bound(where.slider, f"Image threshold ({title})", key=f"{prefix}_image_thr",
          value=float(np.clip(thr.image, _nice_step(image_hi), image_hi)),
          store=lambda v: state.set_thresholds(slot_key, image=v),
          min_value=_nice_step(image_hi), max_value=float(image_hi), step=_nice_step(image_hi),
          format="%.3f", help="Images scoring at or above this are NG.")
    bound(where.slider, f"Pixel threshold ({title})", key=f"{prefix}_pixel_thr",
          value=float(np.clip(thr.pixel, _nice_step(pixel_hi), pixel_hi)),
          store=lambda v: state.set_thresholds(slot_key, pixel=v),
          min_value=_nice_step(pixel_hi), max_value=float(pixel_hi), step=_nice_step(pixel_hi),
          format="%.3f", help="Pixels scoring at or above this form the defect mask / contour.")
    if where.button("Reset to calibrated thresholds", key=f"{prefix}_reset_thr"):
        state.reset_thresholds(slot_key)
        st.rerun()
    result = state.get_thresholds(slot_key)
    assert result is not None
    return result


def display_controls(*, prefix: str, container: Any = None) -> tuple[float, str]:
    """Overlay opacity and colour map (shared by all pages). Returns (alpha, colormap)."""
    where = container if container is not None else st
    alpha = bound(where.slider, "Heatmap opacity", key=f"{prefix}_alpha",
                  value=float(state.setting("alpha", 0.5)),
                  store=lambda v: state.set_setting("alpha", v),
                  min_value=0.0, max_value=1.0, step=0.05)
    names = views.colormaps()
    current = state.setting("colormap", names[0])
    colormap = bound(where.selectbox, "Colour map", key=f"{prefix}_cmap",
                     value=current if current in names else names[0],
                     store=lambda v: state.set_setting("colormap", v), options=names)
    return float(alpha), str(colormap)


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class FitSettings:
    """What the user picked on a training panel."""

    backbone: str
    d: int
    image_size: int
    crop: int


def fit_settings(prefix: str) -> FitSettings | None:
    """Backbone, d, image size and crop widgets. None when nothing usable is available."""
    statuses = resources.backbones()
    available = [s for s in statuses if s.available]
    labels = {s.name: s.label for s in statuses}
    c1, c2, c3, c4 = st.columns([3, 2, 2, 2])
    if not available:
        c1.error("No backbone has its pretrained weights on this machine.")
        for s in statuses:
            c1.caption(f"~~{s.label}~~ — {s.reason}")
        return None
    backbone = c1.selectbox("Backbone", [s.name for s in available],
                            format_func=lambda n: labels.get(n, n), key=f"{prefix}_backbone",
                            help="Pretrained CNN whose features PaDiM models.")
    for s in statuses:
        if not s.available:
            reason = str(s.reason or "weights missing")
            short = reason.split(". ")[0].removeprefix(f"{s.name}: ")
            c1.caption(f":gray[~~{s.label}~~ — unavailable: {short}]", help=reason)
    channels = resources.backbone_channels(backbone) or 1000
    d = c2.number_input("d (feature dims kept)", min_value=2, max_value=channels,
                        value=min(DEFAULT_D, channels), step=1, key=f"{prefix}_d_{backbone}",
                        help=f"Random subset of the {channels} channels of {backbone}; "
                             "smaller is faster and smaller on disk.")
    size = c3.select_slider("Image size", options=IMAGE_SIZES, value=DEFAULT_IMAGE_SIZE,
                            key=f"{prefix}_size", help="Images are resized to this first.")
    crops = [s for s in CROP_SIZES if s <= size]
    crop_default = DEFAULT_CROP if DEFAULT_CROP in crops else crops[-1]
    if len(crops) > 1:
        crop = c4.select_slider("Centre crop", options=crops, value=crop_default,
                                key=f"{prefix}_crop_{size}",
                                help="Then centre-cropped to this; maps have this size.")
    else:
        crop = crops[0]
        c4.caption(f"Centre crop: {crop} px")
    return FitSettings(str(backbone), int(d), int(size), int(crop))


def fit_into_slot(slot_key: str, batch: ImageBatch, settings: FitSettings) -> bool:
    """Fit a new model on ``batch``; it replaces slot ``slot_key`` only when the fit succeeds."""
    show_problems(batch.problems)
    if not batch:
        st.error("Nothing to train on: no usable image in the upload.", icon=ERROR_ICON)
        return False
    progress = Progress(f"Training {state.SLOT_NAMES[slot_key]} on {len(batch)} images")
    try:
        extractor = resources.get_extractor(settings.backbone)
        model = PadimModel(backbone=settings.backbone, d=settings.d,
                           image_size=settings.image_size, crop=settings.crop,
                           extractor=extractor)
        model.fit(batch.data, progress=progress, names=batch.names)
    except PadimError as err:
        progress.fail()
        st.error(f"Training failed — {err}", icon=ERROR_ICON)
        return False
    state.count(state.FIT_CALLS_KEY)
    skipped = [*batch.problems, *model.skipped_]
    n_used = int(model.n_train_images_)
    slot = state.set_slot(slot_key, model, origin=f"trained on {n_used} images from "
                                                  f"{batch.label}", skipped=skipped)
    progress.finish(f"Trained on {n_used} images, {len(skipped)} skipped, "
                    f"{model.fit_seconds_:.1f} s on {model.device_}")
    skipped_text = f", {len(skipped)} file(s) skipped (listed below)" if skipped else ""
    state.flash("success", f"{state.SLOT_NAMES[slot_key]} is ready: {slot.origin} "
                           f"({model.fit_seconds_:.1f} s on {model.device_}){skipped_text}.")
    return True


def uploaded_pairs(files: Any) -> list[tuple[str, bytes]]:
    """(name, bytes) of what ``st.file_uploader`` returned (None, one file or a list)."""
    if files is None:
        return []
    if not isinstance(files, list):
        files = [files]
    return [(f.name, f.getvalue()) for f in files]


def files_label(files: list[Any]) -> str:
    """"cracked.png" / "batch.zip" / "12 uploaded files"."""
    return files[0].name if len(files) == 1 else f"{len(files)} uploaded files"


def training_panel(slot_key: str) -> None:
    """Pick data and settings, then fit a model into slot ``slot_key``."""
    prefix = f"train{slot_key}"
    settings = fit_settings(prefix)
    left, right = st.columns([3, 2])
    files = left.file_uploader("Images of good parts", accept_multiple_files=True,
                               key=f"{prefix}_files", help=UPLOAD_HELP)
    go_upload = left.button("Train on uploaded images", key=f"{prefix}_go", type="primary",
                            disabled=settings is None or not files)
    right.markdown("**No images at hand?**")
    right.caption("A synthetic set of brushed-metal plates (60 good training images) ships "
                  "with the tool.")
    go_demo = right.button("Train on the demo set", key=f"{prefix}_demo",
                           disabled=settings is None)
    if settings is None:
        return
    if go_upload:
        batch = collect_images(uploaded_pairs(files), label=files_label(files))
        if fit_into_slot(slot_key, batch, settings):
            st.rerun()
    elif go_demo:
        try:
            batch = demo_train_batch()
        except PadimError as err:
            st.error(f"Demo set unavailable — {err}", icon=ERROR_ICON)
            return
        if fit_into_slot(slot_key, batch, settings):
            st.rerun()


def load_model_bytes(slot_key: str, name: str, data: bytes) -> bool:
    """Load a model file into slot ``slot_key``; on error the slot keeps its model."""
    if not data:
        st.error(f"{name}: the file is empty", icon=ERROR_ICON)
        return False
    try:
        model = PadimModel.from_bytes(data, name=name)
    except PadimError as err:
        st.error(str(err), icon=ERROR_ICON)
        return False
    try:
        share_extractor(model)
    except WeightsUnavailableError:
        cfg = model.config
        which = f"the weights file {Path(cfg.weights).name}" if cfg.weights else \
            f"the pretrained {cfg.backbone} weights"
        st.error(f"{name}: this model needs the {cfg.backbone} backbone, and {which} "
                 "are not installed on this server. Ask whoever runs the server to add them, "
                 "or train a model here with an available backbone.", icon=ERROR_ICON)
        return False
    except PadimError as err:
        st.error(f"{name}: {err}", icon=ERROR_ICON)
        return False
    state.set_slot(slot_key, model, origin=f"loaded from {name}")
    state.flash("success", f"{state.SLOT_NAMES[slot_key]} loaded from {name}.")
    return True


def share_extractor(model: PadimModel) -> None:
    """Give a loaded model the process-wide cached backbone instead of loading its own.

    The file tells which backbone it wants only once it is read, so the cached one is
    attached afterwards; random-weight models keep their own (seeded) backbone.
    """
    cfg = model.config
    if cfg.weights != "random":
        model.use_extractor(resources.get_extractor(cfg.backbone, cfg.weights))


def model_loader(slot_key: str) -> None:
    """Upload a saved model file into slot ``slot_key`` instead of training."""
    prefix = f"load{slot_key}"
    file = st.file_uploader("Model file (.safetensors)", key=f"{prefix}_file",
                            help="A model downloaded from this tool or saved by the CLI.")
    clicked = st.button("Load model", key=f"{prefix}_go", disabled=file is None)
    if clicked and file is not None and load_model_bytes(slot_key, file.name, file.getvalue()):
        st.rerun()


# --------------------------------------------------------------------------- model card


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
    thr = state.get_thresholds(slot_key)
    assert thr is not None
    st.caption(slot.origin)
    cols = st.columns([2.4, 0.8, 1.4, 1.1, 1.5, 1.5])
    cols[0].metric("Backbone", str(card.get("backbone", model.config.backbone)))
    cols[1].metric("d", str(card.get("d", model.config.d)))
    cols[2].metric("Training images", str(card.get("n_train_images", model.n_train_images_)))
    cols[3].metric("Fit time", f"{float(card.get('fit_seconds', model.fit_seconds_)):.1f} s")
    cols[4].metric("Image threshold", f"{float(model.image_threshold_):.3f}")
    cols[5].metric("Pixel threshold", f"{float(model.pixel_threshold_):.3f}")
    left, right = st.columns([3, 2])
    with left:
        scores = np.asarray(getattr(model, "calibration_scores_", []), dtype=float)
        if scores.size:
            st.plotly_chart(plots.calibration_histogram(scores, float(model.image_threshold_)),
                            key=f"card{slot_key}_hist")
    with right:
        rows = [{"field": k, "value": _fmt(v)} for k, v in card.items()
                if not isinstance(v, dict) and k not in {"skipped", "warnings"}]
        st.dataframe(rows, hide_index=True, key=f"card{slot_key}_table")
    for warning in getattr(model, "warnings_", None) or []:
        st.warning(warning)
    if slot.skipped:
        with st.expander(f"{len(slot.skipped)} file(s) skipped while training", expanded=True):
            show_problems(slot.skipped)
    cfg = model.config
    st.download_button("Download model (.safetensors)", data=model.to_bytes,
                       file_name=f"padim_{cfg.backbone}_d{cfg.d}_{cfg.crop}px.safetensors",
                       mime="application/octet-stream", on_click="ignore",
                       key=f"card{slot_key}_download")


def page_start(title: str) -> None:
    """Title, sidebar status and pending messages: the top of every page, run inside
    ``app.py``'s frame."""
    require_app_frame()
    st.title(title)
    sidebar_status()
    show_messages()


def require_model(slot_key: str = "A") -> state.ModelSlot:
    """The model in ``slot_key``; without one, a pointer to the Train page and the page stops."""
    slot = state.get_slot(slot_key)
    if slot is None:
        st.info("No model yet. Train one (or load a model file) first.")
        st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
        st.stop()
    return slot


# --------------------------------------------------------------------------- inspection


def run_inspection(slot_key: str, batch: ImageBatch) -> bool:
    """Score ``batch`` with the model in ``slot_key`` and keep the results in the session.

    When no image of the batch can be read, the previous results stay.
    """
    slot = state.get_slot(slot_key)
    assert slot is not None
    show_problems(batch.problems)
    if not batch:
        st.error("Nothing to inspect: no usable image in the upload. Previous results kept.",
                 icon=ERROR_ICON)
        return False
    progress = Progress(f"Scoring {len(batch)} images")
    try:
        state.count(state.PREDICT_CALLS_KEY)
        result = slot.model.predict(batch.data, progress=progress, names=batch.names)
    except PadimError as err:
        progress.fail()
        st.error(f"{err} — previous results kept.", icon=ERROR_ICON)
        return False
    show_problems(list(result.skipped))
    if len(result.names) == 0:
        progress.fail()
        st.error("None of the images could be read. Previous results kept.", icon=ERROR_ICON)
        return False
    sources = batch.sources()
    inspection = state.Inspection(
        model_token=slot.token, result=result,
        sources={name: sources[name] for name in result.names if name in sources},
        label=batch.label, seconds=progress.elapsed(),
        problems=[*batch.problems, *result.skipped],
        scale=views.shared_scale(result.maps))
    state.set_inspection(inspection)
    progress.finish(f"Scored {len(result.names)} images in {inspection.seconds:.1f} s")
    return True


def predict_one(slot_key: str, name: str, data: state.ImageData) -> state.Prediction | None:
    """Score one image under slot ``slot_key``, re-using an earlier result when there is one."""
    slot = state.get_slot(slot_key)
    if slot is None:
        return None
    hit = state.cached_prediction(slot.token, name)
    if hit is not None:
        return hit
    try:
        with st.spinner(f"Scoring {name} with {state.SLOT_NAMES[slot_key]}…"):
            state.count(state.PREDICT_CALLS_KEY)
            res = slot.model.predict([data], names=[name])
    except PadimError as err:
        st.error(str(err), icon=ERROR_ICON)
        return None
    if len(res.names) == 0:
        show_problems(list(res.skipped) or [(name, "could not be read")])
        return None
    prediction = state.Prediction(name, float(res.scores[0]), res.maps[0], res.images[0])
    state.remember_prediction(slot.token, prediction)
    return prediction


# --------------------------------------------------------------------------- evaluation


class ScoreRecorder:
    """Stands in for a model during evaluation: passes ``predict`` through, names each image
    ``<defect type>/<file>`` and keeps the result, so the page can draw ROC / PR curves."""

    def __init__(self, model: PadimModel) -> None:
        self._model = model
        self.result: Any = None

    def predict(self, images: list[Any], progress: Any = None, names: Any = None) -> Any:
        """``model.predict`` with readable names; the result is kept in ``self.result``."""
        if names is None:
            names = [f"{Path(p).parent.name}/{Path(p).name}" for p in images]
        state.count(state.PREDICT_CALLS_KEY)
        self.result = self._model.predict(images, progress=progress, names=names)
        return self.result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def _rewrite(text: str, folder: Path, label: str) -> str:
    """Replace a temporary folder's path in a message by the archive's name."""
    return text.replace(str(folder), label) if str(folder) else text


def run_evaluation(slot_key: str, category: Any, label: str, scratch: Path | None = None,
                   fit_first: FitSettings | None = None) -> bool:
    """Evaluate slot ``slot_key`` on a labelled MVTec category (optionally fitting it first)."""
    if fit_first is not None:
        batch = ImageBatch(label=f"{label}, train/good")
        for path in category.train:
            batch.add(f"train/good/{Path(path).name}", Path(path))
        if not fit_into_slot(slot_key, batch, fit_first):
            return False
    slot = state.get_slot(slot_key)
    if slot is None:
        st.error("Train or load a model first (or tick 'train on its train/good images').")
        return False
    recorder = ScoreRecorder(slot.model)
    progress = Progress(f"Evaluating on {len(category.test)} labelled images")
    try:
        from padim_core.evaluation import evaluate_model

        report = evaluate_model(recorder, category.test, progress=progress)
    except PadimError as err:
        progress.fail()
        message = str(err)
        if scratch is not None:
            message = _rewrite(message, scratch, label)
        st.error(f"Evaluation failed — {message}", icon=ERROR_ICON)
        return False
    labels_by_name = {f"{item.defect_type}/{Path(item.path).name}": bool(item.is_anomalous)
                      for item in category.test}
    res = recorder.result
    names = list(res.names) if res is not None else []
    curve_labels = np.asarray([labels_by_name.get(n, False) for n in names], dtype=bool)
    curve_scores = np.asarray(res.scores, dtype=float) if res is not None else np.zeros(0)
    state.set_evaluation(state.Evaluation(
        model_token=slot.token, report=report, label=label, seconds=progress.elapsed(),
        n_images=len(category.test), labels=curve_labels, scores=curve_scores))
    progress.finish(f"Evaluated {report.n_images} images in {progress.elapsed():.1f} s")
    return True
