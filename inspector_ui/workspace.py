"""The app's side of the workspace store: one ``Store`` per server process (shared by every
session, like the backbone), and what the Models and History pages' buttons do.

The data dir and database come from ``PADIM_DATA_DIR`` / ``PADIM_DATABASE_URL`` (see
docs/workspace.md); a store that cannot be opened is one ``st.error`` and the page stops.
"""

from __future__ import annotations

import io
import os
import threading
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from padim_core.config import PadimConfig
from padim_core.errors import PadimError
from padim_core.images import file_sha256
from padim_core.store import (
    DECISIONS,
    Filters,
    Inspection,
    ModelEntry,
    ModelVersion,
    NewInspection,
    Store,
    new_batch,
)
from padim_core.store.store import resolve_data_dir, resolve_url

from . import access, actions, state, views, widgets
from .text import md

ERROR_ICON = ":material/error:"
#: Most history rows one page shows (newest first); the CSV export has them all.
MAX_ROWS = 1000
#: Audit events shown on the Models page (admins); the CSV has all.
AUDIT_ROWS = 200
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
        st.error(f"The workspace cannot be opened: {md(err)}", icon=ERROR_ICON)
        st.stop()
        raise   # st.stop() raises; this line is for type checkers


def report(action: str, err: Exception) -> None:
    """One error box: ``action`` (Markdown: user text in it already passed through
    :func:`~inspector_ui.text.md`) and the error's message, as plain text."""
    st.error(f"{action}: {md(err)}", icon=ERROR_ICON)


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
                "by": v.created_by,
                "MB": round(v.size_bytes / 2**20, 1), "file": v.status, "note": v.note})
    return pd.DataFrame(rows)


def open_version(store: Store, v: ModelVersion, slot_key: str = "A") -> bool:
    """Load a version into a slot (model A by default), with the thresholds saved on it."""
    slot = widgets.attempt(actions.load_library_version, slot_key, store, v)
    if slot is None:
        return False
    slot.link(v)
    if v.operating_image_threshold is not None or v.operating_pixel_threshold is not None:
        state.set_thresholds(slot_key, *v.thresholds)
    return True


def save_slot(store: Store, slot_key: str, name: str, note: str = "") -> ModelVersion | None:
    """Save the model of a slot as a new version of ``name``; the slot then knows its library
    ref (for the URL and the history). On failure one error; the session's model stays."""
    slot = state.get_slot(slot_key)
    if slot is None:
        return None
    try:
        access.require_role("engineer", "Save a model to the library")
        saved = store.library.save(slot.model, name, note=note, created_by=_actor(),
                                   training_fingerprint=slot.fingerprint)
    except PadimError as err:
        report("Not saved to the library (the model stays usable in this session, "
               "until a reload)", err)
        return None
    slot.link(saved)
    origin = slot.origin
    if origin.startswith("library: "):       # the old version's label: the new one replaces it
        origin = origin.partition(" · ")[2]
    slot.origin = " · ".join(filter(None, (origin, f"library: {saved.ref}")))
    return saved


def default_model_name(data_label: str) -> str:
    """The library name for a model trained on ``data_label``: "demo" for the demo set,
    the file's stem for one uploaded file or archive, else "model"."""
    if "demo" in data_label:
        return "demo"
    if data_label and "uploaded files" not in data_label:
        return Path(data_label).stem or "model"
    return "model"


#: Set to 1 (``make run`` does) to train the demo model into an empty library on first visit.
DEMO_MODEL_ENV = "PADIM_DEMO_MODEL"


@st.cache_resource
def _first_start_lock() -> threading.Lock:
    return threading.Lock()


