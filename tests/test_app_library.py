"""AppTest: Train, Inspect and Compare keep their models in the workspace (issue 12, app).

Why: a model that lives only in the browser session is lost on a reload. Train must save
each fit as a library version, the URL must name the open version so a reload (a new session
with the same query string) gets it back, Inspect must record what it scored and take the
operator's decisions, and a library that cannot be written must never cost the fitted model.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from inspector_ui import testing as t
from padim_core import PadimModel
from padim_core.store import DATA_DIR_ENV, Store, training_fingerprint

pytestmark = pytest.mark.usefixtures("demo_env")


def workspace() -> Store:
    return Store.open(os.environ[DATA_DIR_ENV])


def reloaded(at: AppTest, page: str) -> AppTest:
    """A new browser session opened on ``page`` with ``at``'s query string (a reload)."""
    fresh = AppTest.from_file(str(t.APP), default_timeout=t.TIMEOUT)
    for key, value in at.query_params.items():
        fresh.query_params[key] = value[0] if isinstance(value, list) else value
    fresh.run()
    return fresh.switch_page(f"pages/{page}.py").run()


def trained(name: str = "") -> AppTest:
    at = t.open_page(t.new_app(), "train")
    if name:
        at.text_input(key="trainA_save_name").set_value(name)
    return t.train_demo(at)


def test_train_saves_a_version_named_after_the_data_and_puts_it_in_the_url(
        demo_env: Path) -> None:
    at = trained()
    assert not t.exceptions(at) and not t.errors(at)
    assert any("Saved in the library as **demo@1**" in s.value for s in at.success)
    assert t.slot(at).library_ref == ("demo", 1)
    assert dict(at.query_params) in ({"model": "demo", "v": "1"},
                                     {"model": ["demo"], "v": ["1"]})
    at.text_input(key="trainA_save_name").set_value("line 3").run()
    t.train_demo(at)
    assert t.slot(at).library_ref == ("line 3", 1)
    t.train_demo(at)
    assert t.slot(at).library_ref == ("line 3", 2)
    with workspace() as store:
        assert {e.name: [v.version for v in e.versions] for e in store.library.models()} == \
            {"demo": [1], "line 3": [1, 2]}
        # The card names the training set (it said "fingerprint not recorded" for every
        # version trained in the app): the same images give the same fingerprint.
        fingerprint = training_fingerprint(sorted((demo_env / "train" / "good").iterdir()))
        assert store.library.version("demo", 1).training_fingerprint == fingerprint
        assert store.library.version("line 3", 2).training_fingerprint == fingerprint


def test_a_save_failure_is_one_error_and_the_model_stays_usable() -> None:
    blobs_tmp = Path(os.environ[DATA_DIR_ENV]) / "blobs" / "tmp"
    blobs_tmp.parent.mkdir(parents=True)
    blobs_tmp.write_text("not a folder")           # the model file cannot be written
    at = trained()
    assert not t.exceptions(at)
    assert any(e.startswith("Not saved to the library") for e in t.errors(at))
    slot = t.slot(at)
    assert slot is not None and slot.library_ref is None
    at = t.open_page(at, "inspect")
    at.button(key="inspect_demo").click().run()
    assert not t.exceptions(at) and not t.errors(at)
    assert int(t.metric(at, "Images")) > 0
    with workspace() as store:
        assert store.library.models() == [] and store.history.count() == 0


def test_reload_reopens_the_model_and_shows_the_recorded_inspection() -> None:
    at = t.open_page(trained(), "inspect")
    at.button(key="inspect_demo").click().run()
    assert not t.exceptions(at) and not t.errors(at)
    n_images = int(t.metric(at, "Images"))
    ids = at.session_state["inspection"].history_ids
    assert len(ids) == n_images

    again = reloaded(at, "inspect")
    assert not t.exceptions(again) and not t.errors(again)
    slot = t.slot(again)
    assert slot is not None and slot.library_ref == ("demo", 1)
    assert slot.origin == "library: demo@1"
    assert any("Last recorded inspection with demo@1" in h.value for h in again.subheader)
    table = again.dataframe[0].value
    assert len(table) == n_images and set(table["file"]) == set(ids)


def test_a_version_larger_than_the_upload_limit_reopens(monkeypatch: pytest.MonkeyPatch) -> None:
    """Library versions load from their file, not through the upload path: an updatable
    model of the default settings is about 700 MB, over the 200 MB upload limit."""
    from padim_core import limits

    at = trained()
    monkeypatch.setattr(limits, "MAX_MODEL_UPLOAD_MB", 0)   # every file is "too big" now
    again = reloaded(at, "inspect")
    assert not t.exceptions(again) and not t.errors(again)
    slot = t.slot(again)
    assert slot is not None and slot.library_ref == ("demo", 1)
    assert slot.origin == "library: demo@1"


