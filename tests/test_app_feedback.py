"""AppTest: learning from the operator (issue 13, app).

Why: "Accept as normal" on a false alarm must add that image to the model (its score drops),
save the result as a new library version while the old one stays, record the decision, and
show what changed; "Confirm defect" / "Missed defect" are labels, and the Evaluate page must
turn those labels into figures. Failures leave the model and library as they were.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from inspector_ui import testing as t
from inspector_ui.text import md
from padim_core.store import DATA_DIR_ENV, Store

pytestmark = pytest.mark.usefixtures("demo_env")


def workspace() -> Store:
    return Store.open(os.environ[DATA_DIR_ENV])


def inspected() -> AppTest:
    at = t.open_page(t.train_demo(t.open_page(t.new_app(), "train")), "inspect")
    return at.button(key="inspect_demo").click().run()


def select_image(at: AppTest, name: str) -> AppTest:
    names = [str(n) for n in at.session_state["inspection"].result.names]
    return at.selectbox(key="inspect_selected").set_value(names.index(name)).run()


def good_with_highest_score(at: AppTest) -> tuple[str, float]:
    res = at.session_state["inspection"].result
    good = [(float(s), str(n)) for n, s in zip(res.names, res.scores, strict=True)
            if str(n).startswith("good/")]
    score, name = max(good)
    return name, score


def test_accept_as_normal_learns_the_image_and_saves_a_new_version() -> None:
    at = inspected()
    name, before = good_with_highest_score(at)
    row_id = at.session_state["inspection"].history_ids[name]
    at = select_image(at, name)
    at.button(key="inspect_fb_accept").click().run()
    assert not t.exceptions(at) and not t.errors(at)

    assert t.slot(at).library_ref == ("demo", 2)
    message = next(s.value for s in at.success if "Learned 1 image" in s.value)
    assert "demo@2" in message and "demo@1 is kept" in message
    insp = at.session_state["inspection"]
    assert insp.model_token == t.slot(at).token           # the batch was scored again
    after = float(insp.result.scores[[str(n) for n in insp.result.names].index(name)])
    assert after < before
    assert f"{before:.3f} → {after:.3f}" in message
    assert insp.history_ids[name] == row_id               # rows stay attached
    with workspace() as store:
        assert [v.version for v in store.library.get("demo").versions] == [1, 2]
        assert store.library.version("demo", 2).n_train_images == \
            store.library.version("demo", 1).n_train_images + 1
        assert store.history.get(row_id).decision == "false_alarm"
    link = {k: v[0] if isinstance(v, list) else v for k, v in at.query_params.items()}
    assert (link["model"], link["v"]) == ("demo", "2")
    # Learned now: a second click would count the image twice (it did: 215 → 216 images).
    assert at.button(key="inspect_fb_accept").disabled
    assert any(f"{md(name)} is already learned by demo@2" in c.value for c in at.caption)


def test_several_images_at_once() -> None:
    at = inspected()
    res = at.session_state["inspection"].result
    good = [str(n) for n in res.names if str(n).startswith("good/")][:2]
    at.multiselect(key="fb_many").set_value(good).run()
    at.button(key="fb_many_go").click().run()
    assert not t.exceptions(at) and not t.errors(at)
    assert any("Learned 2 image(s)" in s.value for s in at.success)
    with workspace() as store:
        assert store.library.version("demo", 2).n_train_images == \
            store.library.version("demo", 1).n_train_images + 2


def test_defect_labels_feed_the_history_evaluation() -> None:
    at = inspected()
    res = at.session_state["inspection"].result
    ids = at.session_state["inspection"].history_ids
    names = [str(n) for n in res.names]
    defects = [n for n in names if not n.startswith("good/")]
    goods = [n for n in names if n.startswith("good/")]
    for n, button in ((defects[0], "inspect_fb_confirm"), (defects[1], "inspect_fb_missed")):
        at = select_image(at, n)
        at.button(key=button).click().run()
        assert not t.exceptions(at) and not t.errors(at)
    assert at.radio(key=f"inspect_choice_{ids[defects[1]]}").value == "missed_defect"
    # A part marked as a defect is accepted as normal only once the operator ticks the box.
    assert at.button(key="inspect_fb_accept").disabled
    at.checkbox(key=f"inspect_fb_override_{ids[defects[1]]}").check().run()
    assert not at.button(key="inspect_fb_accept").disabled
    with workspace() as store:
        assert store.history.get(ids[defects[0]]).decision == "confirmed_defect"
        assert store.history.get(ids[defects[1]]).decision == "missed_defect"
        store.history.decide(ids[goods[0]], "false_alarm")

    ev = t.open_page(at, "evaluate")
    assert ev.selectbox(key="fb_hist_ref").value == "demo@1"
    ev.button(key="fb_hist_go").click().run()
    assert not t.exceptions(ev) and not t.errors(ev)
    scores = {n: float(s) for n, s in zip(names, res.scores, strict=True)}
    catch_all = min(scores[defects[0]], scores[defects[1]])
    assert t.metric(ev, "Catch-every-defect threshold") == f"{catch_all:.3f}"
    expected_auroc = float(np.mean([scores[d] > scores[goods[0]] for d in defects[:2]]))
    assert float(t.metric(ev, "Image AUROC")) == pytest.approx(expected_auroc, abs=1e-3)

    with workspace() as store:        # a version without decisions: its error, no figures
        store.library.save(store.library.load(store.library.version("demo", 1),
                                              device="cpu"), "demo")
    ev = t.open_page(ev, "evaluate")
    ev.selectbox(key="fb_hist_ref").set_value("demo@2").run()
    ev.button(key="fb_hist_go").click().run()
    assert any("demo@2" in e for e in t.errors(ev))
    assert not any(m.label == "Image AUROC" for m in ev.metric), "demo@1's figures stayed"


def test_history_without_labels_or_without_the_image_says_why() -> None:
    at = inspected()
    ev = t.open_page(at, "evaluate")
    ev.button(key="fb_hist_go").click().run()
    assert not t.exceptions(ev)
    assert any("demo@1" in e and "decision" in e for e in t.errors(ev))
    assert not any("— history:" in e for e in t.errors(ev))     # read as garbled

    fresh = AppTest.from_file(str(t.APP), default_timeout=t.TIMEOUT).run()
    hist = fresh.switch_page("pages/history.py").run()
    assert not t.exceptions(hist)
    button = hist.button(key="hist_fb_accept")
    assert button.disabled                       # no model A, no original image
    with workspace() as store:
        assert [v.version for v in store.library.get("demo").versions] == [1]


def test_accept_from_history_uses_the_image_this_session_inspected() -> None:
    at = inspected()
    name, _ = good_with_highest_score(at)
    row_id = at.session_state["inspection"].history_ids[name]
    hist = t.open_page(at, "history")
    hist.selectbox(key="hist_row").set_value(row_id).run()
    assert not hist.button(key="hist_fb_accept").disabled
    hist.button(key="hist_fb_accept").click().run()
    assert not t.exceptions(hist) and not t.errors(hist)
    assert any("demo@2" in s.value and md(name) in s.value for s in hist.success)
    with workspace() as store:
        assert store.history.get(row_id).decision == "false_alarm"
        assert store.library.version("demo", 2).note.startswith("demo@1 + 1 image(s)")
        assert store.library.version("demo", 2).source == "update"     # it said "fit"
