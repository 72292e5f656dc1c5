"""Accounts, sign-in, lock-out, API tokens and the session cookie (issue 20, engine side).

Why: once the workspace is shared on a network, the store decides who may do what. A wrong,
empty, huge or SQL-looking input must be refused with a message and change nothing; repeated
failures must lock the name (and the address) out; passwords and tokens must never be
stored as themselves; a cookie that was tampered with, has expired, or outlived its password
must sign nobody in; and a workspace from before accounts existed must upgrade in place.
"""

from __future__ import annotations

import base64
import json
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from padim_core import access
from padim_core.errors import InvalidInputError
from padim_core.store import LockedOutError, SignInError, Store
from padim_core.store.tables import SignInFailureRow, utcnow
from padim_core.store.users import MAX_FAILURES_PER_ADDRESS, MAX_FAILURES_PER_USER

PASSWORD = "correct horse battery staple"
SQL_NAME = "robert'); DROP TABLE users;--"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "data")
    s.users.add("ann", PASSWORD, "admin")
    s.users.add("otto", "op-passwd", "operator")
    yield s
    s.close()


def test_the_right_password_signs_in_and_the_role_order_holds(store: Store) -> None:
    user = store.users.authenticate("ann", PASSWORD, "10.0.0.1")
    assert (user.name, user.role) == ("ann", "admin") and user.last_sign_in_at is not None
    otto = store.users.get("otto")
    assert otto.may("operator") and not otto.may("engineer") and not otto.may("admin")
    assert user.may("engineer")


@pytest.mark.parametrize(("name", "password"), [
    ("ann", "wrong"), ("nobody", PASSWORD), ("ann", ""), ("ann", "x" * 10_000),
    (SQL_NAME, PASSWORD), ("ann' OR '1'='1", "' OR '1'='1"), ("", PASSWORD),
    ("a\x00b", PASSWORD), ("x" * 5000, PASSWORD),
])
def test_bad_sign_ins_are_refused_with_a_message(store: Store, name: str,
                                                 password: str) -> None:
    with pytest.raises(SignInError, match="^Sign-in refused"):
        store.users.authenticate(name, password, "10.0.0.2")
    assert {u.name for u in store.users.list()} == {"ann", "otto"}


def test_sql_looking_names_are_just_names(store: Store) -> None:
    store.users.add(SQL_NAME, "password", "operator")
    assert store.users.authenticate(SQL_NAME, "password").name == SQL_NAME
    assert {u.name for u in store.users.list()} == {"ann", "otto", SQL_NAME}
    with pytest.raises(InvalidInputError, match="already exists"):
        store.users.add(SQL_NAME, "password2", "admin")
    with pytest.raises(InvalidInputError, match="role"):
        store.users.add("eve", "password", "root")
    with pytest.raises(InvalidInputError, match="password: is empty"):
        store.users.add("eve", "", "operator")
    with pytest.raises(InvalidInputError, match="at most 1024"):
        store.users.add("eve", "x" * 10_000, "operator")


def test_new_passwords_have_at_least_eight_characters_old_ones_still_sign_in(
        store: Store) -> None:
    """A one-letter admin password was accepted; new accounts and new passwords need 8
    characters. An account made before the minimum still signs in (only its hash is
    checked), and sign-in never says how long a password must be."""
    from argon2 import PasswordHasher

    with pytest.raises(InvalidInputError, match="has 7 characters; at least 8 are needed"):
        store.users.add("eve", "7 chars", "admin")
    with pytest.raises(InvalidInputError, match="at least 8"):
        store.users.set_password("otto", "short")
    assert store.users.add("eve", "8 chars!", "operator").name == "eve"
    with store._db.writing() as s:         # as an account from before the minimum
        s.execute(text("UPDATE users SET password_hash = :h WHERE name = 'eve'"),
                  {"h": PasswordHasher().hash("a")})
    assert store.users.authenticate("eve", "a").name == "eve"
    with pytest.raises(SignInError) as refused:
        store.users.authenticate("eve", "b")
    assert "at least" not in str(refused.value)


def test_passwords_and_tokens_are_never_stored_as_themselves(store: Store,
                                                             tmp_path: Path) -> None:
    token, _ = store.users.add_token("line 3")
    store.close()
    raw = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("inspector.db*"))
    assert b"ann" in raw   # the file is the database, readable
    assert PASSWORD.encode() not in raw and token.encode() not in raw
    assert b"$argon2id$" in raw


