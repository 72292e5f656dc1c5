"""Accounts, roles and API tokens (``Store.users``): who may sign in, and with which role.

Roles are ordered: an operator inspects and records decisions; an engineer also trains,
updates models and saves thresholds; an admin also deletes and renames models and manages
users. Passwords are kept as argon2id hashes (``argon2-cffi``); API tokens are random
256-bit strings kept as their sha256 (a token is shown once, when made). Failed sign-ins are
counted per user name and per client address in a sliding window: past the limit the name
(or address) is locked out until the window has passed, with a message saying for how long.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import InvalidInputError, PadimError
from .audit import log
from .database import Database
from .errors import NotFoundError
from .library import check_name
from .tables import ApiTokenRow, SignInFailureRow, UserRow, utcnow

#: Roles from least to most allowed; each one may do what the ones before it may.
ROLES = ("operator", "engineer", "admin")
#: Longest password accepted, in characters (argon2 takes any length; this bounds the work
#: one request can cause).
MAX_PASSWORD_CHARS = 1024
#: Shortest password a new account or a new password may have (sign-in checks only the hash).
MIN_PASSWORD_CHARS = 8
#: Failed sign-ins allowed in ``LOCKOUT_WINDOW`` per user name, and per client address.
MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_ADDRESS = 20
LOCKOUT_WINDOW = timedelta(minutes=15)
#: PostgreSQL advisory lock key that serializes sign-in attempts (count, then record).
_SIGN_IN_LOCK = 0x7061_6469_6D01
TOKEN_PREFIX = "padim_"

_HASHER = PasswordHasher()
#: Verified against when the user does not exist, so a wrong name takes as long as a wrong
#: password (no telling names apart by timing).
_DUMMY_HASH = _HASHER.hash(secrets.token_hex(16))


class SignInError(PadimError):
    """A sign-in was refused; the text is safe to show (it never says which part was wrong)."""


class LockedOutError(SignInError):
    """Too many failed sign-ins for this name or address; ``retry_after`` is when to retry."""

    def __init__(self, message: str, retry_after: datetime) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class User:
    """An account as read back (no hash)."""

    name: str
    role: str
    created_at: datetime
    last_sign_in_at: datetime | None
    #: Changes whenever the password does: signed session cookies carry it, so a new
    #: password (or a removed account) ends every session signed in with the old one.
    password_stamp: str

    def may(self, role: str) -> bool:
        """True when this user's role is ``role`` or above."""
        return role_rank(self.role) >= role_rank(role)


@dataclass(frozen=True)
class ApiToken:
    """An API token as listed (the token itself is never stored)."""

    name: str
    prefix: str
    created_by: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def role_rank(role: str) -> int:
    """0 for operator, 1 engineer, 2 admin; InvalidInputError for anything else."""
    if role not in ROLES:
        raise InvalidInputError("role", f"must be one of {', '.join(ROLES)}, got {role!r}")
    return ROLES.index(role)


def check_password(password: object) -> str:
    """The password if it is acceptable text (not empty, at most ``MAX_PASSWORD_CHARS``)."""
    if not isinstance(password, str):
        raise InvalidInputError("password", f"must be text, got {type(password).__name__}")
    if not password:
        raise InvalidInputError("password", "is empty")
    if len(password) > MAX_PASSWORD_CHARS:
        raise InvalidInputError("password", f"has {len(password)} characters; at most "
                                            f"{MAX_PASSWORD_CHARS} are allowed")
    if "\x00" in password:
        raise InvalidInputError("password", "contains a NUL character")
    return password