def ensure_demo_model(store: Store) -> None:
    """First start (``PADIM_DEMO_MODEL=1``, empty library, empty session, no model in the
    URL): train the demo set with the default settings and save it as ``demo``, so a
    newcomer lands on a working model. One fit per workspace, behind a spinner; a failure
    is one warning and the page goes on without a model."""
    if (os.environ.get(DEMO_MODEL_ENV) != "1" or state.get_slot("A") is not None
            or st.query_params.get(MODEL_PARAM) or not access.allowed("engineer")):
        return
    with _first_start_lock():
        if store.library.models():
            return
        with st.spinner("First start: training the demo model (once, about 20 s)…"):
            try:
                batch = actions.load_demo("train")
                cfg = PadimConfig()        # the defaults, as the Train page starts with them
                actions.fit_into_slot("A", batch, actions.FitSettings(
                    cfg.backbone, int(cfg.d), cfg.image_size, int(cfg.crop), cfg.resize,
                    cfg.sigma, cfg.score_top_percent, cfg.upsample))
            except PadimError as err:
                st.warning(f"The demo model was not trained: {md(err)}")
                return
            saved = save_slot(store, "A", "demo", note="trained on the demo set at first start")
    if saved is not None:
        state.flash("info", f"First start: the demo model was trained and saved as "
                            f"{md(saved.ref)}. Train your own below, or inspect with it.")
        st.rerun()


# --------------------------------------------------------------------------- the URL

MODEL_PARAM, VERSION_PARAM = "model", "v"
BATCH_PARAM = "batch"          # the tab's recorded batch on Inspect (sync_batch_url)
#: The query parameters that name each slot's library version (model B only on Compare).
URL_PARAMS = {"A": (MODEL_PARAM, VERSION_PARAM), "B": ("b", "bv")}


def sync_url(store: Store, slot_key: str = "A") -> None:
    """Keep a slot's model in the URL (model A: ``?model=NAME&v=N``, B: ``&b=NAME&bv=N``)
    so a reload or a new tab gets it back: a library model in the session is written to the
    URL (any other model clears it); an empty slot with a model in the URL opens that
    version from the library. Every page that shows model A calls this first."""
    keys = URL_PARAMS[slot_key]
    _follow_renames(store, slot_key)
    slot = state.get_slot(slot_key)
    if slot is not None:
        wanted = {} if slot.library_ref is None else \
            dict(zip(keys, (slot.library_ref[0], str(slot.library_ref[1])), strict=True))
        if {k: st.query_params.get(k) for k in keys if k in st.query_params} != wanted:
            # A model that is not in the library (a loaded file, an unsaved fit) must not
            # leave a link to the previous one: a reload would open that instead.
            for k in keys:
                st.query_params.pop(k, None)
            st.query_params.update(wanted)
        return
    name = st.query_params.get(keys[0])
    if not name:
        return
    number = st.query_params.get(keys[1])
    # The link is anybody's text: shown escaped, and a version only of ASCII digits
    # ('²'.isdigit() is true, but int('²') fails; so does int() of 5000 digits).
    if number and not (number.isascii() and number.isdigit() and len(number) <= 9):
        st.error(f"The model in the link ({md(name)}@{md(number)}) cannot be opened: the "
                 "version must be a number (or left out, for the default version).",
                 icon=ERROR_ICON)
        return
    try:
        v = store.library.version(name, int(number) if number else None)
    except PadimError as err:
        report(f"The model in the link ({md(name)}@{md(number or 'default')}) cannot be "
               "opened", err)
        return
    if open_version(store, v, slot_key):
        where = "" if slot_key == "A" else f" as {state.SLOT_NAMES[slot_key]}"
        state.flash("info", f"Reopened {md(v.ref)} from the library{where} (the link names "
                            "it).")
        st.rerun()


def _follow_renames(store: Store, slot_key: str) -> None:
    """When another session renamed the model of a slot, go by the new name (this tab
    recorded history under the old one, and Accept as normal began a second model)."""
    slot = state.get_slot(slot_key)
    if slot is None or slot.version_id is None or slot.library_ref is None:
        return
    try:
        v = store.library.by_id(slot.version_id)
    except PadimError:
        v = None
    if v is None or v.sha256 != slot.version_sha:
        slot.version_id = None  # deleted: the model stays usable in this session
        return
    if v.name != slot.library_ref[0]:
        was = slot.ref
        renamed(slot.library_ref[0], v.name)
        st.info(f"{md(was)} was renamed in the library: it is {md(v.ref)} now.")


def renamed(old: str, new: str) -> None:
    """After a rename: the session's models of ``old`` now go by ``new`` (their link and
    the sidebar), so a reload or a shared link opens them."""
    for key in URL_PARAMS:
        slot = state.get_slot(key)
        if slot is not None and slot.library_ref is not None and slot.library_ref[0] == old:
            slot.library_ref = (new, slot.library_ref[1])
            slot.origin = slot.origin.replace(f"{old}@", f"{new}@")