def test_repeated_failures_lock_the_user_out_even_with_the_right_password(
        store: Store) -> None:
    for _ in range(MAX_FAILURES_PER_USER):
        with pytest.raises(SignInError):
            store.users.authenticate("ann", "guess", "10.0.0.3")
    with pytest.raises(LockedOutError, match="too many failed sign-ins for this user.*"
                                             "Try again in about 15 minutes"):
        store.users.authenticate("ann", PASSWORD, "10.0.0.4")
    assert store.users.authenticate("otto", "op-passwd", "10.0.0.3").name == "otto"
    store.users.clear_failures("ann")
    assert store.users.authenticate("ann", PASSWORD, "10.0.0.3").name == "ann"


def test_the_lock_out_holds_for_every_spelling_of_the_name(store: Store) -> None:
    """The security review: after 5 failures 'ann' was locked, but 'ann ' (a trailing space,
    the same account once cleaned) signed in, and its guesses were never counted."""
    for typed in ["ann ", " ann", "ann", "ann  ", " ann "]:
        with pytest.raises(SignInError):
            store.users.authenticate(typed, "guess", "10.0.0.3")
    for typed in ["ann", "ann ", " ann"]:
        with pytest.raises(LockedOutError):
            store.users.authenticate(typed, PASSWORD, "10.0.0.4")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_parallel_guesses_are_counted_one_after_another(store: Store, backend: str,
                                                        request: pytest.FixtureRequest,
                                                        tmp_path: Path) -> None:
    """12 simultaneous wrong guesses were all checked against the limit of 5."""
    from concurrent.futures import ThreadPoolExecutor

    if backend == "postgresql":
        from postgres_server import fresh_database

        url = fresh_database(request.getfixturevalue("postgres_admin_url"))
        store = Store.open(tmp_path / "pg", url)
        store.users.add("ann", PASSWORD, "admin")

    def guess(_: int) -> str:
        try:
            store.users.authenticate("ann", "guess", "10.0.0.5")
        except LockedOutError:
            return "locked"
        except SignInError:
            return "checked"
        return "signed in"

    with ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(guess, range(12)))
    if backend == "postgresql":
        store.close()
    assert outcomes.count("checked") == MAX_FAILURES_PER_USER
    assert outcomes.count("locked") == 12 - MAX_FAILURES_PER_USER


def test_failures_from_one_address_lock_that_address_out(store: Store) -> None:
    for i in range(MAX_FAILURES_PER_ADDRESS):
        with pytest.raises(SignInError):
            store.users.authenticate(f"user{i}", "guess", "192.0.2.7")
    with pytest.raises(LockedOutError, match="this address"):
        store.users.authenticate("ann", PASSWORD, "192.0.2.7")
    assert store.users.authenticate("ann", PASSWORD, "192.0.2.8").name == "ann"


def test_a_lock_out_ends_when_its_window_has_passed(store: Store) -> None:
    old = utcnow() - timedelta(minutes=16)
    with store._db.writing() as s:   # failures from 16 minutes ago
        s.add_all([SignInFailureRow(user_name="ann", address="a", failed_at=old)
                   for _ in range(MAX_FAILURES_PER_USER)])
    assert store.users.authenticate("ann", PASSWORD, "a").name == "ann"


def test_the_last_admin_cannot_be_removed_or_demoted(store: Store) -> None:
    with pytest.raises(InvalidInputError, match="last admin"):
        store.users.remove("ann")
    with pytest.raises(InvalidInputError, match="last admin"):
        store.users.set_role("ann", "engineer")
    store.users.remove("otto")
    assert store.users.get("otto") is None


def test_api_tokens_verify_until_revoked(store: Store) -> None:
    token, info = store.users.add_token("line 3 PLC", created_by="ann")
    assert token.startswith("padim_") and info.prefix == token[:10]
    assert store.users.verify_token(token).name == "line 3 PLC"
    assert store.users.verify_token(token + "x") is None
    assert store.users.verify_token("padim_" + "A" * 43) is None
    assert store.users.verify_token("") is None
    assert store.users.active_tokens() == 1
    store.users.revoke_token("line 3 PLC")
    assert store.users.verify_token(token) is None and store.users.active_tokens() == 0
    assert not store.users.tokens()[0].active


def _cookies(store: Store) -> access.SessionCookies:
    access.ensure_secret(store)
    return access.SessionCookies(access.load_secret(store), max_age_s=3600)


def test_a_signed_cookie_signs_its_user_in(store: Store) -> None:
    cookies = _cookies(store)
    value = cookies.issue(store.users.get("otto"))
    assert cookies.user(value, store).name == "otto"


def test_a_tampered_cookie_signs_nobody_in(store: Store) -> None:
    cookies = _cookies(store)
    value = cookies.issue(store.users.get("otto"))
    payload, _, signed = value.partition(".")
    as_ann = base64.urlsafe_b64encode(json.dumps(
        {"u": "ann", "p": store.users.get("ann").password_stamp}).encode()).rstrip(b"=")
    flipped = value[:-2] + ("A" if value[-2] != "A" else "B") + value[-1]
    for bad in (flipped, as_ann.decode() + "." + signed, payload, "", "x" * 10_000,
                value + "x"):
        assert cookies.user(bad, store) is None, bad
    other_secret = access.SessionCookies("another secret of at least thirty-two chars")
    assert other_secret.user(value, store) is None


