"""AppTest: sign-in and roles in the app (issue 20).

Why: on a network address anyone who reaches the port could otherwise train over the line's
model, move its thresholds or delete it. An operator must be able to inspect and decide, and
must neither see nor be able to trigger (by calling the actions with an operator session)
training, threshold saving, renaming or deleting; an engineer trains; an admin deletes; the
history and the library record who did it. ``PADIM_SIGN_IN=1`` asks for sign-in on the
loopback address these tests run on.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from inspector_ui import testing as t
from padim_core import PadimModel
from padim_core import access as policy
from padim_core.store import DATA_DIR_ENV, Store

pytestmark = pytest.mark.usefixtures("demo_env")
ACCOUNTS = {"ann": ("ann's password", "admin"), "erin": ("erin's password", "engineer"),
            "otto": ("otto's password", "operator")}


@pytest.fixture(autouse=True)
def accounts(demo_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(policy.SIGN_IN_ENV, "1")
    monkeypatch.delenv(policy.SECRET_ENV, raising=False)
    monkeypatch.delenv("PADIM_DEMO_MODEL", raising=False)
    with workspace() as store:
        for name, (password, role) in ACCOUNTS.items():
            store.users.add(name, password, role)
        policy.ensure_secret(store)


def workspace() -> Store:
    return Store.open(os.environ[DATA_DIR_ENV])


def sign_in(name: str, password: str | None = None, at: AppTest | None = None) -> AppTest:
    at = at or t.new_app()
    at.text_input(key="access_name").set_value(name)
    at.text_input(key="access_password").set_value(
        ACCOUNTS[name][0] if password is None else password)
    return at.button(key="access_submit").click().run()


def library_model(demo: Path) -> None:
    """demo@1 in the library, saved by the admin (faster than training through the UI)."""
    model = PadimModel(**t.SMALL_MODEL).fit(sorted((demo / "train" / "good").glob("*.png")))
    with workspace() as store:
        store.library.save(model, "demo", created_by="ann")


def has_button(at: AppTest, key: str) -> bool:
    return any(b.key == key for b in at.button)


def test_nothing_but_the_form_until_signed_in_and_bad_sign_ins_are_refused() -> None:
    at = t.new_app()
    assert not t.exceptions(at)
    assert at.text_input(key="access_name") is not None
    assert not any(p.title == "Train" for p in at.subheader)
    at = t.open_page(at, "train")   # a deep link shows the same form, not the page
    assert not has_button(at, "trainA_demo") and at.text_input(key="access_name")
    for name, password in [("ann", "wrong"), ("nobody", "x"), ("ann", ""),
                           ("ann", "p" * 10_000), ("'; DROP TABLE users;--", "' OR 1=1")]:
        sign_in(name, password, at)
        assert not t.exceptions(at)
        assert any(e.startswith("Sign-in refused") for e in t.errors(at)), (name, t.errors(at))
        assert "_access_user" not in at.session_state
    sign_in("ann", "wrong again", at)   # failures 4 and 5 for ann
    sign_in("ann", "and again", at)
    sign_in("ann", at=at)
    assert any("too many failed sign-ins for this user" in e for e in t.errors(at))
    assert "_access_user" not in at.session_state
    with workspace() as store:
        assert {u.name for u in store.users.list()} == set(ACCOUNTS)


def test_an_unprepared_workspace_is_one_message(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "empty"))
    at = t.new_app()
    assert not t.exceptions(at)
    assert any("no admin account" in e for e in t.errors(at))
    assert not at.text_input


def test_operator_inspects_and_decides_but_cannot_train_save_or_delete(demo: Path) -> None:
    library_model(demo)
    at = sign_in("otto")
    assert not t.exceptions(at) and not t.errors(at)
    assert any("Signed in as **otto** (operator)" in c.value for c in at.sidebar.caption)
    train = t.open_page(at, "train")
    assert not has_button(train, "trainA_demo") and not has_button(train, "trainA_go")
    train.button(key="trainA_lib_open").click().run()
    assert t.slot(train).library_ref == ("demo", 1)
    at = t.open_page(train, "inspect")
    at.button(key="inspect_demo").click().run()
    assert not t.exceptions(at) and not t.errors(at)
    ids = at.session_state["inspection"].history_ids
    picked = at.session_state["inspection"].result.names[
        int(at.selectbox(key="inspect_selected").value)]
    row_id = ids[picked]
    assert not any(i.key == "inspect_operator" for i in at.text_input)   # name is the user's
    assert at.radio(key=f"inspect_choice_{row_id}").value is None        # nothing pre-picked
    assert at.button(key="inspect_decide").disabled
    at.radio(key=f"inspect_choice_{row_id}").set_value("confirmed_defect").run()
    at.button(key="inspect_decide").click().run()
    assert not t.exceptions(at) and not t.errors(at)
    with workspace() as store:
        rows = store.history.find()
        assert {r.operator for r in rows} == {"otto"} and len(rows) == len(ids)
        assert store.history.get(row_id).decided_by == "otto"
    history = t.open_page(sign_in("otto"), "history")       # a new session: no originals
    assert not t.exceptions(history)
    table = history.dataframe[0].value
    assert list(table.loc[table["id"] == row_id, "decided by"]) == ["otto"]
    history.selectbox(key="hist_row").set_value(row_id).run()
    assert has_button(history, "hist_fb_confirm")
    assert not [u for u in history.get("file_uploader") if "fb_original" in str(u.key)], \
        "an operator may not accept as normal: no upload of the original for it"
    models = t.open_page(at, "models")
    assert not t.exceptions(models)
    for key in ("models_delete", "models_rename", "models_save_thr", "models_default",
                "models_save", "models_upload_go"):
        assert not has_button(models, key), key
    assert has_button(models, "models_open")


def _operator_triggers_everything() -> None:
    """An AppTest script: an operator's session calls each action a hidden button would."""
    import streamlit as st

    from inspector_ui import access, actions, workspace
    from padim_core.errors import PadimError

    st.session_state[access.USER_KEY] = ("otto", "operator", "")
    store = workspace.get_store()
    v = store.library.version("demo", 1)
    workspace.open_version(store, v)
    messages = []
    try:
        actions.fit_into_slot("A", actions.load_demo("train"),
                              actions.FitSettings("efficientnet_lite0", 32, 128, 112))
    except PadimError as err:
        messages.append(str(err))
    messages.append(str(workspace.save_slot(store, "A", "stolen")))
    messages.append(str(workspace.upload_model(store, b"x", "x.safetensors", "stolen")))
    messages.append(str(workspace.run_action("Not deleted", store.library.delete, "demo", 1,
                                             role="admin")))
    messages.append(str(workspace.run_action("Not renamed", store.library.rename, "demo",
                                             "x", role="admin")))
    messages.append(str(workspace.run_action("Not saved", store.library.set_thresholds, v,
                                             9.0, 9.0, role="engineer")))
    st.session_state["out"] = messages