def version_refs(store: Store) -> dict[str, ModelVersion]:
    """Every openable version, ``name@N`` → version, default versions first per name."""
    refs: dict[str, ModelVersion] = {}
    for entry in store.library.models():
        for v in sorted(entry.versions, key=lambda v: (not v.is_default, -v.version)):
            refs[v.ref] = v
    return refs


def library_picker(store: Store, slot_key: str, prefix: str) -> int:
    """A selectbox of the library's versions and a button that opens one into a slot;
    returns how many versions there are to open."""
    refs = version_refs(store)
    if not refs:
        st.caption("The library is empty: models trained on the Train page are saved there.")
        return 0
    left, right = st.columns([3, 1])
    options = list(refs)
    slot = state.get_slot(slot_key)
    current = slot.ref if slot is not None else None
    widgets.follow_open_model(f"{prefix}_lib_ref", slot_key)
    ref = left.selectbox("Model from the library", options, key=f"{prefix}_lib_ref",
                         index=options.index(current) if current in options else 0)
    right.markdown("&nbsp;")
    if (right.button("Open", key=f"{prefix}_lib_open") and ref is not None
            and open_version(store, refs[ref], slot_key)):
        state.flash("success", f"{state.SLOT_NAMES[slot_key]} is {md(ref)} from the library.")
        st.rerun()
    return len(refs)


# --------------------------------------------------------------------------- inspections


def record_inspection(store: Store, slot: state.ModelSlot, inspection: state.Inspection,
                      operator: str = "", slot_key: str = "A") -> None:
    """Add one history row per scored image (with thumbnails) when the model is a library
    version; the rows' ids go on ``inspection``. A failure is one warning; results stay."""
    res = inspection.result
    display = views.Display(inspection.scale[0], inspection.scale[1], 0.5,
                            views.colormaps()[0])
    inspection.history_batch = inspection.history_batch or new_batch()
    ids = _record(store, slot, slot_key, operator, [
        (str(n), float(res.scores[i]), res.images[i], res.maps[i], inspection.sources.get(n))
        for i, n in enumerate(res.names)], display, inspection.history_batch)
    if ids:
        inspection.history_ids = dict(zip((str(n) for n in res.names), ids, strict=True))


def record_prediction(store: Store, slot_key: str, prediction: state.Prediction,
                      data: state.ImageData | None, operator: str = "") -> int | None:
    """One history row for an image scored singly (Compare, models A and B) when the slot
    holds a library version; its id, or None (not a library model, or the store failed)."""
    slot = state.get_slot(slot_key)
    if slot is None:
        return None
    lo, hi = views.shared_scale([prediction.amap])
    display = views.Display(lo, hi, 0.5, views.colormaps()[0])
    ids = _record(store, slot, slot_key, operator, [
        (prediction.name, prediction.score, prediction.image, prediction.amap, data)], display)
    return ids[0] if ids else None


def _record(store: Store, slot: state.ModelSlot, slot_key: str, operator: str,
            scored: list[tuple[str, float, Any, Any, state.ImageData | None]],
            display: views.Display, batch: str = "") -> list[int]:
    """History rows for ``(name, score, image, map, source)`` under the slot's library
    version and its current thresholds; [] when not a library model or on a store error."""
    if slot.library_ref is None or not access.allowed("operator"):
        return []
    operator = access.actor(operator)
    name, version = slot.library_ref
    thr = state.get_thresholds(slot_key)
    image_thr = thr.image if thr else float(slot.model.image_threshold_)
    pixel_thr = thr.pixel if thr else float(slot.model.pixel_threshold_)
    model = slot.model
    rule = views.DefectRule.of(model)      # as the CLI records: the model's own rule
    entries = [NewInspection(
        file_name, score, name, version, image_thr, pixel_thr,
        image_sha256=file_sha256(source) or "", operator=operator, version_id=slot.version_id,
        verdict="NG" if views.verdict_ng(score, amap, image_thr, pixel_thr, model.region_,
                                         rule) else "OK",
        image=image, overlay=views.overlay_image(image, amap, display), batch=batch)
        for file_name, score, image, amap, source in scored]
    try:
        return store.history.record(entries)
    except PadimError as err:
        st.warning(f"Not recorded in the history: {md(err)}")
        return []


