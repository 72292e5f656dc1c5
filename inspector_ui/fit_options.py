"""The fit panel's less common settings: how images are resized and how a map becomes a score.

Kept apart from the backbone / d / size / crop row so that the row stays short; every
control starts at the engine's default (``padim_core.config.DEFAULTS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import streamlit as st

from padim_core.config import DEFAULTS, PRESETS, PadimConfig
from padim_core.embedding import UPSAMPLE_MODES
from padim_core.images import RESIZE_MODES

if TYPE_CHECKING:
    from streamlit.delta_generator import DeltaGenerator

    from .actions import FitSettings

RESIZE_LABELS = {"stretch": "Square resize (stretch)", "pad": "Keep aspect ratio, black bands",
                 "pad-reflect": "Keep aspect ratio, mirrored bands"}
UPSAMPLE_LABELS = {"nearest": "Nearest (the PaDiM paper)", "bilinear": "Bilinear"}
PRESET_LABELS = {"quality": "Quality settings (default)", "reference": "Reference settings"}
PRESET_HELP = {
    "quality": "The default: EfficientNet-Lite2 with all 192 channels, the whole image at "
               "224 px, bilinear feature upsampling and a top-0.5 % image score. Found "
               "defects best on both data sets measured (docs/quality.md).",
    "reference": "The PaDiM paper's recipe: EfficientNet-Lite0, d = 100, 256 px with a 224 "
                 "centre crop, map maximum. Weaker detection, but about 0.7x the inspection "
                 "time, Accept as normal about 3.5x faster and model files about 3.3x "
                 "smaller (docs/quality.md)."}


@dataclass(frozen=True)
class FitOptions:
    """Resize mode, map blur, image-score rule and feature upsampling picked by the user."""

    resize: str
    sigma: float
    score_top_percent: float
    upsample: str = DEFAULTS.upsample


def fit_options(prefix: str) -> FitOptions:
    """Draw the options in a collapsed expander and return what is picked."""
    # Start values go into the session once, not as value= arguments, so that the preset
    # buttons can set these widgets without Streamlit's "set via the Session State API" note.
    for key, value in (("resize", DEFAULTS.resize), ("sigma", float(DEFAULTS.sigma)),
                       ("top", float(DEFAULTS.score_top_percent)),
                       ("upsample", DEFAULTS.upsample)):
        st.session_state.setdefault(f"{prefix}_{key}", value)
    with st.expander("Resize and scoring options"):
        c1, c2, c3 = st.columns(3)
        resize = c1.radio(
            "Resize", list(RESIZE_MODES), format_func=RESIZE_LABELS.get, key=f"{prefix}_resize",
            help="Square resize stretches non-square parts; keeping the aspect ratio pads "
                 "them to a square with black or with their own mirror image (then no centre "
                 "crop: the whole part is seen). For parts of varying shape; docs/quality.md "
                 "has the measurements.")
        sigma = c2.number_input(
            "Map blur σ (px)", min_value=0.0, max_value=32.0, step=1.0, key=f"{prefix}_sigma",
            help="Gaussian blur of the anomaly map; more blur means smoother maps and "
                 "fewer single hot pixels. 0 = none.")
        top = c3.number_input(
            "Image score: top % of the map", min_value=0.0, max_value=100.0,
            step=0.5, key=f"{prefix}_top",
            help="Image score = mean of this share of the map's hottest pixels; 0 = its "
                 "maximum (the PaDiM paper). A small share (0.5 %) ignores single hot pixels.")
        upsample = c1.radio(
            "Coarse features onto the fine grid", list(UPSAMPLE_MODES),
            format_func=UPSAMPLE_LABELS.get, key=f"{prefix}_upsample",
            help="The backbone's deeper feature maps are 2x and 4x coarser than the first. "
                 "Nearest repeats each value over its block (the PaDiM paper); bilinear "
                 "interpolates, so each patch gets features for its own position. Bilinear "
                 "scored better on both data sets measured (docs/quality.md).")
    return FitOptions(str(resize), float(sigma), float(top), str(upsample))


def preset_buttons(prefix: str, available: list[str]) -> DeltaGenerator:
    """Buttons above the fit panel that set its widgets to a preset (``config.PRESETS``); the
    widgets stay free to change afterwards. Returns the slot where ``show_preset`` says which
    preset, if any, the panel now matches."""
    row = st.columns([1.2, 1.2, 3])
    for column, name in zip(row, PRESETS, strict=False):
        column.button(PRESET_LABELS[name], key=f"{prefix}_preset_{name}",
                      on_click=_apply_preset, args=(prefix, name, available),
                      help=PRESET_HELP[name])
    problem = st.session_state.get(f"{prefix}_preset_problem")
    if problem:
        st.warning(problem)
    return row[2].empty()


def show_preset(slot: DeltaGenerator, settings: FitSettings) -> None:
    """Say in ``slot`` which preset the picked settings are, or that they are custom."""
    picked = PadimConfig(**settings.config_fields())
    for name, fields in PRESETS.items():
        if picked == PadimConfig(**fields):
            slot.caption(f"These are the **{name}** settings"
                         f"{' (the default)' if not fields else ''}.")
            return
    slot.caption("Custom settings.")


def _apply_preset(prefix: str, name: str, available: list[str]) -> None:
    cfg = PadimConfig(**PRESETS[name])
    if cfg.backbone not in available:
        st.session_state[f"{prefix}_preset_problem"] = (
            f"The {name} settings need {cfg.backbone}, whose weights are not on this "
            "machine; the panel is unchanged.")
        return
    st.session_state[f"{prefix}_preset_problem"] = None
    values = {"backbone": cfg.backbone, "size": cfg.image_size, "resize": cfg.resize,
              "upsample": cfg.upsample, "sigma": float(cfg.sigma),
              "top": float(cfg.score_top_percent)}
    # d and crop widgets are keyed per backbone / size: set only those already drawn (a new
    # one starts at the engine's default, which is the preset's)
    for key, value in ((f"d_{cfg.backbone}", cfg.d), (f"crop_{cfg.image_size}", cfg.crop)):
        if f"{prefix}_{key}" in st.session_state:
            values[key] = value
    for key, value in values.items():
        st.session_state[f"{prefix}_{key}"] = value
