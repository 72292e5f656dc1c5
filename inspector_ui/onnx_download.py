"""The model card's ONNX download: export on request, with the parity self-test's figures.

An export takes tens of seconds and is ~125 MB at d = 100, so it runs only when asked and is
kept per model (its card id: one per library version, the same id ``padim serve`` and the
ONNX metadata report), for every session of this server, a few models at most.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import streamlit as st

from padim_core import PadimModel
from padim_core.errors import InvalidInputError, PadimError
from padim_core.export import ParityReport, export_onnx_bytes, model_id

from . import resources, state
from .widgets import attempt

KEEP_EXPORTS = 2
"""Exports kept in memory per server (each about as large as the model file)."""


@dataclass(frozen=True)
class OnnxExport:
    """A checked ONNX file and how close onnxruntime came to padim_core on it."""

    model_id: str
    data: bytes
    parity: ParityReport


class ExportCache:
    """The last few exports by model id; one export at a time (each takes most of the CPU)."""

    def __init__(self, size: int = KEEP_EXPORTS) -> None:
        self.size = size
        self._items: OrderedDict[str, OnnxExport] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> OnnxExport | None:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def export(self, model: PadimModel) -> OnnxExport:
        """The model's checked export, made now unless another session already made it."""
        key = model_id(model.card())
        with self._lock:
            found = self.get(key)
            if found is not None:
                return found
            data, parity = export_onnx_bytes(_on_cpu(model))
            made = OnnxExport(key, data, parity)
            self._items[key] = made
            while len(self._items) > self.size:
                self._items.popitem(last=False)
            return made


@st.cache_resource
def export_cache() -> ExportCache:
    """The server's export cache (shared by sessions, like the backbone)."""
    return ExportCache()


def _on_cpu(model: PadimModel) -> PadimModel:
    """The model itself when it scores on the CPU; else a CPU copy. The parity check compares
    with padim_core's own scores, and a GPU may run the convolutions in TF32."""
    if model.device.type == "cpu":
        return model
    copy = PadimModel.from_bytes(model.to_bytes(updatable=False), device="cpu")
    cfg = copy.config
    if cfg.weights != "random":
        copy.use_extractor(resources.get_extractor(cfg.backbone, cfg.weights, "cpu"))
    return copy


def export_slot(slot_key: str) -> OnnxExport:
    """Export the model of slot ``slot_key`` (or take the export already made); an export
    that does not score like padim_core raises and nothing is offered."""
    slot = state.get_slot(slot_key)
    if slot is None:
        raise InvalidInputError(state.SLOT_NAMES[slot_key], "is empty: train or load a model")
    try:
        return export_cache().export(slot.model)
    except PadimError as err:     # the problem without the temporary file's path
        problem = err.problem if isinstance(err, InvalidInputError) else str(err)
        raise InvalidInputError("ONNX export", problem) from err


def parity_text(parity: ParityReport) -> str:
    """The parity figures in one line."""
    return (f"Checked with onnxruntime on {parity.n_images} {parity.source}: scores within "
            f"{parity.score_rel:.1e} (limit {parity.score_tolerance:g}), maps within "
            f"{parity.map_rel:.1e} (limit {parity.map_tolerance:g}) of this app's.")


def onnx_panel(slot_key: str, file_stem: str) -> None:
    """"Export ONNX" and, once exported, the download and the parity figures."""
    slot = state.get_slot(slot_key)
    if slot is None:
        return
    made = export_cache().get(model_id(slot.model.card()))
    if made is None:
        if not st.button("Export as ONNX", key=f"card{slot_key}_onnx_export",
                         help="One ONNX graph (uint8 crops in, scores and maps out) for "
                              "onnxruntime or OpenVINO; checked against this app's scores "
                              "before it is offered. Takes a while (see docs/export.md)."):
            return
        with st.spinner("Exporting and checking the ONNX file with onnxruntime…"):
            made = attempt(export_slot, slot_key)
        if made is None:
            return
    st.download_button(f"Download ONNX ({len(made.data) / 2**20:.1f} MB)", data=made.data,
                       file_name=f"{file_stem}.onnx", mime="application/octet-stream",
                       on_click="ignore", key=f"card{slot_key}_onnx_download")
    st.caption(parity_text(made.parity))
