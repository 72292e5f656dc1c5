"""Who must sign in, and the signed session cookie that keeps a sign-in across reloads.

The rule (secure by default): a server bound to a loopback address (127.0.0.1, ::1,
localhost) serves one person on this machine and needs no sign-in; bound to anything else
(0.0.0.0, a LAN address, or no address at all, which means every interface) it requires
sign-in, and refuses to start until the workspace has an admin account and a session secret.
``PADIM_SIGN_IN=1`` asks for sign-in on loopback as well.

The session cookie is ``itsdangerous``-signed (HMAC-SHA1 over a key derived from the secret)
and timestamped: it names the user and a stamp of their password hash, so it expires after
``PADIM_SESSION_HOURS`` (default 12), and a changed password or a removed account ends it.

Single sign-on is the alternative to passwords where a site has an OpenID Connect provider:
with an ``[auth]`` section in Streamlit's secrets the app offers ``st.login``; the provider
says who the person is (``sso_account_name`` picks the claim), and the workspace's account of
that name says what they may do, so roles stay in one place.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from .errors import InvalidInputError
from .store import Store, User

SIGN_IN_ENV = "PADIM_SIGN_IN"
SECRET_ENV = "PADIM_SECRET"
SESSION_HOURS_ENV = "PADIM_SESSION_HOURS"
SECRET_FILE = "session-secret"
MIN_SECRET_CHARS = 32
DEFAULT_SESSION_HOURS = 12.0
COOKIE_NAME = "padim_session"
_SALT = "padim-inspector-session"


def is_loopback(host: str | None) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, ``localhost``)."""
    if not host:
        return False
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def sign_in_required(host: str | None) -> bool:
    """Whether a server bound to ``host`` must ask for sign-in (see the module docstring)."""
    return os.environ.get(SIGN_IN_ENV, "") == "1" or not is_loopback(host)


def secret_path(store: Store) -> Path:
    return store.data_dir / SECRET_FILE


def load_secret(store: Store) -> str | None:
    """The session secret: ``PADIM_SECRET``, else the data dir's ``session-secret`` file;
    None when neither is there. InvalidInputError when it is too short to be one."""
    raw = os.environ.get(SECRET_ENV)
    source = SECRET_ENV
    if not raw:
        path = secret_path(store)
        try:
            raw = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise InvalidInputError(str(path), f"cannot be read: {err.strerror}") from None
        source = str(path)
    if len(raw) < MIN_SECRET_CHARS:
        raise InvalidInputError(source, f"the session secret has {len(raw)} characters; at "
                                        f"least {MIN_SECRET_CHARS} are needed")
    return raw


def ensure_secret(store: Store) -> bool:
    """Create the data dir's session secret (random, owner-only file) unless there is one;
    True when one was made."""
    if load_secret(store) is not None:
        return False
    path = secret_path(store)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(secrets.token_urlsafe(48))
    return True


def not_ready(store: Store) -> str | None:
    """Why sign-in cannot work on this workspace yet (no admin, no secret), or None."""
    problems = []
    if store.users.count("admin") == 0:
        problems.append("it has no admin account (create one: padim users add NAME "
                        "--role admin)")
    try:
        if load_secret(store) is None:
            problems.append(f"it has no session secret (padim users add makes one, or set "
                            f"{SECRET_ENV})")
    except InvalidInputError as err:
        problems.append(str(err))
    if not problems:
        return None
    return (f"Sign-in is required on a network address, and the workspace {store.data_dir} "
            f"is not ready for it: {'; '.join(problems)}.")


def session_seconds() -> float:
    raw = os.environ.get(SESSION_HOURS_ENV)
    try:
        hours = float(raw) if raw else DEFAULT_SESSION_HOURS
    except ValueError:
        hours = -1.0
    if not 0 < hours <= 24 * 30:
        raise InvalidInputError(SESSION_HOURS_ENV, f"must be hours in (0, 720], got {raw!r}")
    return hours * 3600.0


@dataclass(frozen=True)
class SessionCookies:
    """Makes and reads the signed session cookie's value."""

    secret: str
    max_age_s: float = DEFAULT_SESSION_HOURS * 3600.0

    def _serializer(self) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self.secret, salt=_SALT)

    def issue(self, user: User) -> str:
        return str(self._serializer().dumps({"u": user.name, "p": user.password_stamp}))

    def user(self, value: str | None, store: Store) -> User | None:
        """The user ``value`` signs in, or None: unsigned, tampered, expired, or for an
        account that is gone or whose password has changed since."""
        found = self.session(value, store)
        return None if found is None else found[0]

    def session(self, value: str | None, store: Store) -> tuple[User, float] | None:
        """``(user, when the cookie was issued, epoch seconds)``, or None as for ``user``:
        a session restored from the cookie ends when the cookie would."""
        if not value or len(value) > 4096:
            return None
        try:
            data, issued = self._serializer().loads(value, max_age=self.max_age_s,
                                                    return_timestamp=True)
        except (SignatureExpired, BadSignature):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("u"), str):
            return None
        user = store.users.get(data["u"])
        if user is None or user.password_stamp != data.get("p"):
            return None
        return user, issued.timestamp()

    def expired(self, since: float, now: float | None = None) -> bool:
        """Whether a session that began at ``since`` (epoch seconds) is past its hours."""
        return (time.time() if now is None else now) - since > self.max_age_s


#: ID-token claims that name the account of a single sign-on user, in the order tried.
SSO_NAME_CLAIMS = ("email", "preferred_username", "sub")


def sso_account_name(claims: dict[str, object]) -> str | None:
    """The workspace account a single sign-on identity maps to: its e-mail address (unless the
    provider says it is not verified), else its preferred user name, else its subject id (the
    first that is non-empty text); None when the provider sent none of them. E-mail addresses
    compare case-insensitively, so they are lower-cased; the account must be created under
    that name (``padim users add NAME --sso``)."""
    for claim in SSO_NAME_CLAIMS:
        if claim == "email" and claims.get("email_verified") is False:
            continue             # an address the provider has not checked names nobody
        value = claims.get(claim)
        if isinstance(value, str) and value.strip():
            value = value.strip()
            return value.lower() if claim == "email" else value
    return None


__all__ = ["COOKIE_NAME", "SECRET_ENV", "SIGN_IN_ENV", "SSO_NAME_CLAIMS", "SessionCookies",
           "ensure_secret", "is_loopback", "load_secret", "not_ready", "session_seconds",
           "sign_in_required", "sso_account_name"]
