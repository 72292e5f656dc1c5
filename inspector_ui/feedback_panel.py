"""Learning from the operator, drawn: "Accept as normal" / "Confirm defect" / "Missed defect"
for one inspected image (Inspect and History), accepting several images at once (Inspect),
and the Evaluate page's "evaluate on labelled history".

What the buttons do is in :mod:`inspector_ui.actions` (``accept_as_normal``,
``record_decision``, ``evaluate_on_history``); this module only draws and reports.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from padim_core.errors import PadimError
from padim_core.feedback import learned_sha256
from padim_core.images import file_sha256
from padim_core.store import DECISIONS, Store

from . import access, actions, state, uploads, views, widgets
from .text import md
from .workspace import OPERATOR_KEY

#: Decisions that say a part is bad: accepting such a part as normal asks to be sure.
DEFECT_DECISIONS = ("confirmed_defect", "missed_defect")
#: The Evaluate page's last "evaluate on history" result (kept across reruns).
HISTORY_RESULT_KEY = "feedback_history_evaluation"


def _operator() -> str:
    return str(st.session_state.get(OPERATOR_KEY, ""))


def _learned_text(learned: actions.Learned) -> str:
    """What changed, in one message (Markdown, names escaped): each image's score before →
    after, the thresholds, and the new version."""
    a = learned.accepted
    scores = "; ".join(f"{md(n)}: score {b:.3f} → {s:.3f}"
                       for n, b, s in zip(a.names, a.before_scores, a.after_scores, strict=True))
    return (f"Learned {len(a.names)} image(s) as normal and saved **{md(learned.version.ref)}** "
            f"({md(learned.previous_ref)} is kept). {scores}. Image threshold "
            f"{a.image_threshold_before:.3f} → {a.image_threshold:.3f}, pixel threshold "
            f"{a.pixel_threshold_before:.3f} → {a.pixel_threshold:.3f}.")


def _accept(store: Store, names: list[str], data: list[state.ImageData],
            history_ids: list[int | None], before: list[float] | None) -> bool:
    """Run the accept action with a progress bar, re-score the session's batch under the
    new model, and queue the "what changed" message for the next run."""
    progress = widgets.Progress(f"Learning {len(names)} image(s)")
    learned = widgets.attempt(actions.accept_as_normal, store, "A", names, data, history_ids,
                              _operator(), before, progress=progress)
    if learned is None:
        progress.fail()
        return False
    progress.finish(f"Saved {md(learned.version.ref)}")
    widgets.attempt(actions.rescore_inspection, "A")
    state.flash("success", _learned_text(learned))
    for name, problem in learned.undecided:
        state.flash("warning", f"{md(name)}: the decision was not recorded — {md(problem)}")
    for name, problem in learned.accepted.skipped:
        state.flash("error", f"{md(name)}: not learned — {md(problem)}")
    return True


def _model_a_caption() -> str | None:
    """Why accepting is not possible now (None when it is)."""
    if not access.allowed("engineer"):
        return "Accept as normal changes the model: engineers and admins only."
    slot = state.get_slot("A")
    if slot is None or slot.library_ref is None:
        return ("Accept as normal adds the image to model A and saves a new library version: "
                "open a library model first.")
    if not slot.model.card().get("updatable"):
        return (f"Model A ({md(slot.origin)}) has no update data (a compact file): refit it to "
                "accept images as normal.")
    return None


def session_image(row_id: int) -> tuple[str, state.ImageData, float | None] | None:
    """The original image of history row ``row_id`` when this session inspected it (name,
    data, and its score under model A when the batch was scored by it), else None."""
    insp = state.get_inspection()
    if insp is None:
        return None
    name = next((n for n, i in insp.history_ids.items() if i == row_id), None)
    if name is None or name not in insp.sources:
        return None
    slot = state.get_slot("A")
    res = insp.result
    current = slot is not None and insp.model_token == slot.token
    score = float(res.scores[[str(n) for n in res.names].index(name)]) if current else None
    return name, insp.sources[name], score


def show(store: Store, row_id: int, prefix: str,
         image: tuple[str, state.ImageData, float | None] | None = None) -> None:
    """The three feedback buttons for history row ``row_id``.

    ``image``: (name, data, score under model A) when the page has the original image; else
    the History page asks for the original file (a thumbnail is not the image the model
    scored) and checks it against the recorded SHA-256.
    """
    try:
        row = store.history.get(row_id)
    except PadimError as err:
        st.error(f"The history row cannot be read: {md(err)}", icon=widgets.ERROR_ICON)
        return
    slot = state.get_slot("A")
    target = (slot.ref if slot is not None else None) or "model A"
    st.markdown("**Learn from this image**")
    if image is None and access.allowed("engineer"):   # only they may accept: no upload else
        upload = st.file_uploader(f"The original {md(row.file_name)} (needed to learn it)",
                                  key=f"{prefix}_fb_original_{row_id}",
                                  max_upload_size=uploads.IMAGE_UPLOADER_MB)
        if upload is not None:
            raw = upload.getvalue()
            if row.image_sha256 and file_sha256(raw) != row.image_sha256:
                st.error(f"{md(upload.name)}: not the image recorded in this row (its SHA-256 "
                         "differs)", icon=widgets.ERROR_ICON)
            else:
                image = (row.file_name, raw, None)
    why_not = _model_a_caption() or (None if image is not None else
                                     "Upload the original image to accept it as normal.")
    if why_not is None and slot is not None and row.image_sha256 \
            and row.image_sha256 in learned_sha256(slot.model):
        why_not = (f"{md(row.file_name)} is already learned by {md(target)} (one of its training "
                   "images, or accepted as normal before): accepting it again would count "
                   "it twice.")
    if why_not is None and row.decision in DEFECT_DECISIONS and not st.checkbox(
            f"This part was marked **{DECISIONS[row.decision]}**: accept it as a good part "
            "all the same", key=f"{prefix}_fb_override_{row_id}"):
        why_not = "Marked as a defect: tick the box above to accept it as normal anyway."
    b1, b2, b3 = st.columns(3)
    accept = b1.button(f"Accept as normal → {md(target)}", key=f"{prefix}_fb_accept",
                       type="primary", disabled=why_not is not None,
                       help="A false alarm: add this good part to the model exactly and save "
                            "the result as a new library version")
    confirm = b2.button("Confirm defect", key=f"{prefix}_fb_confirm")
    missed = b3.button("Missed defect", key=f"{prefix}_fb_missed",
                       help="Judged OK, but it is really a defective part")
    if why_not is not None:
        st.caption(why_not)
    decided = False
    if accept and image is not None:
        name, data, score = image
        decided = _accept(store, [name], [data], [row_id], None if score is None else [score])
    for pressed, decision in ((confirm, "confirmed_defect"), (missed, "missed_defect")):
        if pressed and widgets.attempt(actions.record_decision, store, row_id, decision,
                                       _operator()) is not None:
            state.flash("success", f"{md(row.file_name)}: {DECISIONS[decision]} recorded.")
            decided = True
    if decided:
        # The decision panel's radio (workspace.decision_panel) keeps its widget value
        # over the new decision unless it is drawn afresh.
        st.session_state.pop(f"{prefix}_choice_{row_id}", None)
        st.rerun()


def accept_several(store: Store, insp: state.Inspection, ng: np.ndarray) -> None:
    """Accept several images of the inspected batch at once (NG ones offered first)."""
    res = insp.result
    names = [str(n) for n in res.names]
    with st.expander("Accept several images as normal"):
        verdict = {n: "NG" if ng[i] else "OK" for i, n in enumerate(names)}
        order = [names[i] for i in views.ranked(res.scores)]
        picked = st.multiselect("Good parts to learn", order, key="fb_many",
                                format_func=lambda n: f"{n} ({verdict[n]})")
        why_not = _model_a_caption()
        if why_not is not None:
            st.caption(why_not)
        if st.button(f"Accept {len(picked)} image(s) as normal", key="fb_many_go",
                     disabled=not picked or why_not is not None) and picked:
            index = {n: i for i, n in enumerate(names)}
            chosen = [n for n in picked if n in insp.sources]
            if _accept(store, chosen, [insp.sources[n] for n in chosen],
                       [insp.history_ids.get(n) for n in chosen],
                       [float(res.scores[index[n]]) for n in chosen]):
                st.rerun()


def history_evaluation(store: Store) -> None:
    """"Evaluate on labelled history": a library version on the operator's decisions."""
    from .workspace import version_refs

    st.subheader("Evaluate on the labelled history")
    st.caption("The operator's decisions as labels: confirmed and missed defects against "
               "false alarms (accepted normal parts), with the scores recorded when the "
               "images were inspected by that version.")
    refs = version_refs(store)
    if not refs:
        st.caption("The library is empty.")
        return
    slot = state.get_slot("A")
    current = slot.ref if slot is not None else None
    options = list(refs)
    left, right = st.columns([3, 1])
    ref = left.selectbox("Model version", options, key="fb_hist_ref",
                         index=options.index(current) if current in options else 0)
    right.markdown("&nbsp;")
    if right.button("Evaluate on history", key="fb_hist_go") and ref is not None:
        v = refs[ref]
        found = widgets.attempt(actions.evaluate_on_history, store, v.name, v.version)
        # A failed evaluation must not leave the previous version's figures under its error.
        st.session_state[HISTORY_RESULT_KEY] = found
    found = st.session_state.get(HISTORY_RESULT_KEY)
    if found is None or found.ref != ref:
        return
    f = found.figures
    st.markdown(f"**{md(found.ref)}** on {f['n_defects']} defect(s) and {f['n_normals']} "
                "accepted normal(s)")
    m = st.columns(4)
    m[0].metric("Image AUROC", views.metric_text(f["image_auroc"]))
    m[1].metric("F1 (best)", views.metric_text(f["f1"]),
                help=f"At image threshold {f['f1_threshold']:.3f}")
    m[2].metric("Catch-every-defect threshold", f"{f['catch_all_threshold']:.3f}",
                help="The highest threshold that flags every labelled defect")
    m[3].metric("False alarms at it", f"{f['catch_all_false_alarms']}")
    if current == found.ref and st.button("Use the catch-every-defect threshold on Inspect",
                                          key="fb_hist_apply"):
        state.set_thresholds("A", image=f["catch_all_threshold"])
        st.success(f"Inspect now uses image threshold {f['catch_all_threshold']:.3f}.")
