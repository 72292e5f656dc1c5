"""AppTest: the Models and History pages over a real workspace (SQLite in a temp data dir).

Why: these pages are where a supervisor manages the shared models and an operator reviews
and corrects verdicts; every button must change the store as it says, and a bad name, a bad
upload or a broken model file must be one message, never a traceback.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from inspector_ui import testing as t
from padim_core import PadimModel
from padim_core.store import DATA_DIR_ENV, DATABASE_URL_ENV, NewInspection, Store


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> PadimModel:
    demo = t.make_small_demo(tmp_path_factory.mktemp("ws") / "demo")
    with pytest.warns(UserWarning):
        return PadimModel(d=16, image_size=64, crop=64, device="cpu").fit(
            sorted((demo / "train" / "good").glob("*.png")))


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    """The workspace the app opens (PADIM_DATA_DIR), opened here too to fill and check it."""
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "ws"))
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    s = Store.open(tmp_path / "ws")
    yield s
    s.close()


def _variant(model: PadimModel, k: int) -> PadimModel:
    other = PadimModel.from_bytes(model.to_bytes(), device="cpu")
    other.state_.image_threshold = model.image_threshold_ + k
    return other


def models_page():  # type: ignore[no-untyped-def]
    return t.open_page(t.new_app(), "models")


def test_empty_library_says_how_to_fill_it(store: Store) -> None:
    at = models_page()
    assert not t.exceptions(at) and not t.errors(at)
    assert any("library is empty" in i.value for i in at.info)
    assert at.button(key="models_save").disabled          # no model A yet


@pytest.mark.parametrize("page", ["inspect", "compare"])
def test_no_model_open_points_to_the_library_when_it_has_models(
        store: Store, model: PadimModel, page: str) -> None:
    """A new session (the next day, a bookmark without ?model=) with a filled library:
    the page says the models are there to open, not "train one first"."""
    store.library.save(model, "plates")
    store.library.save(_variant(model, 1), "plates")
    at = t.open_page(t.new_app(), page)
    assert not t.exceptions(at) and not t.errors(at)
    infos = [i.value for i in at.info]
    assert any("No model open. The library above holds 2 version(s)" in i for i in infos), infos
    assert not any("No model yet" in i for i in infos)


def test_models_table_default_rename_delete_and_broken_file(store: Store,
                                                            model: PadimModel) -> None:
    store.library.save(model, "plates", note="week 48")
    store.library.save(_variant(model, 1), "plates")
    broken = store.library.save(_variant(model, 2), "other")
    store.blobs.path(broken.sha256).unlink()
    at = models_page()
    assert not t.exceptions(at) and not t.errors(at)
    table = at.dataframe[0].value
    assert list(table["model"]) == ["other", "plates", "plates"]
    assert list(table["file"]) == ["file missing", "ok", "ok"]
    assert any("missing or damaged" in w.value for w in at.warning)

    at.selectbox(key="models_name").set_value("other").run()
    assert at.button(key="models_open").disabled           # a missing file cannot be opened
    at.selectbox(key="models_name").set_value("plates").run()
    assert at.selectbox(key="models_version_plates").value == 2     # the newest
    at.selectbox(key="models_version_plates").set_value(1).run()
    at.button(key="models_default").click().run()
    assert not t.exceptions(at)
    assert store.library.get("plates").default_version == 1
    assert any("plates@1 is now the default version" in s.value for s in at.success)
    at.button(key="models_open").click().run()                 # model A: plates@1

    at.text_input(key="models_new_name").set_value("other").run()
    at.button(key="models_rename").click().run()
    assert any("a model of that name already exists" in e for e in t.errors(at))
    new = 'Plates "line 3"; DROP TABLE models; 🙂'
    at.text_input(key="models_new_name").set_value(new).run()
    at.button(key="models_rename").click().run()
    assert not t.exceptions(at) and not t.errors(at)
    assert sorted(e.name for e in store.library.models()) == [new, "other"]
    assert t.slot(at).library_ref == (new, 1)               # the open model follows, and
    assert at.query_params["model"] == new                  # its link (a reload opens it)
    assert at.text_input(key="models_new_name").value == ""     # no second rename armed
    at.selectbox(key="models_name").set_value("other").run()    # not model A's model
    at.text_input(key="models_new_name").set_value("other line").run()
    at.button(key="models_rename").click().run()
    assert at.selectbox(key="models_name").value == "other line"   # not back on model A
    store.library.rename("other line", "other")
    at.run()

    at.selectbox(key="models_name").set_value(new).run()
    at.selectbox(key=f"models_version_{new}").set_value(2).run()
    assert at.button(key="models_delete").disabled          # needs the confirmation box
    two = store.library.version(new, 2, verify=False)
    at.checkbox(key=f"models_delete_sure_{two.id}").check().run()
    at.selectbox(key=f"models_version_{new}").set_value(1).run()
    assert at.button(key="models_delete").disabled          # the tick was for @2 only
    at.selectbox(key=f"models_version_{new}").set_value(2).run()
    at.checkbox(key=f"models_delete_sure_{two.id}").check().run()
    at.button(key="models_delete").click().run()
    assert not t.exceptions(at)
    assert [v.version for v in store.library.get(new).versions] == [1]
    assert at.button(key="models_delete").disabled          # nothing armed after a delete


def test_open_a_version_then_save_model_a_under_a_new_name(store: Store,
                                                           model: PadimModel) -> None:
    v = store.library.save(model, "plates")
    store.library.set_thresholds(v, 7.5, 3.25)
    at = models_page()
    at.button(key="models_open").click().run()
    assert not t.exceptions(at) and not t.errors(at)
    slot = t.slot(at)
    assert slot is not None and slot.origin == "library: plates@1"
    thresholds = at.session_state["thresholds"]["A"]      # the version's saved ones
    assert (thresholds.image, thresholds.pixel) == (7.5, 3.25)
    at.text_input(key="models_save_name").set_value("   ").run()
    at.button(key="models_save").click().run()
    assert any("model name: is empty" in e for e in t.errors(at))
    at.text_input(key="models_save_name").set_value("copy of plates").run()
    at.button(key="models_save").click().run()
    assert not t.exceptions(at) and not t.errors(at)
    assert [e.name for e in store.library.models()] == ["copy of plates", "plates"]


def test_upload_adds_a_version_and_a_bad_file_adds_nothing(store: Store,
                                                           model: PadimModel) -> None:
    at = models_page()
    at.file_uploader(key="models_upload").set_value(
        ("junk.safetensors", b"not a model", "application/octet-stream")).run()
    at.button(key="models_upload_go").click().run()
    assert any("junk.safetensors" in e for e in t.errors(at)) and not t.exceptions(at)
    assert store.library.models() == []
    at.file_uploader(key="models_upload").set_value(
        ("line3.safetensors", model.to_bytes(), "application/octet-stream")).run()
    at.button(key="models_upload_go").click().run()
    assert not t.exceptions(at) and not t.errors(at)
    [entry] = store.library.models()
    assert entry.name == "line3" and entry.versions[0].source == "upload"


def _fill_history(store: Store) -> list[int]:
    rng = np.random.default_rng(0)
    pic = rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)
    old = datetime.now(UTC) - timedelta(days=90)
    return store.history.record([
        NewInspection("old.png", 1.0, "plates", 1, 2.0, 1.0, inspected_at=old),
        NewInspection("scratch.png", 5.0, "plates", 1, 2.0, 1.0, image=pic, overlay=pic,
                      operator="ann"),
        NewInspection("fine.png", 0.5, "other", 3, 2.0, 1.0),
    ])


def test_history_filters_shows_thumbnails_and_records_a_decision(store: Store) -> None:
    ids = _fill_history(store)
    at = t.open_page(t.new_app(), "history")
    assert not t.exceptions(at) and not t.errors(at)
    table = at.dataframe[0].value
    assert list(table["id"]) == [ids[2], ids[1]]            # last 30 days, newest first
    at.selectbox(key="hist_verdict").set_value("NG").run()
    assert list(at.dataframe[0].value["file"]) == ["scratch.png"]
    assert [c for img in at.image for c in img.captions] == ["image", "heat map"]
    at.selectbox(key="hist_verdict").set_value("all").run()
    at.selectbox(key="hist_model").set_value("other").run()
    assert list(at.dataframe[0].value["file"]) == ["fine.png"]
    at.selectbox(key="hist_model").set_value("all").run()
    at.selectbox(key="hist_row").set_value(ids[1]).run()
    at.radio(key=f"hist_choice_{ids[1]}").set_value("false_alarm")
    at.text_input(key=f"hist_comment_{ids[1]}").set_value("dust on the lens")
    at.text_input(key="hist_operator").set_value("bob").run()
    at.button(key="hist_decide").click().run()
    assert not t.exceptions(at) and not t.errors(at)
    row = store.history.get(ids[1])
    assert (row.decision, row.comment, row.decided_by) == \
        ("false_alarm", "dust on the lens", "bob")
    at.selectbox(key="hist_decision").set_value("false_alarm").run()
    assert list(at.dataframe[0].value["decision"]) == ["false alarm"]


def test_history_filters_by_version_of_the_chosen_model(store: Store) -> None:
    """A supervisor comparing plates@1 with plates@2 could only filter by name; the version
    list holds the chosen model's versions that have rows, older names included."""
    ids = _fill_history(store)
    [v2] = store.history.record([NewInspection("after.png", 0.4, "plates", 2, 2.0, 1.0)])
    [gone] = store.history.record([NewInspection("x.png", 0.4, "deleted model", 7, 2.0, 1.0)])
    at = t.open_page(t.new_app(), "history")
    assert at.selectbox(key="hist_version").disabled                  # no model chosen
    assert "deleted model" in at.selectbox(key="hist_model").options
    at.selectbox(key="hist_model").set_value("plates").run()
    assert at.selectbox(key="hist_version").options == ["all", "@1", "@2"]
    assert list(at.dataframe[0].value["id"]) == [v2, ids[1]]
    at.selectbox(key="hist_version").set_value(1).run()
    assert not t.exceptions(at) and not t.errors(at)
    assert list(at.dataframe[0].value["id"]) == [ids[1]]
    at.selectbox(key="hist_model").set_value("deleted model").run()
    assert not t.exceptions(at)
    assert list(at.dataframe[0].value["id"]) == [gone]


