"""Sign-in for the app, and the one role check every shared-state action calls.

Two modes (``padim_core.access``): on a loopback address the person at this machine acts as
admin without signing in (as before); on a network address ``gate()`` shows a sign-in form
until somebody signs in, keeps them signed in across reloads with a signed, expiring cookie,
and re-reads their account on every run (a removed user or a changed role applies at once).

With an ``[auth]`` section in Streamlit's secrets (an OpenID Connect provider), the sign-in
form also offers single sign-on (``st.login``): the provider says who the person is, and the
workspace's account of that name (``padim users add NAME --sso``) gives the role.

``require_role`` is called inside the actions themselves (``actions``, ``workspace``), so an
operator's session is refused on the server even if a hidden button were triggered; the pages
also leave out what the role may not do (``allowed``).
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass

import streamlit as st

from padim_core import access as policy
from padim_core.errors import PadimError
from padim_core.store import LockedOutError, SignInError, Store, User

from .text import code, md

#: Session keys (server side; no widget uses them): the signed-in user, and "signed out in
#: this tab" (the browser's cookie is then ignored for the rest of the session).
USER_KEY = "_access_user"
SIGNED_OUT_KEY = "_access_signed_out"
#: The cookie (value, max age) this session issued: set again on every run while signed in,
#: since a script element of one run may not reach the browser before the next run.
COOKIE_KEY = "_access_cookie"
#: Set when the session's user came through single sign-on (Sign out then also ends that),
#: and the account name a single sign-on identity asked for when the workspace had none.
SSO_KEY = "_access_sso"
SSO_REFUSED_KEY = "_access_sso_refused"
#: Set when this tab's session ran past PADIM_SESSION_HOURS (the sign-in form says so).
EXPIRED_KEY = "_access_expired"
ROLE_WORDS = {"operator": "operators (and above)", "engineer": "engineers and admins",
              "admin": "admins"}


class AccessDeniedError(PadimError):
    """The signed-in user's role may not do this; the text says who may."""


@dataclass(frozen=True)
class Viewer:
    """Who is using this session: a signed-in user, or the local user on loopback."""

    name: str
    role: str
    signed_in: bool

    def may(self, role: str) -> bool:
        from padim_core.store.users import role_rank

        return role_rank(self.role) >= role_rank(role)


def required() -> bool:
    """Whether this server asks for sign-in (its bound address, ``PADIM_SIGN_IN``)."""
    return policy.sign_in_required(st.get_option("server.address"))


def viewer() -> Viewer | None:
    """The session's user: the signed-in one, the local admin when no sign-in is asked for,
    None when sign-in is required and nobody has signed in."""
    if not required():
        return Viewer("", "admin", signed_in=False)
    found = st.session_state.get(USER_KEY)
    return Viewer(found[0], found[1], signed_in=True) if found else None


def allowed(role: str) -> bool:
    """True when the session's user has ``role`` or above (for showing buttons)."""
    who = viewer()
    return who is not None and who.may(role)


def require_role(role: str, action: str = "") -> Viewer:
    """The session's user when they may do ``action`` (needs ``role`` or above); otherwise
    AccessDeniedError naming the action and who may do it. Called by every shared-state
    action."""
    who = viewer()
    prefix = f"{action}: " if action else ""
    if who is None:
        raise AccessDeniedError(f"{prefix}sign in first.")
    if not who.may(role):
        raise AccessDeniedError(f"{prefix}not allowed for {who.name} ({who.role}); only "
                                f"{ROLE_WORDS[role]} may do this.")
    return who


def actor(typed_name: str = "") -> str:
    """The name to record on history rows and versions: the signed-in user's, else what the
    local user typed as "Your name"."""
    who = viewer()
    return who.name if who is not None and who.signed_in else str(typed_name)


def _address() -> str:
    addr = getattr(st.context, "ip_address", None)
    return addr if isinstance(addr, str) else ""


def _cookie_script(value: str, max_age_s: int) -> str:
    """JavaScript that sets (or, with max_age 0, deletes) the session cookie."""
    cookie = f"{policy.COOKIE_NAME}={value}; Path=/; Max-Age={max_age_s}; SameSite=Strict"
    return ("<script>document.cookie = " + json.dumps(cookie)
            + " + (location.protocol === 'https:' ? '; Secure' : '');</script>")


def sign_in(store: Store, name: str, password: str) -> User:
    """Check the password (with lock-out) and make the session the user's; SignInError with
    the message to show otherwise."""
    user = store.users.authenticate(name, password, _address())
    _keep(user, time.time())
    st.session_state.pop(SIGNED_OUT_KEY, None)
    return user


def _keep(user: User, since: float) -> None:
    """Make ``user`` the session's, signed in at ``since`` (epoch seconds)."""
    st.session_state[USER_KEY] = (user.name, user.role, user.password_stamp, since)


def sso_configured() -> bool:
    """Whether Streamlit's secrets configure an identity provider (an ``[auth]`` section)."""
    try:
        return "auth" in st.secrets
    except Exception:          # no secrets file at all: Streamlit raises rather than says no
        return False


def sso_providers() -> list[str]:
    """Named providers (``[auth.NAME]`` sections); empty for the single default provider."""
    auth = st.secrets["auth"]
    return [name for name in auth if hasattr(auth[name], "keys")]


def _sso_user(store: Store) -> User | None:
    """The workspace account of the identity the provider signed in, if it has one; else
    None, noting the refused name for the sign-in form."""
    if not st.user.is_logged_in:
        return None
    name = policy.sso_account_name(st.user.to_dict())
    user = store.users.get(name) if name else None
    if user is None:
        st.session_state[SSO_REFUSED_KEY] = name or "(the provider sent no e-mail or name)"
    else:
        st.session_state[SSO_KEY] = True
        st.session_state.pop(SSO_REFUSED_KEY, None)
    return user


