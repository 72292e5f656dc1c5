"""The camera on the Inspect page: a photo taken in the browser is scored at once and joins the
session's results (and the history, when the model is a library version).

``st.camera_input`` keeps its photo across reruns, so each photo is scored once, by its
upload id. The camera stays off until the user turns it on: the browser asks for camera
permission the moment the widget is drawn.
"""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from padim_core import PredictResult

from . import actions, state, views
from .text import md
from .uploads import ImageBatch
from .widgets import attempt

SCORED_KEY = "camera_scored_photo"
"""Session key: the upload id of the last photo scored (a rerun must not score it again)."""


def photo_name(taken: datetime, taken_names: list[str]) -> str:
    """``photo_20261202-011502.jpg``, unique among ``taken_names`` (" (2)" added if needed)."""
    batch = ImageBatch(names=list(taken_names), data=[b""] * len(taken_names))
    batch.add(f"photo_{taken:%Y%m%d-%H%M%S}.jpg", b"")
    return batch.names[-1]


def joined(before: state.Inspection | None, photo: state.Inspection) -> state.Inspection:
    """``photo`` (one scored image) appended to ``before`` when both were scored by the same
    model; otherwise the photo alone starts new results."""
    if before is None or before.model_token != photo.model_token:
        return photo
    old, new = before.result, photo.result
    crop = int(new.maps.shape[-1])
    result = PredictResult.concat([old, new], old.image_threshold, old.pixel_threshold, crop)
    result.skipped = list(old.skipped)
    n_photos = sum(1 for n in result.names if str(n).startswith("photo_"))
    base = before.label.split(" + ")[0]
    label = base if base.startswith("camera") else \
        f"{base} + {n_photos} photo{'s' if n_photos > 1 else ''}"
    return state.Inspection(
        model_token=before.model_token, result=result,
        sources={**before.sources, **photo.sources}, label=label,
        seconds=before.seconds + photo.seconds, problems=list(before.problems),
        scale=views.shared_scale(result.maps),
        history_ids={**before.history_ids, **photo.history_ids},
        history_batch=before.history_batch or photo.history_batch,
        notes=[*before.notes, *photo.notes])


def score_photo(slot_key: str, data: bytes, taken: datetime | None = None,
                operator: str = "") -> state.Inspection:
    """Score one photo with slot ``slot_key``, record it in the history (library models) and
    append it to the session's results; returns the joined results. An unreadable photo
    raises :class:`~inspector_ui.actions.ActionError` and the results stay as they were."""
    before = state.get_inspection()
    taken_names = [str(n) for n in before.result.names] if before is not None else []
    name = photo_name(taken or datetime.now(), taken_names)
    batch = ImageBatch(label="camera")
    batch.add(name, data)
    photo = actions.run_inspection(slot_key, batch)     # replaces the results for now…
    slot = state.get_slot(slot_key)
    if before is not None and before.model_token == photo.model_token:
        photo.history_batch = before.history_batch     # one batch in the history, as here
    if slot is not None and slot.library_ref is not None:
        from . import workspace

        workspace.record_inspection(workspace.get_store(), slot, photo, operator=operator)
    result = joined(before, photo)
    state.set_inspection(result)                          # …and the joined ones take over
    return result


def camera_panel(slot_key: str) -> None:
    """A camera switch; when on, "Take a photo", scored with slot ``slot_key`` as it comes."""
    if not st.toggle("Camera", key="inspect_camera_on",
                     help="Take photos with this device's camera; each one is scored at once "
                          "and added to the results below."):
        return
    photo = st.camera_input("Take a photo", key="inspect_camera")
    if photo is None or st.session_state.get(SCORED_KEY) == photo.file_id:
        return
    st.session_state[SCORED_KEY] = photo.file_id
    from .workspace import OPERATOR_KEY

    with st.spinner("Scoring the photo…"):
        scored = attempt(score_photo, slot_key, photo.getvalue(),
                         operator=st.session_state.get(OPERATOR_KEY, ""))
    if scored is not None:
        res = scored.result
        thr = state.get_thresholds(slot_key)
        image_thr = thr.image if thr is not None else res.image_threshold
        pixel_thr = thr.pixel if thr is not None else res.pixel_threshold
        score = float(res.scores[-1])
        # the new photo only, under the model's own rule (not the whole joined batch again)
        ng = views.verdict_ng(score, res.maps[-1], image_thr, pixel_thr, res.region,
                              views.DefectRule(int(res.min_defect_area), res.verdict_rule))
        verdict = "NG" if ng else "OK"
        st.session_state["inspect_selected"] = len(res.names) - 1   # show it below
        say = st.success if verdict == "OK" else st.warning
        say(f"{md(res.names[-1])}: score {score:.3f}, **{verdict}** — added to the results.")