def test_history_csv_is_what_the_filters_show(store: Store) -> None:
    from inspector_ui import workspace

    ids = _fill_history(store)
    chosen = workspace.filters(datetime.now().date() - timedelta(days=30),
                               datetime.now().date(), "plates", None, None)
    rows = list(csv.DictReader(io.StringIO(workspace.history_csv(store, chosen).decode())))
    assert [int(r["id"]) for r in rows] == [ids[1]]
    at = t.open_page(t.new_app(), "history")
    assert at.get("download_button")


def test_empty_history_says_where_rows_come_from(store: Store) -> None:
    at = t.open_page(t.new_app(), "history")
    assert not t.exceptions(at) and not t.errors(at)
    assert any("Nothing recorded" in i.value for i in at.info)


def test_history_shows_typed_text_literally_never_as_links(store: Store) -> None:
    """An operator's upload named ``[Session expired](https://evil.example/login).png``, a
    model name, the operator's name and a decision comment, all shown on an admin's History
    page: each as its escaped text (a link or a remote image before), on the row's line,
    in the decision and in the upload box's label."""
    from inspector_ui.text import md

    name = "[Session expired](https://evil.example/login).png"
    model_name = "[Your model](https://evil.example/m)"
    operator = "![t](https://evil.example/track.png)"
    comment = "see :red[https://evil.example/c]"
    [row] = store.history.record([NewInspection(name, 5.0, model_name, 1, 2.0, 1.0,
                                                operator=operator)])
    store.history.decide(row, "false_alarm", comment, operator)
    at = t.open_page(t.new_app(), "history")
    assert not t.exceptions(at) and not t.errors(at)
    sources = [str(m.value) for m in at.markdown]
    line = next(s for s in sources if md(name) in s)
    assert md(model_name) in line and md(operator) in line
    decision = next(s for s in sources if s.startswith("**Operator decision**"))
    assert md(comment) in decision and md(operator) in decision
    label = next(u.label for u in at.get("file_uploader"))
    assert md(name) in label
    for text in [*sources, label]:
        assert "](https" not in text and "https://" not in text, text