def check_new_password(password: object) -> str:
    """``check_password``, and at least ``MIN_PASSWORD_CHARS`` long: for a new account or a
    new password (an account made before the minimum still signs in)."""
    password = check_password(password)
    if len(password) < MIN_PASSWORD_CHARS:
        raise InvalidInputError("password", f"has {len(password)} characters; at least "
                                            f"{MIN_PASSWORD_CHARS} are needed")
    return password


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _stamp(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def _user(row: UserRow) -> User:
    return User(row.name, row.role, row.created_at, row.last_sign_in_at,
                _stamp(row.password_hash))


def _token(row: ApiTokenRow) -> ApiToken:
    return ApiToken(row.name, row.prefix, row.created_by, row.created_at, row.revoked_at)


class Users:
    """Accounts, sign-in with lock-out, and API tokens (``Store.users``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # ------------------------------------------------------------------ accounts
    def add(self, name: str, password: str, role: str, *, by: str = "") -> User:
        """A new account; InvalidInputError when the name is taken or anything is unusable.
        ``by``: who, for the audit trail (as in every method that changes accounts)."""
        name = check_name(name, "user name")
        role_rank(role)
        hashed = _HASHER.hash(check_new_password(password))
        try:
            with self._db.writing() as s:
                row = UserRow(name=name, role=role, password_hash=hashed, created_at=utcnow())
                s.add(row)
                s.flush()
                log(s, by, "user.add", name, f"role {role}")
                return _user(row)
        except IntegrityError:
            raise InvalidInputError(name, "a user of that name already exists") from None

    def list(self) -> list[User]:
        with self._db.reading() as s:
            return [_user(r) for r in s.scalars(select(UserRow).order_by(UserRow.name))]

    def get(self, name: str) -> User | None:
        """The account called ``name``, or None (also for names no account could have)."""
        try:
            name = check_name(name, "user name")
        except InvalidInputError:
            return None
        with self._db.reading() as s:
            row = s.scalar(select(UserRow).where(UserRow.name == name))
            return None if row is None else _user(row)

    def count(self, role: str | None = None) -> int:
        query = select(func.count(UserRow.id))
        if role is not None:
            query = query.where(UserRow.role == role)
        with self._db.reading() as s:
            return int(s.scalar(query) or 0)

    def set_password(self, name: str, password: str, *, by: str = "") -> User:
        hashed = _HASHER.hash(check_new_password(password))
        with self._db.writing() as s:
            row = self._row(s, name)
            row.password_hash = hashed
            log(s, by, "user.password", row.name, "new password (its sessions end)")
            return _user(row)

    def set_role(self, name: str, role: str, *, by: str = "") -> User:
        role_rank(role)
        with self._db.writing() as s:
            row = self._row(s, name)
            if row.role == "admin" and role != "admin":
                self._keep_an_admin(s, row.name)
            log(s, by, "user.role", row.name, f"role {role}, was {row.role}")
            row.role = role
            return _user(row)

    def remove(self, name: str, *, by: str = "") -> None:
        """Remove an account (never the last admin); its name stays on what it did."""
        with self._db.writing() as s:
            row = self._row(s, name)
            if row.role == "admin":
                self._keep_an_admin(s, row.name)
            log(s, by, "user.remove", row.name, f"role was {row.role}")
            s.delete(row)

    @staticmethod
    def _keep_an_admin(s: Session, name: str) -> None:
        admins = s.scalar(select(func.count(UserRow.id)).where(UserRow.role == "admin")) or 0
        if admins <= 1:
            raise InvalidInputError(name, "is the last admin; add another admin first")

    @staticmethod
    def _row(s: Session, name: str) -> UserRow:
        name = check_name(name, "user name")
        row = s.scalar(select(UserRow).where(UserRow.name == name))
        if row is None:
            raise NotFoundError(name, "no user of that name")
        return row

    # ------------------------------------------------------------------ sign-in
    def authenticate(self, name: str, password: str, address: str = "") -> User:
        """The user, when ``password`` is theirs and neither the name nor the address is
        locked out; otherwise SignInError (LockedOutError) with a message to show. Every
        refusal for a wrong name or password counts towards the lock-out."""
        address = str(address or "unknown")[:64]
        try:
            clean_name = check_name(name, "user name")
        except InvalidInputError as err:
            self._attempt(str(name)[:200], address)
            raise SignInError(f"Sign-in refused: {err}") from None
        # Counted under the name as stored ('ann ' is 'ann'), before the password is looked
        # at, in one write transaction: parallel guesses cannot all pass the check.
        self._attempt(clean_name, address)
        try:
            password = check_password(password)
        except InvalidInputError as err:
            raise SignInError(f"Sign-in refused: {err}") from None
        with self._db.reading() as s:
            row = s.scalar(select(UserRow).where(UserRow.name == clean_name))
            stored = row.password_hash if row is not None else _DUMMY_HASH
        try:
            _HASHER.verify(stored, password)
            ok = row is not None
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok:      # the attempt stays counted as a failure
            raise SignInError("Sign-in refused: wrong user name or password.")
        with self._db.writing() as s:
            row = self._row(s, clean_name)
            if _HASHER.check_needs_rehash(row.password_hash):
                row.password_hash = _HASHER.hash(password)
            row.last_sign_in_at = utcnow()
            s.execute(delete(SignInFailureRow).where(SignInFailureRow.user_name == clean_name))
            return _user(row)

    def _attempt(self, name: str, address: str) -> None:
        """Record a sign-in attempt as a failure (a success deletes the name's), then refuse
        when the name or the address already had their share in the window. Both in one
        write transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock), so that
        concurrent attempts are counted one after another."""
        since = utcnow() - LOCKOUT_WINDOW
        recent = select(func.count(SignInFailureRow.id), func.min(SignInFailureRow.failed_at)) \
            .where(SignInFailureRow.failed_at >= since)
        with self._db.writing() as s:
            if s.get_bind().dialect.name == "postgresql":
                s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SIGN_IN_LOCK})
            by_name = s.execute(recent.where(SignInFailureRow.user_name == name)).one()
            by_address = s.execute(recent.where(SignInFailureRow.address == address)).one()
            s.add(SignInFailureRow(user_name=name[:200], address=address, failed_at=utcnow()))
        for (count, oldest), limit, what in ((by_name, MAX_FAILURES_PER_USER, "this user"),
                                             (by_address, MAX_FAILURES_PER_ADDRESS,
                                              "this address")):
            if count >= limit:
                retry = oldest + LOCKOUT_WINDOW
                minutes = max(1, round((retry - utcnow()).total_seconds() / 60))
                raise LockedOutError(
                    f"Sign-in refused: too many failed sign-ins for {what} "
                    f"({count} in {int(LOCKOUT_WINDOW.total_seconds() // 60)} minutes). "
                    f"Try again in about {minutes} minute{'s' if minutes != 1 else ''}, or "
                    "ask an admin to reset the password.", retry)

    def clear_failures(self, name: str | None = None) -> int:
        """Forget failed sign-ins (of one name, or all): ends a lock-out at once."""
        query = delete(SignInFailureRow)
        if name is not None:
            query = query.where(SignInFailureRow.user_name == name)
        with self._db.writing() as s:
            return int(getattr(s.execute(query), "rowcount", 0) or 0)

    # ------------------------------------------------------------------ API tokens
    def add_token(self, name: str, created_by: str = "") -> tuple[str, ApiToken]:
        """A new API token called ``name``: (the token, shown only now; its listing)."""
        name = check_name(name, "token name")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        try:
            with self._db.writing() as s:
                row = ApiTokenRow(name=name, token_sha256=token_sha256(token),
                                  prefix=token[:len(TOKEN_PREFIX) + 4],
                                  created_by=str(created_by)[:200], created_at=utcnow())
                s.add(row)
                s.flush()
                log(s, created_by, "token.add", name, f"prefix {row.prefix}")
                return token, _token(row)
        except IntegrityError:
            raise InvalidInputError(name, "a token of that name already exists") from None

    def tokens(self) -> list[ApiToken]:
        with self._db.reading() as s:
            return [_token(r) for r in s.scalars(select(ApiTokenRow).order_by(ApiTokenRow.name))]

    def revoke_token(self, name: str, *, by: str = "") -> ApiToken:
        name = check_name(name, "token name")
        with self._db.writing() as s:
            row = s.scalar(select(ApiTokenRow).where(ApiTokenRow.name == name))
            if row is None:
                raise NotFoundError(name, "no token of that name")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                log(s, by, "token.revoke", name, f"prefix {row.prefix}")
            return _token(row)

    def active_tokens(self) -> int:
        with self._db.reading() as s:
            return int(s.scalar(select(func.count(ApiTokenRow.id))
                                .where(ApiTokenRow.revoked_at.is_(None))) or 0)

    def verify_token(self, token: str) -> ApiToken | None:
        """The active token's listing when ``token`` is one, else None."""
        if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        with self._db.reading() as s:
            row = s.scalar(select(ApiTokenRow).where(
                ApiTokenRow.token_sha256 == token_sha256(token),
                ApiTokenRow.revoked_at.is_(None)))
            return None if row is None else _token(row)


__all__ = ["MAX_PASSWORD_CHARS", "MIN_PASSWORD_CHARS", "ROLES", "ApiToken", "LockedOutError",
           "SignInError", "User", "Users", "check_new_password", "check_password", "role_rank"]
