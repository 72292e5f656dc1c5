"""The fit panel's less common settings: how images are resized and how a map becomes a score.

Kept apart from the backbone / d / size / crop row so that the row stays short; every
control starts at the engine's default (``padim_core.config.DEFAULTS``).
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from padim_core.config import DEFAULTS, PRESETS, PadimConfig
from padim_core.embedding import UPSAMPLE_MODES
from padim_core.images import RESIZE_MODES

RESIZE_LABELS = {"stretch": "Square resize (stretch)", "pad": "Keep aspect ratio, black bands",
                 "pad-reflect": "Keep aspect ratio, mirrored bands"}
UPSAMPLE_LABELS = {"nearest": "Nearest (the PaDiM paper)", "bilinear": "Bilinear"}
PRESET_LABELS = {"reference": "Reference (PaDiM paper: fast, small files)",
                 "quality": "Quality (best detection measured)"}


@dataclass(frozen=True)
class FitOptions:
    """Resize mode, map blur, image-score rule and feature upsampling picked by the user."""

    resize: str
    sigma: float
    score_top_percent: float
    upsample: str = DEFAULTS.upsample


def fit_options(prefix: str) -> FitOptions:
    """Draw the options in a collapsed expander and return what is picked."""
    with st.expander("Resize and scoring options"):
        c1, c2, c3 = st.columns(3)
        resize = c1.radio(
            "Resize", list(RESIZE_MODES), index=list(RESIZE_MODES).index(DEFAULTS.resize),
            format_func=RESIZE_LABELS.get, key=f"{prefix}_resize",
            help="Square resize stretches non-square parts; keeping the aspect ratio pads "
                 "them to a square with black or with their own mirror image (then no centre "
                 "crop: the whole part is seen). For parts of varying shape; docs/quality.md "
                 "has the measurements.")
        sigma = c2.number_input(
            "Map blur σ (px)", min_value=0.0, max_value=32.0, value=float(DEFAULTS.sigma),
            step=1.0, key=f"{prefix}_sigma",
            help="Gaussian blur of the anomaly map; more blur means smoother maps and "
                 "fewer single hot pixels. 0 = none.")
        top = c3.number_input(
            "Image score: top % of the map", min_value=0.0, max_value=100.0,
            value=float(DEFAULTS.score_top_percent), step=0.5, key=f"{prefix}_top",
            help="Image score = mean of this share of the map's hottest pixels; 0 = its "
                 "maximum (the PaDiM paper). A small share (0.5 %) ignores single hot pixels.")
        upsample = c1.radio(
            "Coarse features onto the fine grid", list(UPSAMPLE_MODES),
            index=list(UPSAMPLE_MODES).index(DEFAULTS.upsample),
            format_func=UPSAMPLE_LABELS.get, key=f"{prefix}_upsample",
            help="The backbone's deeper feature maps are 2x and 4x coarser than the first. "
                 "Nearest repeats each value over its block (the PaDiM paper); bilinear "
                 "interpolates, so each patch gets features for its own position. Bilinear "
                 "scored better on both data sets measured (docs/quality.md).")
    return FitOptions(str(resize), float(sigma), float(top), str(upsample))


def preset_choice(prefix: str, available: list[str]) -> None:
    """A preset picker above the fit panel: choosing one sets the panel's widgets to it
    (``config.PRESETS``); the widgets stay free to change afterwards."""
    st.radio("Settings", list(PRESETS), format_func=PRESET_LABELS.get, horizontal=True,
             key=f"{prefix}_preset", on_change=_apply_preset, args=(prefix, available),
             help="Quality: EfficientNet-Lite2 with all 192 channels, the whole image at "
                  "224 px, bilinear feature upsampling and a top-0.5 % image score. It found "
                  "defects best on both data sets measured, at about 1.4x the inspection "
                  "time; Accept as normal takes about 1.4 s instead of 0.4 s and model files "
                  "are about 3.3x larger (docs/quality.md).")
    problem = st.session_state.get(f"{prefix}_preset_problem")
    if problem:
        st.warning(problem)


def _apply_preset(prefix: str, available: list[str]) -> None:
    name = st.session_state[f"{prefix}_preset"]
    cfg = PadimConfig(**PRESETS[name])
    if cfg.backbone not in available:
        st.session_state[f"{prefix}_preset_problem"] = (
            f"The {name} settings need {cfg.backbone}, whose weights are not on this "
            "machine; the panel is unchanged.")
        return
    st.session_state[f"{prefix}_preset_problem"] = None
    values = {"backbone": cfg.backbone, f"d_{cfg.backbone}": cfg.d, "size": cfg.image_size,
              f"crop_{cfg.image_size}": cfg.crop, "resize": cfg.resize,
              "upsample": cfg.upsample, "sigma": float(cfg.sigma),
              "top": float(cfg.score_top_percent)}
    for key, value in values.items():
        st.session_state[f"{prefix}_{key}"] = value
