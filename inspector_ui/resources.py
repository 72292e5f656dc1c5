"""Heavy, read-only objects shared by every session of this server process.

The backbone weights are loaded once per (backbone, weights, device) and shared: a feature
extractor is an eval-mode network without per-user state. Models, images and results are
never put here (they live in ``st.session_state``, see :mod:`inspector_ui.state`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

from padim_core.backbones import SPECS, BackboneStatus, backbone_status, load_feature_extractor
from padim_core.devices import device_label, resolve_device

if TYPE_CHECKING:
    from padim_core.backbones import FeatureExtractor


@st.cache_resource(show_spinner="Loading the backbone (once per server)…", max_entries=4)
def _cached_extractor(name: str, weights: str | None, device: str) -> FeatureExtractor:
    return load_feature_extractor(name, weights=weights, device=device)


def get_extractor(name: str, weights: str | None = None, device: str = "auto") -> FeatureExtractor:
    """The feature extractor for ``name``, loaded once per process and shared by sessions."""
    # Always pass every argument: the cache key is built from the arguments as given.
    return _cached_extractor(name, weights, device)



@st.cache_resource(ttl=300)
def backbones() -> list[BackboneStatus]:
    """Which backbones can be used on this machine, and why not (re-checked every 5 min)."""
    return backbone_status()


@st.cache_resource
def device_text() -> str:
    """The device PaDiM runs on, in words ("CPU (2 threads)", "CUDA: NVIDIA H100 ...")."""
    return device_label(resolve_device("auto"))


def backbone_channels(name: str) -> int:
    """Total feature channels of a backbone: the largest d it supports."""
    spec = SPECS.get(name)
    return sum(spec.channels) if spec is not None else 0
