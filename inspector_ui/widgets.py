"""The frame every page shares: title, sidebar status, messages, progress bars, synced sliders.

Drawing only. What a button does lives in :mod:`inspector_ui.actions`; the panels that run
actions are in :mod:`inspector_ui.panels`, the cards that show results in
:mod:`inspector_ui.cards`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import numpy as np
import streamlit as st

from padim_core.errors import PadimError

from . import resources, state, views
from .app_frame import require_app_frame
from .text import md

ERROR_ICON = ":material/error:"
WARNING_ICON = ":material/warning:"
UPLOAD_HELP = ("Images (PNG, JPEG, BMP, TIFF, WebP) or .zip archives of them. "
               "Several files at once are fine.")

P = ParamSpec("P")
T = TypeVar("T")


# --------------------------------------------------------------------------- messages / status


def show_messages() -> None:
    """Show messages queued by an action before a rerun."""
    for kind, text in state.pop_messages():
        getattr(st, kind, st.info)(text)


def show_problems(problems: list[tuple[str, str]], *, skipped: bool = False) -> None:
    """One box per bad file: "name: problem". ``skipped``: the work went on without these
    files (a model trained, a batch scored), so they are warnings, not errors that read as
    if it had failed. Both are shown as plain text (an uploaded file names itself)."""
    for name, problem in problems:
        if skipped:
            st.warning(f"{md(name)}: {md(problem)}", icon=WARNING_ICON)
        else:
            st.error(f"{md(name)}: {md(problem)}", icon=ERROR_ICON)


def attempt(action: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | None:
    """Run an action; when it fails, show the files it could not use and its message and
    return None (the action left the session as it was)."""
    try:
        return action(*args, **kwargs)
    except PadimError as err:
        show_problems(getattr(err, "problems", []))
        st.error(md(err), icon=ERROR_ICON)      # messages quote file and model names
        return None


def sidebar_status() -> None:
    """Device and model slots, on every page."""
    with st.sidebar:
        st.caption(f"Device: **{resources.device_text()}**")
        for key, title in state.SLOT_NAMES.items():
            slot = state.get_slot(key)
            if slot is not None:
                cfg = slot.model.config
                st.caption(f"{title}: **{cfg.backbone}**, d={cfg.d}, "
                           f"{cfg.image_size}/{cfg.crop} px · {md(slot.origin)}")
            elif key == "A":
                st.caption(f"{title}: none yet — train one on the Train page")


def page_start(title: str) -> None:
    """Title, sidebar status and pending messages: the top of every page, run inside
    ``app.py``'s frame."""
    require_app_frame()
    st.title(title)
    sidebar_status()
    # One container whether or not there are messages: Streamlit knows unkeyed elements
    # (expanders, tabs) by position, so a message present on one run and gone on the next
    # would otherwise shift them and, e.g., close an expander the user had just opened.
    with st.container():
        show_messages()


def require_model(slot_key: str = "A", in_library: int = 0) -> state.ModelSlot:
    """The model in ``slot_key``; without one, a pointer to the library picker above
    (``in_library`` versions saved) or the Train page, and the page stops."""
    slot = state.get_slot(slot_key)
    if slot is None:
        if in_library:
            st.info(f"No model open. The library above holds {in_library} version(s): "
                    "open one, or train a new one.")
        else:
            st.info("No model yet. Train one (or load a model file) first.")
        st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
        st.stop()
    return slot


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


def follow_open_model(key: str, slot_key: str = "A") -> None:
    """For a keyed picker of library versions: forget the user's last choice when the open
    model changes (a keyed selectbox keeps it, so pickers went on showing another version
    than the one open). Call before drawing the widget."""
    slot = state.get_slot(slot_key)
    token = slot.token if slot is not None else None
    marker = f"{key}__follows"
    if st.session_state.get(marker) != token:
        st.session_state.pop(key, None)
        st.session_state[marker] = token


