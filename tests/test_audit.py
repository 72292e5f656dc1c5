"""The audit trail (``store.audit``, ``padim audit``), on SQLite and on a real PostgreSQL server.

Why: roles decide who may delete the line's model, move its thresholds, manage accounts or
change an operator's decision; afterwards somebody must be able to see who did. Every change
writes its row in the same transaction (a refused change writes none), and a decision that is
changed keeps what it replaced.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from padim_core.cli import main
from padim_core.demo import make_demo_set
from padim_core.errors import InvalidInputError
from padim_core.model import PadimModel
from padim_core.store import DATA_DIR_ENV, DATABASE_URL_ENV, NewInspection, NotFoundError, Store

PASSWORD = "long enough"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> PadimModel:
    demo = make_demo_set(tmp_path_factory.mktemp("audit") / "demo", n_train=4, n_test_good=1,
                         n_test_defect=1, size=128)
    with pytest.warns(UserWarning):
        return PadimModel(d=8, image_size=64, crop=64, device="cpu").fit(
            sorted((demo / "train" / "good").glob("*.png")))


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    url = None
    if request.param == "postgresql":
        from postgres_server import fresh_database

        url = fresh_database(request.getfixturevalue("postgres_admin_url"))
    s = Store.open(tmp_path / "ws", url)
    yield s
    s.close()


def trail(store: Store) -> list[tuple[str, str, str]]:
    """(actor, action, target), oldest first."""
    return [(e.actor, e.action, e.target) for e in reversed(store.audit.find())]


def test_every_change_is_one_event_naming_who(store: Store, model: PadimModel) -> None:
    store.users.add("ann", PASSWORD, "admin", by="root (cli)")
    store.users.add("erin", PASSWORD, "operator", by="ann")
    store.users.set_role("erin", "engineer", by="ann")
    store.users.set_password("erin", PASSWORD + "!", by="erin")
    store.users.add_token("plc", created_by="ann")
    store.users.revoke_token("plc", by="ann")
    v1 = store.library.save(model, "plates", created_by="erin")
    store.library.save(model, "plates", created_by="erin")
    store.library.set_default("plates", 1, by="erin")
    store.library.set_thresholds(v1, 3.5, None, by="erin")
    store.library.set_note(v1, "line 3", by="erin")
    store.library.rename("plates", "plates L3", by="ann")
    store.library.delete("plates L3", 2, by="ann")
    store.users.remove("erin", by="ann")
    assert trail(store) == [
        ("root (cli)", "user.add", "ann"), ("ann", "user.add", "erin"),
        ("ann", "user.role", "erin"), ("erin", "user.password", "erin"),
        ("ann", "token.add", "plc"), ("ann", "token.revoke", "plc"),
        ("erin", "model.add", "plates@1"), ("erin", "model.add", "plates@2"),
        ("erin", "model.default", "plates"), ("erin", "model.thresholds", "plates@1"),
        ("erin", "model.note", "plates@1"), ("ann", "model.rename", "plates"),
        ("ann", "model.delete", "plates L3@2"), ("ann", "user.remove", "erin")]
    details = {e.action: e.details for e in store.audit.find()}
    assert details["user.role"] == "role engineer, was operator"
    assert details["model.thresholds"] == ("image 3.5, pixel calibrated (was image "
                                           "calibrated, pixel calibrated)")
    assert details["model.rename"] == "renamed to plates L3"
    assert details["model.default"] == "default @1, was none (the newest)"
    assert details["model.delete"].startswith("1 version(s) deleted: @2 (sha256 ")
    assert PASSWORD not in " ".join(details.values())
    assert [e.action for e in store.audit.find(action="user", actor="ann")] == [
        "user.remove", "user.role", "user.add"]
    with pytest.raises(InvalidInputError, match="must be one of"):
        store.audit.find(action="models")


def test_a_refused_change_leaves_no_event(store: Store, model: PadimModel) -> None:
    store.users.add("ann", PASSWORD, "admin", by="x")
    store.library.save(model, "plates", created_by="x")
    before = len(store.audit.find())
    with pytest.raises(InvalidInputError, match="last admin"):
        store.users.remove("ann", by="mallory")
    with pytest.raises(NotFoundError):
        store.library.delete("plates", 9, by="mallory")
    with pytest.raises(InvalidInputError):
        store.library.set_thresholds(store.library.version("plates", 1), -1.0, None,
                                     by="mallory")
    assert len(store.audit.find()) == before
    assert not store.audit.find(actor="mallory")


def test_a_changed_decision_keeps_what_it_replaced(store: Store) -> None:
    [row_id] = store.history.record([NewInspection("part 7.png", 9.0, "plates", 1, 4.0, 3.0)])
    store.history.decide(row_id, "confirmed_defect", "scratch", "otto")
    store.history.decide(row_id, "false_alarm", "dust", "erin")
    store.history.decide(row_id, None, "", "ann")
    events = list(reversed(store.audit.find(action="decision")))
    assert [e.actor for e in events] == ["otto", "erin", "ann"]
    assert {e.target for e in events} == {f"inspection {row_id} (part 7.png, plates@1)"}
    assert events[0].details == "confirmed defect: scratch (was none)"
    assert events[1].details == "false alarm: dust (was confirmed defect by otto)"
    assert events[2].details == "cleared (was false alarm by erin)"


def test_export_is_spreadsheet_safe_and_the_cli_lists_and_exports(
        tmp_path: Path, model: PadimModel, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "ws"))
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    with Store.open() as store:
        store.users.add("ann", PASSWORD, "admin", by="=HYPERLINK(1)")
        store.library.save(model, "plates", created_by="ann")
        buf = io.StringIO()
        assert store.audit.export_csv(buf) == 2
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert rows[0]["actor"] == "'=HYPERLINK(1)" and rows[1]["action"] == "model.add"
    assert main(["models", "delete", "plates@1"]) == 0
    capsys.readouterr()
    assert main(["audit", "list", "--action", "model"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and "model.add" in out[0] and "model.delete" in out[1]
    assert "(cli)" in out[1] and "plates@1: 1 version(s) deleted" in out[1]
    assert main(["audit", "export", "--csv", str(tmp_path / "audit.csv")]) == 0
    assert len(list(csv.DictReader((tmp_path / "audit.csv").open()))) == 3
    assert main(["audit", "list", "--action", "nothing"]) == 1
    assert "must be one of" in capsys.readouterr().err
    assert main(["audit", "list", "--last", "0"]) == 2
