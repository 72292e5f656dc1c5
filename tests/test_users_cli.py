"""``padim users`` and ``padim tokens`` (issue 20): the first admin comes from the command line
with a password from stdin (never an argument), bad input is one line and exit 1, a token is
printed once and works until revoked."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from padim_core.cli import main
from padim_core.store import Store


def padim(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, data: Path,
          *argv: str, stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main([*argv, "--data-dir", str(data)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_users_add_list_role_passwd_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "ws"
    code, out, err = padim(capsys, monkeypatch, data, "users", "add", "ann", "--role", "admin",
                           stdin="first password\n")
    assert code == 0 and "added ann (admin)" in out + err and "session secret" in out + err
    assert (data / "session-secret").exists()
    assert padim(capsys, monkeypatch, data, "users", "add", "otto", stdin="operator pw\n")[0] == 0
    code, out, err = padim(capsys, monkeypatch, data, "users", "list")
    assert code == 0 and "otto" in out + err and "operator" in out + err
    assert padim(capsys, monkeypatch, data, "users", "role", "otto", "engineer")[0] == 0
    assert padim(capsys, monkeypatch, data, "users", "passwd", "otto",
                 stdin="new password\n")[0] == 0
    with Store.open(data) as store:
        assert store.users.authenticate("otto", "new password").role == "engineer"
        assert store.users.authenticate("ann", "first password").role == "admin"
    assert padim(capsys, monkeypatch, data, "users", "remove", "otto")[0] == 0
    code, _, err = padim(capsys, monkeypatch, data, "users", "remove", "ann")
    assert code == 1 and "last admin" in err


@pytest.mark.parametrize(("name", "password", "problem"), [
    ("ann", "", "password: is empty"),
    ("ann", "p" * 10_000, "at most 1024"),
    ("ann", "abc1234", "has 7 characters; at least 8 are needed"),
    ("", "password", "user name: is empty"),
    ("a\tb", "password", "control or invalid character"),
])
def test_bad_accounts_are_one_line_and_exit_1(tmp_path: Path, name: str, password: str,
                                              problem: str,
                                              capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = padim(capsys, monkeypatch, tmp_path / "ws", "users", "add", name,
                         stdin=password + "\n")
    assert code == 1 and problem in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err and (password not in err or not password)
    with Store.open(tmp_path / "ws") as store:
        assert store.users.list() == []


def test_tokens_are_printed_once_and_work_until_revoked(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "ws"
    code, out, _ = padim(capsys, monkeypatch, data, "tokens", "add", "line 3", "--by", "ann")
    token = out.strip().splitlines()[-1]
    assert code == 0 and token.startswith("padim_")
    code, out, err = padim(capsys, monkeypatch, data, "tokens", "list")
    assert "line 3" in out + err and "active" in out + err and token not in out + err
    with Store.open(data) as store:
        assert store.users.verify_token(token).created_by == "ann"
    assert padim(capsys, monkeypatch, data, "tokens", "revoke", "line 3")[0] == 0
    with Store.open(data) as store:
        assert store.users.verify_token(token) is None
    code, _, err = padim(capsys, monkeypatch, data, "tokens", "revoke", "nope")
    assert code == 1 and "no token of that name" in err


def test_a_single_sign_on_account_asks_no_password_and_none_opens_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from padim_core.store import SignInError

    data = tmp_path / "ws"
    code, out, err = padim(capsys, monkeypatch, data, "users", "add", " Eve@Example.COM ",
                           "--sso", "--role", "engineer", stdin="")   # stdin empty: no prompt
    assert code == 0 and "added eve@example.com (engineer), single sign-on only" in out + err
    with Store.open(data) as store:
        assert store.users.get("eve@example.com").role == "engineer"
        for guess in ("", "eve", "eve@example.com", "password"):
            with pytest.raises(SignInError):
                store.users.authenticate("eve@example.com", guess)


@pytest.mark.parametrize("claims, name", [
    ({"email": "Otto@Example.com", "preferred_username": "otto", "sub": "17"},
     "otto@example.com"),
    ({"email": "  ", "preferred_username": "otto", "sub": "17"}, "otto"),
    ({"email": "boss@example.com", "email_verified": False, "sub": "17"}, "17"),
    ({"email": "otto@example.com", "email_verified": True}, "otto@example.com"),
    ({"sub": "17"}, "17"),
    ({"email": 5, "name": "Otto"}, None),
    ({}, None),
])
def test_the_account_a_single_sign_on_identity_maps_to(claims: dict, name: str | None) -> None:
    from padim_core.access import sso_account_name

    assert sso_account_name(claims) == name
