"""Per-browser-session state: model slots, thresholds, inspection results, caches.

Everything a user creates lives in ``st.session_state`` (one per browser tab), so people sharing
one server never see each other's models or images. Only the backbone (read-only weights) is
shared between sessions, through ``st.cache_resource`` in :mod:`inspector_ui.resources`.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import streamlit as st

if TYPE_CHECKING:
    from padim_core import PadimModel, PredictResult
    from padim_core.store import ModelVersion

ImageData = bytes | Path
"""What the engine is given for one image: the uploaded bytes or a file path (demo set)."""

SLOTS_KEY = "model_slots"
THRESHOLDS_KEY = "thresholds"
INSPECTION_KEY = "inspection"
EVALUATION_KEY = "evaluation"
PREDICTION_CACHE_KEY = "prediction_cache"
COMPARE_SOURCES_KEY = "compare_sources"
SETTINGS_KEY = "ui_settings"
MESSAGES_KEY = "flash_messages"

SLOT_NAMES = {"A": "Model A", "B": "Model B"}
PREDICTION_CACHE_SIZE = 64


@dataclass
class ModelSlot:
    """A fitted (or loaded) model held by one session, with where it came from."""

    model: PadimModel
    origin: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: ``(name, version)`` when the model is a version of the workspace library.
    library_ref: tuple[str, int] | None = None
    #: that version's id in the library: it survives a rename by another session (with
    #: its file's sha256: SQLite may give a deleted version's id to a later one).
    version_id: int | None = None
    version_sha: str = ""
    #: the training set's fingerprint when this session fitted the model (library card).
    fingerprint: str = ""

    def link(self, version: ModelVersion) -> None:
        """Mark the slot's model as library ``version`` (a ``store.ModelVersion``)."""
        self.library_ref = (version.name, version.version)
        self.version_id, self.version_sha = version.id, version.sha256

    @property
    def ref(self) -> str | None:
        """``NAME@N`` of the library version in the slot, None for a model outside it."""
        return None if self.library_ref is None else \
            f"{self.library_ref[0]}@{self.library_ref[1]}"


@dataclass
class Thresholds:
    """The thresholds the sliders currently show for one model slot."""

    token: str
    image: float
    pixel: float


@dataclass
class Inspection:
    """A scored batch: everything the Inspect page needs to re-draw without the model."""

    model_token: str
    result: PredictResult
    sources: dict[str, ImageData]
    label: str
    seconds: float
    problems: list[tuple[str, str]] = field(default_factory=list)
    scale: tuple[float, float] = (0.0, 1.0)
    #: image name → its row in the workspace history (scored with a library model).
    history_ids: dict[str, int] = field(default_factory=dict)
    #: the history's batch id of these rows (camera photos join the batch they extend).
    history_batch: str = ""
    #: (name, note) about images scored but hardly comparable (far smaller than the input).
    notes: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Prediction:
    """Score, anomaly map and cropped input of one image under one model."""

    name: str
    score: float
    amap: np.ndarray
    image: np.ndarray


@dataclass
class Evaluation:
    """An evaluation report and the model it belongs to."""

    model_token: str
    report: Any
    label: str
    seconds: float
    n_images: int
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))


def _state() -> Any:
    return st.session_state


def get_slot(key: str = "A") -> ModelSlot | None:
    """The model in slot ``key`` ("A" is the main model, "B" the comparison model)."""
    slots = _state().get(SLOTS_KEY) or {}
    return slots.get(key)


def set_slot(key: str, model: PadimModel, origin: str,
             skipped: list[tuple[str, str]] | None = None) -> ModelSlot:
    """Put a new model into slot ``key``; its thresholds start at the model's calibrated ones."""
    slot = ModelSlot(model=model, origin=origin, skipped=list(skipped or []))
    slots = dict(_state().get(SLOTS_KEY) or {})
    slots[key] = slot
    _state()[SLOTS_KEY] = slots
    return slot