def test_an_expired_cookie_signs_nobody_in(store: Store,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    cookies = _cookies(store)
    now = time.time()
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: now - 2 * 3600)
    value = cookies.issue(store.users.get("otto"))
    monkeypatch.undo()
    assert cookies.user(value, store) is None
    assert access.SessionCookies(cookies.secret, max_age_s=3 * 3600).user(value, store)


def test_a_new_password_or_a_removed_account_ends_the_cookie(store: Store) -> None:
    cookies = _cookies(store)
    value = cookies.issue(store.users.get("otto"))
    store.users.set_password("otto", "new pass")
    assert cookies.user(value, store) is None
    value = cookies.issue(store.users.get("otto"))
    store.users.remove("otto")
    assert cookies.user(value, store) is None


def test_the_secret_is_made_once_private_and_a_short_one_is_refused(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(access.SECRET_ENV, raising=False)
    assert access.load_secret(store) is None
    assert access.ensure_secret(store) and not access.ensure_secret(store)
    path = access.secret_path(store)
    assert path.stat().st_mode & 0o077 == 0 and len(access.load_secret(store)) >= 32
    monkeypatch.setenv(access.SECRET_ENV, "short")
    with pytest.raises(InvalidInputError, match="PADIM_SECRET.*at least 32"):
        access.load_secret(store)


def test_network_addresses_need_sign_in_and_loopback_does_not(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(access.SIGN_IN_ENV, raising=False)
    for host in ("127.0.0.1", "127.0.1.1", "::1", "[::1]", "localhost"):
        assert not access.sign_in_required(host), host
    for host in ("0.0.0.0", "::", "192.168.1.5", "", None, "example.org"):
        assert access.sign_in_required(host), host
    monkeypatch.setenv(access.SIGN_IN_ENV, "1")
    assert access.sign_in_required("127.0.0.1")


def test_not_ready_names_what_is_missing(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(access.SECRET_ENV, raising=False)
    with Store.open(tmp_path / "empty") as store:
        problem = access.not_ready(store)
        assert "no admin account" in problem and "no session secret" in problem
        store.users.add("ann", PASSWORD, "admin")
        access.ensure_secret(store)
        assert access.not_ready(store) is None


def test_a_workspace_from_before_accounts_is_upgraded_in_place(tmp_path: Path) -> None:
    from alembic import command

    from padim_core.store.database import (
        _alembic_config,
        current_revision,
        head_revision,
        make_engine,
    )

    data = tmp_path / "old"
    (data / "blobs").mkdir(parents=True)
    engine = make_engine(f"sqlite:///{data / 'inspector.db'}")
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0002")
        conn.execute(text("INSERT INTO models (name, last_version, created_at) VALUES "
                          "('m', 1, '2026-01-01 00:00:00')"))
        conn.execute(text(
            "INSERT INTO model_versions (model_id, version, sha256, size_bytes, source, "
            "backbone, d, image_size, crop, n_train_images, training_fingerprint, "
            "fit_seconds, device, image_threshold, pixel_threshold, created_at, note, "
            "card_json) VALUES (1, 1, 'ab', 1, 'fit', 'b', 8, 64, 64, 3, '', 1.0, 'cpu', "
            "1.0, 1.0, '2026-01-01 00:00:00', '', '{}')"))
    engine.dispose()
    with Store.open(data) as store:
        [entry] = store.library.models()
        assert entry.versions[0].created_by == ""
        store.users.add("ann", PASSWORD, "admin")
        assert store.users.authenticate("ann", PASSWORD).name == "ann"
    engine = make_engine(f"sqlite:///{data / 'inspector.db'}")
    assert current_revision(engine) == head_revision() >= "0003"
    engine.dispose()
    assert os.path.exists(data / "inspector.db")


def test_a_cookie_restores_a_session_that_ends_when_the_cookie_would(store: Store) -> None:
    """The session a cookie restores starts at the cookie's issue time, so a tab kept open
    after a reload does not get a fresh PADIM_SESSION_HOURS."""
    cookies = _cookies(store)
    before = time.time()
    user, issued = cookies.session(cookies.issue(store.users.get("otto")), store)
    assert user.name == "otto" and before - 1 <= issued <= time.time()
    assert not cookies.expired(issued, now=issued + cookies.max_age_s - 1)
    assert cookies.expired(issued, now=issued + cookies.max_age_s + 1)