def sync_batch_url(inspection: state.Inspection | None) -> None:
    """Keep this tab's recorded batch in the URL (``&batch=ID``), so that a reload redraws
    *its* batch, not the one another tab recorded last with the same version. Without an
    inspection (a reload) the link is left as it is."""
    if inspection is None:
        return
    if inspection.history_batch:
        if st.query_params.get(BATCH_PARAM) != inspection.history_batch:
            st.query_params[BATCH_PARAM] = inspection.history_batch
    else:
        st.query_params.pop(BATCH_PARAM, None)


def linked_batch() -> str | None:
    """The batch id the URL names (see :func:`sync_batch_url`), if any."""
    return st.query_params.get(BATCH_PARAM) or None


def latest_inspections(store: Store, name: str, version: int,
                       batch: str | None = None) -> list[Inspection]:
    """The last batch recorded with a version, newest first: the rows of the newest row's
    run (one click on Inspect, one camera session, one ``predict --record``), never rows of
    another session recorded in between. ``batch`` (the tab's own, from its link) comes
    first when it holds rows of model ``name`` (any version: after *Accept as normal* the
    link names the next version). Rows from before batch ids (revision 0004): from the
    newest back to the first more than a minute older than its predecessor."""
    if batch:
        rows = store.history.find(Filters(model_name=name, batch=batch), limit=MAX_ROWS)
        if rows:
            return rows
    wanted = Filters(model_name=name, model_version=version)
    newest = store.history.find(wanted, limit=1)
    if newest and newest[0].batch:
        return store.history.find(replace(wanted, batch=newest[0].batch), limit=MAX_ROWS)
    rows = store.history.find(wanted, limit=MAX_ROWS)
    batch: list[Inspection] = []
    for r in rows:
        if batch and (batch[-1].inspected_at - r.inspected_at).total_seconds() > 60:
            break
        batch.append(r)
    return batch


def upload_model(store: Store, data: bytes, file_name: str, name: str) -> ModelVersion | None:
    try:
        access.require_role("engineer", "Add a model file to the library")
        return store.library.import_bytes(data, name, file_name=file_name,
                                          created_by=_actor())
    except PadimError as err:
        report("Not added", err)
        return None


def _actor() -> str:
    return access.actor(st.session_state.get(OPERATOR_KEY, ""))


def run_action(action: str, fn, *args, role: str) -> bool:  # type: ignore[no-untyped-def]
    """Call a library change the session's user needs ``role`` for, as that user (``by=``,
    for the audit trail); an error (or a role too low) becomes one message, the page goes
    on."""
    try:
        access.require_role(role)
        fn(*args, by=_actor())
    except PadimError as err:
        report(action, err)
        return False
    return True


# --------------------------------------------------------------------------- history


def filters(since: date | None, until: date | None, model: str | None, verdict: str | None,
            decision: str | None, version: int | None = None) -> Filters:
    """History filters from the page's widgets (dates in local time, ``until`` inclusive)."""
    return Filters(
        since=datetime.combine(since, time()) if since else None,
        until=datetime.combine(until + timedelta(days=1), time()) if until else None,
        model_name=model, model_version=None if model is None else version,
        verdict=verdict, decision=decision)


def history_table(rows: list[Inspection]) -> pd.DataFrame:
    return pd.DataFrame([{
        "id": r.id, "time": r.inspected_at.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
        "file": r.file_name, "model": r.model_ref, "score": r.score,
        "score / threshold": r.normalized_score, "verdict": r.verdict,
        "decision": r.decision_label,
        "decided by": r.decided_by or ("unknown" if r.decision else ""), "comment": r.comment,
        "operator": r.operator,
    } for r in rows])


def history_csv(store: Store, chosen: Filters) -> bytes:
    buf = io.StringIO()
    store.history.export_csv(buf, chosen)
    return buf.getvalue().encode("utf-8")