def get_thresholds(key: str = "A") -> Thresholds | None:
    """Current image / pixel thresholds of slot ``key`` (the model's own until changed)."""
    slot = get_slot(key)
    if slot is None:
        return None
    table = _state().setdefault(THRESHOLDS_KEY, {})
    thr = table.get(key)
    if thr is None or thr.token != slot.token:
        thr = Thresholds(slot.token, float(slot.model.image_threshold_),
                         float(slot.model.pixel_threshold_))
        table[key] = thr
    return thr


def set_thresholds(key: str, image: float | None = None, pixel: float | None = None) -> None:
    """Change the thresholds of slot ``key``; the sliders on every page follow."""
    thr = get_thresholds(key)
    if thr is None:
        return
    if image is not None:
        thr.image = float(image)
    if pixel is not None:
        thr.pixel = float(pixel)


def reset_thresholds(key: str = "A") -> None:
    """Back to the thresholds calibrated at fit time."""
    slot = get_slot(key)
    if slot is not None:
        set_thresholds(key, slot.model.image_threshold_, slot.model.pixel_threshold_)


def get_inspection() -> Inspection | None:
    """The last scored batch of this session."""
    return _state().get(INSPECTION_KEY)


def set_inspection(inspection: Inspection) -> None:
    """Store a scored batch (its images are then available to Compare without re-scoring)."""
    _state()[INSPECTION_KEY] = inspection


def get_evaluation() -> Evaluation | None:
    """The last evaluation report of this session."""
    return _state().get(EVALUATION_KEY)


def set_evaluation(evaluation: Evaluation) -> None:
    """Store an evaluation report."""
    _state()[EVALUATION_KEY] = evaluation


def _cache() -> OrderedDict[tuple[str, str], Prediction]:
    cache = _state().get(PREDICTION_CACHE_KEY)
    if cache is None:
        cache = OrderedDict()
        _state()[PREDICTION_CACHE_KEY] = cache
    return cache


def cached_prediction(token: str, name: str) -> Prediction | None:
    """A prediction already made for image ``name`` under the model ``token``: from the
    current inspection batch, else from the small per-session cache."""
    insp = get_inspection()
    if insp is not None and insp.model_token == token:
        res = insp.result
        index = {n: i for i, n in enumerate(res.names)}.get(name)
        if index is not None:
            return Prediction(name, float(res.scores[index]), res.maps[index], res.images[index])
    cache = _cache()
    hit = cache.get((token, name))
    if hit is not None:
        cache.move_to_end((token, name))
    return hit


def predictions_of(token: str) -> list[Prediction]:
    """The single-image predictions kept for the model ``token`` (Compare's)."""
    return [p for (t, _), p in _cache().items() if t == token]


def remember_prediction(token: str, prediction: Prediction) -> None:
    """Keep a prediction (least recently used ones are dropped past a few dozen)."""
    cache = _cache()
    cache[(token, prediction.name)] = prediction
    cache.move_to_end((token, prediction.name))
    while len(cache) > PREDICTION_CACHE_SIZE:
        cache.popitem(last=False)


def compare_sources() -> dict[str, ImageData]:
    """Images uploaded on the Compare page (name -> bytes)."""
    return _state().setdefault(COMPARE_SOURCES_KEY, {})


def setting(name: str, default: Any) -> Any:
    """A display setting shared by all pages (opacity, colour map, ...)."""
    return _state().setdefault(SETTINGS_KEY, {}).get(name, default)


def set_setting(name: str, value: Any) -> None:
    """Store a display setting shared by all pages."""
    _state().setdefault(SETTINGS_KEY, {})[name] = value


def flash(kind: str, text: str) -> None:
    """Queue a message to show on the next run (survives ``st.rerun``). ``text`` is Markdown:
    names and other typed text in it go through :func:`inspector_ui.text.md`."""
    _state().setdefault(MESSAGES_KEY, []).append((kind, text))


def pop_messages() -> list[tuple[str, str]]:
    """Take the queued messages."""
    return _state().pop(MESSAGES_KEY, [])
