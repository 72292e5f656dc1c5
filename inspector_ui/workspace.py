"""The app's side of the workspace store: one ``Store`` per server process (shared by every
session, like the backbone), and what the Models and History pages' buttons do.

The data dir and database come from ``PADIM_DATA_DIR`` / ``PADIM_DATABASE_URL`` (see
docs/workspace.md); a store that cannot be opened is one ``st.error`` and the page stops.
"""

from __future__ import annotations

import io
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from padim_core.errors import PadimError
from padim_core.store import (
    DECISIONS,
    Filters,
    Inspection,
    ModelEntry,
    ModelVersion,
    Store,
)
from padim_core.store.store import resolve_data_dir, resolve_url

from . import state, widgets

if TYPE_CHECKING:
    from padim_core import PadimModel

ERROR_ICON = ":material/error:"
#: Most history rows one page shows (newest first); the CSV export has them all.
MAX_ROWS = 1000
OPERATOR_KEY = "operator_name"


@st.cache_resource(show_spinner="Opening the workspace…")
def _open(data_dir: str, url: str) -> Store:
    return Store.open(data_dir, url)


def get_store() -> Store:
    """The process-wide store for the configured data dir / URL; on failure an error and the
    page stops (the session's model and results are untouched)."""
    data_dir = resolve_data_dir()
    try:
        return _open(str(data_dir), resolve_url(data_dir))
    except PadimError as err:
        st.error(f"The workspace cannot be opened: {err}", icon=ERROR_ICON)
        st.stop()
        raise   # st.stop() raises; this line is for type checkers


def report(action: str, err: Exception) -> None:
    st.error(f"{action}: {err}", icon=ERROR_ICON)


# --------------------------------------------------------------------------- models


def versions_table(entries: list[ModelEntry]) -> pd.DataFrame:
    """One row per version: its card, whether it is the default, and its file status."""
    rows = []
    for entry in entries:
        for v in entry.versions:
            image, pixel = v.thresholds
            rows.append({
                "model": v.name, "version": v.version,
                "default": "yes" if v.is_default else "",
                "backbone": v.backbone, "d": v.d, "size": f"{v.image_size}→{v.crop}",
                "training images": v.n_train_images, "image threshold": image,
                "pixel threshold": pixel,
                "thresholds": "saved" if v.operating_image_threshold is not None
                else "calibrated",
                "fit (s)": round(v.fit_seconds, 1), "device": v.device,
                "created (UTC)": v.created_at.strftime("%Y-%m-%d %H:%M"),
                "MB": round(v.size_bytes / 2**20, 1), "file": v.status, "note": v.note})
    return pd.DataFrame(rows)


def open_version(store: Store, v: ModelVersion) -> bool:
    """Load a version as model A, with the thresholds saved on it."""
    try:
        data = store.library.read_bytes(v)
    except PadimError as err:
        report(f"Cannot open {v.ref}", err)
        return False
    if not widgets.load_model_bytes("A", v.ref, data):
        return False
    slot = state.get_slot("A")
    if slot is not None:
        slot.origin = f"library: {v.ref}"
    if v.operating_image_threshold is not None or v.operating_pixel_threshold is not None:
        state.set_thresholds("A", *v.thresholds)
    return True


def save_model(store: Store, model: PadimModel, name: str, note: str = "") -> ModelVersion | None:
    try:
        return store.library.save(model, name, note=note)
    except PadimError as err:
        report("Not saved", err)
        return None


def upload_model(store: Store, data: bytes, file_name: str, name: str) -> ModelVersion | None:
    try:
        return store.library.import_bytes(data, name, file_name=file_name)
    except PadimError as err:
        report("Not added", err)
        return None


def run_action(action: str, fn, *args) -> bool:  # type: ignore[no-untyped-def]
    """Call a library change; an error becomes one message, the page goes on."""
    try:
        fn(*args)
    except PadimError as err:
        report(action, err)
        return False
    return True


# --------------------------------------------------------------------------- history


def filters(since: date | None, until: date | None, model: str | None, verdict: str | None,
            decision: str | None) -> Filters:
    """History filters from the page's widgets (dates in local time, ``until`` inclusive)."""
    return Filters(
        since=datetime.combine(since, time()) if since else None,
        until=datetime.combine(until + timedelta(days=1), time()) if until else None,
        model_name=model, verdict=verdict, decision=decision)


def history_table(rows: list[Inspection]) -> pd.DataFrame:
    return pd.DataFrame([{
        "id": r.id, "time": r.inspected_at.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
        "file": r.file_name, "model": r.model_ref, "score": r.score,
        "score / threshold": r.normalized_score, "verdict": r.verdict,
        "decision": r.decision_label, "comment": r.comment, "operator": r.operator,
    } for r in rows])


def history_csv(store: Store, chosen: Filters) -> bytes:
    buf = io.StringIO()
    store.history.export_csv(buf, chosen)
    return buf.getvalue().encode("utf-8")


def model_names(store: Store) -> list[str]:
    """Names found in the library and in the history (deleted models stay filterable)."""
    names = {e.name for e in store.library.models()}
    names |= {r.model_name for r in store.history.find(limit=MAX_ROWS)}
    return sorted(names)


def decide(store: Store, inspection_id: int, decision: str | None, comment: str,
           operator: str) -> bool:
    try:
        store.history.decide(inspection_id, decision, comment, operator)
    except PadimError as err:
        report("Decision not saved", err)
        return False
    return True


__all__ = ["DECISIONS", "MAX_ROWS", "OPERATOR_KEY", "decide", "filters", "get_store",
           "history_csv", "history_table", "model_names", "open_version", "report",
           "run_action", "save_model", "upload_model", "versions_table"]