def audit_panel(store: Store) -> None:
    """Admins: the newest changes to shared state (who, what, on what, when) and the whole
    audit trail as CSV (``padim audit`` on the command line)."""
    if not access.allowed("admin"):
        return
    with st.expander("Audit trail: who changed models, thresholds, accounts and decisions"):
        events = store.audit.find(limit=AUDIT_ROWS)
        if not events:
            st.caption("Nothing has been changed yet.")
            return
        st.dataframe(pd.DataFrame([{
            "time": f"{e.at.astimezone():%Y-%m-%d %H:%M:%S}", "who": e.actor,
            "action": e.action, "on": e.target, "details": e.details} for e in events]),
            hide_index=True, width="stretch", key="audit_table")
        st.caption(f"The newest {len(events)} event(s); the file has them all.")
        st.download_button("Download the audit trail (.csv)", data=lambda: _audit_csv(store),
                           file_name="padim-audit.csv", mime="text/csv", on_click="ignore",
                           key="audit_csv")


def _audit_csv(store: Store) -> bytes:
    buf = io.StringIO()
    store.audit.export_csv(buf)
    return buf.getvalue().encode("utf-8")


def model_names(store: Store) -> list[str]:
    """Names found in the library and in the history (deleted models stay filterable)."""
    return sorted({e.name for e in store.library.models()} | set(store.history.model_names()))


def operator_input(where: Any, key: str) -> str:
    """"Your name" for decisions: one value for the whole session, on every page (a plain
    widget key would be dropped by Streamlit on pages that do not draw it)."""
    who = access.viewer()
    if who is not None and who.signed_in:
        where.caption(f"Decided by **{md(who.name)}** (signed in)")
        return who.name

    def keep(value: str) -> None:
        st.session_state[OPERATOR_KEY] = value

    # Copied in only when it differs: every copy is sent to the browser and would wipe a name
    # being typed while the page reruns (e.g. after a click on the decision).
    return str(widgets.bound(where.text_input, "Your name", key=key,
                             value=st.session_state.get(OPERATOR_KEY, ""), store=keep,
                             only_if_changed=True))


def decision_panel(store: Store, inspection_id: int, prefix: str) -> None:
    """The operator's decision on one history row: confirmed defect / false alarm / missed
    defect, an optional comment and the operator's name (kept for the session)."""
    try:
        row = store.history.get(inspection_id)
    except PadimError as err:
        report("The history row cannot be read", err)
        return
    st.markdown("**Operator decision**"          # who and the comment are typed text
                + (f": {row.decision_label} ({md(row.decided_by or 'unknown')}"
                   f"{', ' + md(row.comment) if row.comment else ''})" if row.decision
                   else ": none yet"))
    d1, d2, d3 = st.columns([2, 3, 2])
    # Nothing is picked for a row without a decision: a click on Save alone must not record
    # the first choice (a confirmed defect) for a part nobody judged.
    choice = d1.radio("Decision", list(DECISIONS), format_func=DECISIONS.get,
                      key=f"{prefix}_choice_{row.id}",
                      index=list(DECISIONS).index(row.decision) if row.decision else None)
    comment = d2.text_input("Comment (optional)", value=row.comment,
                            key=f"{prefix}_comment_{row.id}")
    operator = operator_input(d3, f"{prefix}_operator")
    if (st.button("Save decision", key=f"{prefix}_decide", type="primary",
                  disabled=choice is None, help="Pick a decision first" if choice is None
                  else None)
            and choice is not None and decide(store, row.id, choice, comment, operator)):
        state.flash("success", f"Decision on {md(row.file_name)} saved: {DECISIONS[choice]}.")
        st.rerun()


def decide(store: Store, inspection_id: int, decision: str | None, comment: str,
           operator: str) -> bool:
    try:
        access.require_role("operator", "Record a decision")
        store.history.decide(inspection_id, decision, comment, access.actor(operator))
    except PadimError as err:
        report("Decision not saved", err)
        return False
    return True


__all__ = ["AUDIT_ROWS", "DECISIONS", "DEMO_MODEL_ENV", "MAX_ROWS", "OPERATOR_KEY", "audit_panel",
           "decide", "decision_panel", "default_model_name", "ensure_demo_model", "filters",
           "get_store", "history_csv", "history_table", "latest_inspections", "library_picker",
           "linked_batch", "model_names", "open_version", "operator_input", "record_inspection",
           "record_prediction", "renamed", "report", "run_action", "save_slot", "sync_batch_url",
           "sync_url", "URL_PARAMS", "upload_model", "version_refs", "versions_table"]