def relabel(key: str, format_func: Callable[[Any], str]) -> None:
    """Make the keyed selectbox ``key`` show the chosen option's label as ``format_func``
    writes it now (call before drawing the widget).

    The browser keeps the label it showed for the chosen option until the script sets the
    value again: after *Accept as normal* re-scored the batch, the image picker still read
    the old score beside the new one.
    """
    marker = f"{key}__label"
    if key not in st.session_state:
        return
    try:
        text = format_func(st.session_state[key])
    except (IndexError, KeyError, TypeError):       # a choice from an earlier batch
        return
    if st.session_state.get(marker) != text:
        st.session_state[key] = st.session_state[key]
        st.session_state[marker] = text


def bound(factory: Callable[..., Any], label: str, *, key: str, value: Any,
          store: Callable[[Any], None], only_if_changed: bool = False, **kwargs: Any) -> Any:
    """Draw widget ``factory`` showing ``value`` from shared state; user changes go to ``store``.

    Widget state is dropped by Streamlit when a page stops drawing the widget, so the value
    lives elsewhere (per-session state shared by all pages) and is copied in before drawing,
    on every run: a skipped copy (the key still held the same value after the widget had been
    hidden by an ``st.stop``) let the browser redraw the slider at its minimum and send that.
    ``only_if_changed`` skips the copy when the key already holds ``value``, for text the user
    types: each copy overwrites what the browser shows, including keystrokes not yet sent.
    """
    if not (only_if_changed and key in st.session_state and st.session_state[key] == value):
        st.session_state[key] = value
    return factory(label, key=key, on_change=_store_widget, args=(key, store), **kwargs)


def _threshold_ranges(slot: state.ModelSlot) -> tuple[float, float]:
    """Slider ends for ``slot``, widened by what that model scored in this session: the last
    batch, and single images (Compare), so every score shown can be put under the threshold."""
    scores: list[float] = []
    pixel_max: list[float] = []
    insp = state.get_inspection()
    if insp is not None and insp.model_token == slot.token and len(insp.result.names):
        scores += [float(s) for s in insp.result.scores]
        pixel_max.append(float(insp.scale[1]))
    for p in state.predictions_of(slot.token):
        scores.append(float(p.score))
        pixel_max.append(float(np.nanmax(p.amap)) if np.isfinite(p.amap).any() else 0.0)
    finite = [s for s in scores if np.isfinite(s)]
    if not finite:
        return views.threshold_ranges(slot.model)
    return views.threshold_ranges(slot.model, np.asarray(finite),
                                  max(pixel_max) if pixel_max else None)


def threshold_controls(slot_key: str, *, prefix: str,
                       container: Any = None) -> state.Thresholds:
    """Image- and pixel-threshold sliders for slot ``slot_key`` (shared by all pages)."""
    where = container if container is not None else st
    slot = state.get_slot(slot_key)
    thr = state.get_thresholds(slot_key)
    assert slot is not None and thr is not None, "threshold_controls needs a model in the slot"
    image_hi, pixel_hi = _threshold_ranges(slot)
    # Only widen to fit a threshold set elsewhere (e.g. Evaluate); never grow on each drag.
    image_hi = max(image_hi, thr.image, 1e-6)
    pixel_hi = max(pixel_hi, thr.pixel, 1e-6)
    title = state.SLOT_NAMES[slot_key]
    image_step, pixel_step = views.slider_step(image_hi), views.slider_step(pixel_hi)
    # The lowest position is one step, or a finer threshold set elsewhere (a saved one, say):
    # the slider must show the threshold the verdicts use, not its own lowest step.
    image_lo = min(image_step, thr.image) if thr.image > 0 else image_step
    pixel_lo = min(pixel_step, thr.pixel) if thr.pixel > 0 else pixel_step
    bound(where.slider, f"Image threshold ({title})", key=f"{prefix}_image_thr",
          value=float(np.clip(thr.image, image_lo, image_hi)),
          store=lambda v: state.set_thresholds(slot_key, image=v),
          min_value=float(image_lo), max_value=float(image_hi), step=image_step,
          format="%.3f", help="Images scoring at or above this are NG.")
    bound(where.slider, f"Pixel threshold ({title})", key=f"{prefix}_pixel_thr",
          value=float(np.clip(thr.pixel, pixel_lo, pixel_hi)),
          store=lambda v: state.set_thresholds(slot_key, pixel=v),
          min_value=float(pixel_lo), max_value=float(pixel_hi), step=pixel_step,
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