def _restore(store: Store, cookies: policy.SessionCookies) -> None:
    """Re-check the session's user against the store and the session hours (an open tab
    ends when its cookie would); or sign in from the cookie."""
    found = st.session_state.get(USER_KEY)
    if found:
        user = store.users.get(found[0])
        since = found[3] if len(found) > 3 else time.time()
        expired = cookies.expired(since)
        if user is None or user.password_stamp != found[2] or expired:
            st.session_state.pop(USER_KEY, None)   # removed, password changed, too old
            st.session_state.pop(COOKIE_KEY, None)
            if expired:
                st.session_state[EXPIRED_KEY] = True
        else:
            _keep(user, since)
        return
    if st.session_state.get(SIGNED_OUT_KEY):
        return
    restored = cookies.session(st.context.cookies.get(policy.COOKIE_NAME), store)
    if restored is None and sso_configured():
        user = _sso_user(store)
        restored = None if user is None else (user, time.time())
    if restored is not None:
        _keep(*restored)


def _sign_in_form(store: Store, cookies: policy.SessionCookies) -> bool:
    """The sign-in form; True once this run signed somebody in (the cookie is set)."""
    holder = st.empty()
    with holder.container():
        st.title("PaDiM Inspector")
        st.caption("This server is shared on the network: sign in to continue.")
        if st.session_state.get(EXPIRED_KEY):
            st.info(f"Your session ended after {cookies.max_age_s / 3600:g} hour(s) "
                    f"({policy.SESSION_HOURS_ENV}): sign in again.", icon=":material/timer_off:")
        with st.form("access_sign_in"):
            name = st.text_input("User name", key="access_name", max_chars=200)
            password = st.text_input("Password", type="password", key="access_password")
            go = st.form_submit_button("Sign in", type="primary", key="access_submit")
        if sso_configured():
            _sso_buttons()
        if not go:
            return False
        try:
            user = sign_in(store, name, password)
        except LockedOutError as err:
            st.error(md(err), icon=":material/lock_clock:")
            return False
        except (SignInError, PadimError) as err:
            st.error(md(err), icon=":material/error:")
            return False
    holder.empty()
    st.session_state.pop(EXPIRED_KEY, None)
    st.session_state[COOKIE_KEY] = (cookies.issue(user), int(cookies.max_age_s))
    return True


def _sso_buttons() -> None:
    """Single sign-on: one button per configured provider, and why a provider's identity was
    not let in (no account of that name in this workspace)."""
    refused = st.session_state.get(SSO_REFUSED_KEY)
    if refused:
        # The provider's name is anybody's text: escaped, and verbatim in the command to copy.
        command = code(f"padim users add {shlex.quote(refused)} --sso --role operator")
        st.error(f"Signed in by the identity provider as **{md(refused)}**, but this workspace "
                 f"has no account of that name: ask an admin to add it ({command}).",
                 icon=":material/person_off:")
        if st.button("Sign out of single sign-on", key="access_sso_logout"):
            st.session_state.pop(SSO_REFUSED_KEY, None)
            st.logout()
        return
    providers = sso_providers()
    for name in providers or [None]:
        label = f"Sign in with {md(name)}" if name else "Sign in with single sign-on"
        if st.button(label, key=f"access_sso_{name or 'default'}"):
            st.login(name) if name else st.login()


def _signed_in_corner() -> bool:
    """Who is signed in and a Sign out button, in the sidebar (with this session's cookie,
    set again); True when Sign out was clicked."""
    name, role = st.session_state[USER_KEY][:2]
    corner = st.sidebar.empty()
    with corner.container():
        st.caption(f"Signed in as **{md(name)}** ({role})")
        clicked = st.button("Sign out", key="access_sign_out")
        if COOKIE_KEY in st.session_state:
            st.html(_cookie_script(*st.session_state[COOKIE_KEY]),
                    unsafe_allow_javascript=True)
    if clicked:
        corner.empty()
    return clicked


def gate() -> bool:
    """Run first in every run of the app: True when the page may be shown. Without sign-in
    required, always True. Otherwise the sidebar shows who is signed in with a Sign out
    button, or the sign-in form is drawn and False returned; a workspace not ready for
    sign-in (no admin, no secret) is one error naming what to do."""
    if not required():
        return True
    from .workspace import get_store

    store = get_store()
    try:
        problem = policy.not_ready(store)
        cookies = policy.SessionCookies(str(policy.load_secret(store)),
                                        policy.session_seconds())
    except PadimError as err:
        problem = str(err)
    if problem is not None:
        st.error(md(problem), icon=":material/lock:")
        return False
    _restore(store, cookies)
    if USER_KEY in st.session_state:
        if not _signed_in_corner():
            return True
        st.session_state.pop(USER_KEY, None)
        st.session_state.pop(COOKIE_KEY, None)
        st.session_state[SIGNED_OUT_KEY] = True
        if st.session_state.pop(SSO_KEY, False):
            st.logout()            # ends the provider's sign-in too (a fresh session follows)
    if st.session_state.get(SIGNED_OUT_KEY):   # every run, for the same reason as above
        st.sidebar.html(_cookie_script("", 0), unsafe_allow_javascript=True)
    if not _sign_in_form(store, cookies):
        return False
    _signed_in_corner()
    return True


__all__ = ["AccessDeniedError", "Viewer", "actor", "allowed", "gate", "require_role", "required",
           "sign_in", "sso_configured", "viewer"]