def test_a_link_to_a_missing_version_is_one_error() -> None:
    at = trained()
    at.query_params["v"] = "7"
    again = reloaded(at, "inspect")
    assert not t.exceptions(again)
    assert any("demo@7" in e and "no such version" in e for e in t.errors(again))
    assert t.slot(again) is None


def test_decision_on_inspect_lands_in_history_and_its_csv() -> None:
    at = t.open_page(trained(), "inspect")
    at.button(key="inspect_demo").click().run()
    picked = at.session_state["inspection"].result.names[
        int(at.selectbox(key="inspect_selected").value)]
    row_id = at.session_state["inspection"].history_ids[picked]
    at.radio(key=f"inspect_choice_{row_id}").set_value("false_alarm")
    at.text_input(key=f"inspect_comment_{row_id}").set_value("dust")
    at.text_input(key="inspect_operator").set_value("ann").run()
    at.button(key="inspect_decide").click().run()
    assert not t.exceptions(at) and not t.errors(at)
    with workspace() as store:
        row = store.history.get(row_id)
        assert (row.decision, row.comment, row.decided_by) == ("false_alarm", "dust", "ann")

    hist = t.open_page(at, "history")
    assert not t.exceptions(hist)
    table = hist.dataframe[0].value
    assert table.loc[table["id"] == row_id, "decision"].item() == "false alarm"
    with workspace() as store:
        buf = io.StringIO()
        store.history.export_csv(buf)
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(buf.getvalue()))}
    assert rows[str(row_id)]["decision"] == "false alarm"
    assert rows[str(row_id)]["decided_by"] == "ann"
    # the operator's name is kept for the session
    assert hist.session_state["operator_name"] == "ann"


def _saved_version(name: str) -> None:
    demo = Path(os.environ["PADIM_INSPECTOR_DEMO_DIR"])
    with pytest.warns(UserWarning):
        model = PadimModel(d=16, image_size=64, crop=64, device="cpu").fit(
            sorted((demo / "train" / "good").glob("*.png")))
    with workspace() as store:
        store.library.save(model, name)


def test_inspect_and_compare_open_models_from_the_library() -> None:
    _saved_version("plates")
    _saved_version("plates")
    at = t.open_page(t.new_app(), "inspect")
    assert at.selectbox(key="inspect_lib_ref").options == ["plates@2", "plates@1"]
    at.selectbox(key="inspect_lib_ref").set_value("plates@1").run()
    at.button(key="inspect_lib_open").click().run()
    assert not t.exceptions(at) and not t.errors(at)
    assert t.slot(at).library_ref == ("plates", 1)

    at = t.open_page(at, "compare")
    at.radio(key="compare_mode").set_value("One image, two models").run()
    at.button(key="compare_demo").click().run()
    at.selectbox(key="compareB_lib_ref").set_value("plates@2").run()
    at.button(key="compareB_lib_open").click().run()
    assert not t.exceptions(at) and not t.errors(at)
    assert t.slot(at, "B").library_ref == ("plates", 2)
    assert t.slot(at, "A").library_ref == ("plates", 1)


def test_first_start_trains_the_demo_model_into_an_empty_library_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from inspector_ui.workspace import DEMO_MODEL_ENV

    assert t.slot(t.open_page(t.new_app(), "inspect")) is None      # off unless asked
    monkeypatch.setenv(DEMO_MODEL_ENV, "1")
    at = t.open_page(t.new_app(), "inspect")
    assert not t.exceptions(at) and not t.errors(at)
    assert t.slot(at).library_ref == ("demo", 1)
    assert any("demo model was trained and saved as demo@1" in i.value for i in at.info)
    from padim_core.config import PadimConfig

    fields = ("backbone", "d", "image_size", "crop", "resize", "upsample", "sigma",
              "score_top_percent")
    got, default = t.slot(at).model.config, PadimConfig()      # the documented default
    assert {f: getattr(got, f) for f in fields} == {f: getattr(default, f) for f in fields}
    other = t.open_page(t.new_app(), "train")                       # not trained again
    assert not t.exceptions(other) and t.slot(other) is None
    with workspace() as store:
        assert [(e.name, len(e.versions)) for e in store.library.models()] == [("demo", 1)]
