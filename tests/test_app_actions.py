"""The action layer (``inspector_ui.actions``): callable from a script without drawing anything,
failures leave the session as it was, and the pages show what an action reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from inspector_ui import actions
from inspector_ui import testing as t
from inspector_ui.uploads import DEMO_DIR_ENV

pytestmark = pytest.mark.usefixtures("demo_env")


def _train_and_inspect(settings: dict[str, int]) -> None:
    """An AppTest script: train on the demo set, inspect its test images, score one again."""
    import streamlit as st

    from inspector_ui import actions

    fit = actions.FitSettings("efficientnet_lite0", **settings)
    slot = actions.fit_into_slot("A", actions.load_demo("train"), fit)
    inspection = actions.run_inspection("A", actions.load_demo("test"))
    name = inspection.result.names[0]
    again = actions.predict_one("A", name, inspection.sources[name])
    st.session_state["out"] = {"slot": slot, "inspection": inspection, "again": again}


def _drawn(at: AppTest) -> int:
    return len(at.main.children) + len(at.sidebar.children)


def test_actions_work_from_a_script_and_draw_nothing(predict_calls: list[int]) -> None:
    at = AppTest.from_function(_train_and_inspect, kwargs={"settings": t.SMALL},
                               default_timeout=t.TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    out = at.session_state["out"]
    assert t.slot(at) is out["slot"] and out["slot"].model.config.d == t.SMALL["d"]
    assert at.session_state["inspection"] is out["inspection"]
    assert out["inspection"].model_token == out["slot"].token
    assert len(out["inspection"].result.names) == 6
    first = out["inspection"].result
    assert out["again"].score == pytest.approx(float(first.scores[0]))
    assert len(predict_calls) == 1, "predict_one re-uses the batch's score"
    assert _drawn(at) == 0, "actions must not draw"


def _failing_actions() -> None:
    import streamlit as st

    from inspector_ui import actions
    from inspector_ui.uploads import ImageBatch
    from padim_core.errors import PadimError

    messages = []
    fit = actions.FitSettings("efficientnet_lite0", 32, 128, 112)
    for call in (lambda: actions.fit_into_slot("A", ImageBatch(label="x"), fit),
                 lambda: actions.load_model_bytes("A", "m.safetensors", b""),
                 lambda: actions.load_model_bytes("A", "junk.safetensors", b"junk" * 9),
                 lambda: actions.run_inspection("A", ImageBatch(label="x"))):
        try:
            call()
        except PadimError as err:
            messages.append(str(err))
    st.session_state["messages"] = messages


def test_failed_actions_raise_a_message_and_change_nothing() -> None:
    at = AppTest.from_function(_failing_actions, default_timeout=t.TIMEOUT).run()
    assert not at.exception
    fit, empty, junk, inspect = at.session_state["messages"]
    assert fit.startswith("Nothing to train on")
    assert empty == "m.safetensors: the file is empty"
    assert junk.startswith("junk.safetensors")
    assert "Model A is empty" in inspect
    assert t.slot(at) is None and "inspection" not in at.session_state
    assert _drawn(at) == 0


def test_demo_set_unavailable_is_reported_the_same_on_every_page(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    at = t.train_demo(t.open_page(t.new_app(), "train"))
    before = t.slot(at)
    monkeypatch.setenv(DEMO_DIR_ENV, str(tmp_path / "missing"))
    with pytest.raises(actions.ActionError, match="^Demo set unavailable — "):
        actions.load_demo("test")
    for page, button in (("train", "trainA_demo"), ("inspect", "inspect_demo"),
                         ("compare", "compare_demo"), ("evaluate", "eval_demo")):
        at = t.open_page(at, page)
        if page == "evaluate":
            at.checkbox(key="eval_fit_first").set_value(False)
        at.button(key=button).click().run()
        assert not t.exceptions(at), (page, t.exceptions(at))
        errors = [e for e in t.errors(at) if e.startswith("Demo set unavailable — ")]
        assert len(errors) == 1, (page, t.errors(at))
        assert "missing" in errors[0], errors
        assert t.slot(at) is before, page
    assert "inspection" not in at.session_state and "evaluation" not in at.session_state


def test_pages_show_what_an_action_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    at = t.open_page(t.train_demo(t.open_page(t.new_app(), "train")), "inspect")
    at.button(key="inspect_demo").click().run()
    kept = at.session_state["inspection"]

    def refusing(*args: Any, **kwargs: Any) -> None:
        raise actions.ActionError("Nothing scored today.", problems=[("a.png", "too dark")])

    monkeypatch.setattr(actions, "run_inspection", refusing)
    at.button(key="inspect_demo").click().run()
    assert not t.exceptions(at)
    assert t.errors(at) == ["a.png: too dark", "Nothing scored today."]
    assert at.session_state["inspection"] is kept
    assert t.metric(at, "Images") == str(len(kept.result.names)), "old results still shown"