def test_actions_refuse_an_operator_session_on_the_server(demo: Path) -> None:
    library_model(demo)
    at = AppTest.from_function(_operator_triggers_everything,
                               default_timeout=t.TIMEOUT).run()
    assert not t.exceptions(at)
    out = at.session_state["out"]
    assert out[0].startswith("Train a model: not allowed for otto (operator)")
    assert out[1:] == ["None", "None", "False", "False", "False"]
    errors = t.errors(at)
    assert sum("only engineers and admins may do this" in e for e in errors) == 3
    assert sum("only admins may do this" in e for e in errors) == 2
    with workspace() as store:
        [entry] = store.library.models()
        assert entry.name == "demo" and [v.version for v in entry.versions] == [1]
        assert entry.versions[0].operating_image_threshold is None


def test_an_engineer_trains_and_an_admin_deletes() -> None:
    at = t.open_page(sign_in("erin"), "train")
    t.train_demo(at)
    assert not t.exceptions(at) and not t.errors(at)
    with workspace() as store:
        v = store.library.version("demo", 1)
        assert v.created_by == "erin"
    models = t.open_page(at, "models")
    assert has_button(models, "models_save_thr") and not has_button(models, "models_delete")
    models.button(key="models_save_thr").click().run()
    assert not any("who" in d.value.columns for d in models.dataframe)   # admins only

    at = t.open_page(sign_in("ann"), "models")
    next(c for c in at.checkbox if c.key.startswith("models_delete_sure")).check().run()
    at.button(key="models_delete").click().run()
    assert not t.exceptions(at) and not t.errors(at)
    with workspace() as store:
        assert store.library.models() == []
        assert [(e.actor, e.action, e.target) for e in reversed(store.audit.find())][-3:] == [
            ("erin", "model.add", "demo@1"), ("erin", "model.thresholds", "demo@1"),
            ("ann", "model.delete", "demo@1")]
    table = next(d.value for d in at.dataframe if "who" in d.value.columns)   # admin's view
    assert list(table["who"])[:3] == ["ann", "erin", "erin"]
    assert list(table["action"])[:3] == ["model.delete", "model.thresholds", "model.add"]


def test_sign_out_shows_the_form_again_and_a_removed_user_is_signed_out() -> None:
    at = sign_in("erin")
    at.button(key="access_sign_out").click().run()
    assert not t.exceptions(at)
    assert at.text_input(key="access_name") and "_access_user" not in at.session_state
    sign_in("erin", at=at)
    assert at.session_state["_access_user"][0] == "erin"
    with workspace() as store:
        store.users.remove("erin")
    at.run()
    assert "_access_user" not in at.session_state and at.text_input(key="access_name")


def test_an_open_tab_is_signed_out_when_the_session_hours_are_over(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """PADIM_SESSION_HOURS ends a session in a tab left open, not only its cookie on a
    reload: the next click after the hours shows the sign-in form, saying why."""
    monkeypatch.setenv(policy.SESSION_HOURS_ENV, "1")
    at = sign_in("ann")
    assert at.session_state["_access_user"][0] == "ann"
    at = t.open_page(at, "models")
    assert not any(w.key == "access_name" for w in at.text_input)
    import time as clock

    later = clock.time() + 3601
    monkeypatch.setattr(clock, "time", lambda: later)       # an hour and a second on
    at.run()
    assert not t.exceptions(at)
    assert "_access_user" not in at.session_state and at.text_input(key="access_name")
    assert any("Your session ended after 1 hour(s)" in i.value for i in at.info)
    sign_in("ann", at=at)                                   # and one can sign in again
    assert at.session_state["_access_user"][0] == "ann"
    assert not any("Your session ended" in i.value for i in at.info)


def test_an_operator_evaluates_the_open_model_and_is_not_offered_training(demo: Path) -> None:
    """Evaluate offered an operator "Train model A … first" (ticked), then refused it on the
    click; now it is not offered and the opened model is evaluated."""
    library_model(demo)
    at = t.open_page(sign_in("otto"), "evaluate")
    assert not any(c.key == "eval_fit_first" for c in at.checkbox)
    at.button(key="eval_demo").click().run()
    assert any("open one from the library" in e for e in t.errors(at))
    at = t.open_page(at, "train")
    at.button(key="trainA_lib_open").click().run()
    at = t.open_page(at, "evaluate")
    at.button(key="eval_demo").click().run()
    assert not t.exceptions(at) and not t.errors(at)
    assert t.metric(at, "Image AUROC")
