"""The access commands of ``padim``: ``users add|list|remove|passwd|role``, ``tokens
add|list|revoke`` and ``access check --host H`` (what ``make run`` asks before it starts).

Passwords are never taken as arguments (they would stay in the shell history and in
``ps``): they are prompted for twice on a terminal, or read as the first line of stdin.
"""

from __future__ import annotations

import argparse
import getpass
import os
import secrets
import sys
from collections.abc import Callable
from typing import Any

from .access import ensure_secret, is_loopback, not_ready, secret_path
from .errors import InvalidInputError
from .store import DATABASE_URL_ENV, ROLES, Store
from .store.store import resolve_data_dir
from .store_commands import cli_user

COMMANDS = ("users", "tokens", "access")


def add_parsers(sub: Any) -> None:
    """``padim users ...``, ``padim tokens ...`` and ``padim access check``."""
    from .store_commands import add_data_dir

    users = sub.add_parser("users", help="accounts for the app's sign-in: add, list, "
                                         "remove, passwd, role",
                           description="Accounts and roles (operator < engineer < admin).")
    users.set_defaults(progress=False)
    actions = users.add_subparsers(dest="action", metavar="ACTION")
    p = actions.add_parser("add", help="add an account (password prompted, or stdin's first "
                                       "line); also makes the session secret if missing")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--role", choices=ROLES, default="operator",
                   help="operator (default): inspect, decide; engineer: also train, save "
                        "thresholds; admin: also delete, rename, manage users")
    p.add_argument("--sso", action="store_true",
                   help="signs in through single sign-on only (NAME = the e-mail address the "
                        "identity provider sends); no password is asked or usable")
    add_data_dir(p)
    p = actions.add_parser("list", help="every account with its role")
    add_data_dir(p)
    p = actions.add_parser("remove", help="remove an account (never the last admin)")
    p.add_argument("name", metavar="NAME")
    add_data_dir(p)
    p = actions.add_parser("passwd", help="set a new password (ends the user's sessions "
                                          "and lock-out)")
    p.add_argument("name", metavar="NAME")
    add_data_dir(p)
    p = actions.add_parser("role", help="change an account's role")
    p.add_argument("name", metavar="NAME")
    p.add_argument("role", choices=ROLES)
    add_data_dir(p)

    tokens = sub.add_parser("tokens", help="bearer tokens for padim serve: add, list, revoke",
                            description="API tokens for 'padim serve' (Authorization: "
                                        "Bearer TOKEN).")
    tokens.set_defaults(progress=False)
    actions = tokens.add_subparsers(dest="action", metavar="ACTION")
    p = actions.add_parser("add", help="make a token (printed once; only its hash is kept)")
    p.add_argument("name", metavar="NAME", help="what the token is for, e.g. 'line 3 PLC'")
    p.add_argument("--by", default="", metavar="USER",
                   help="who made it (kept with it; default: your login name, marked (cli))")
    add_data_dir(p)
    p = actions.add_parser("list", help="every token: name, prefix, made when/by, revoked")
    add_data_dir(p)
    p = actions.add_parser("revoke", help="revoke a token by name")
    p.add_argument("name", metavar="NAME")
    add_data_dir(p)

    check = sub.add_parser("access", help="check that the app may start on an address",
                           description="Exit 0 when the app may serve on HOST: a loopback "
                                       "address, or a workspace ready for sign-in.")
    check.set_defaults(progress=False)
    actions = check.add_subparsers(dest="action", metavar="ACTION")
    p = actions.add_parser("check", help="may the app serve on --host?")
    p.add_argument("--host", required=True)
    add_data_dir(p)


def _say(line: str) -> None:
    from .cli import _say as say

    say(line)


def read_password(prompt: str = "Password") -> str:
    """Twice from the terminal (must match), or the first line of stdin when it is piped."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(f"{prompt}: ")
    if getpass.getpass(f"{prompt} again: ") != first:
        raise InvalidInputError("password", "the two entries differ")
    return first


def run(args: argparse.Namespace) -> int:
    """``padim users|tokens|access ...``; returns the exit code."""
    from .store_commands import open_store

    if args.action is None:
        from .cli import UsageError

        raise UsageError(f"{args.command}: give an action (see 'padim {args.command} --help')")
    if args.command == "access" and is_loopback(args.host):
        _say(f"{args.host} is a loopback address: only this machine can connect; no sign-in.")
        return 0
    if args.command == "access" and not _workspace_exists(args):
        # A check must not make a workspace (run in the wrong folder, it left one there).
        where = resolve_data_dir(getattr(args, "data_dir", None))
        print(f"padim: error: refusing to serve on {args.host}. There is no workspace at "
              f"{where}: make the first admin with: padim users add NAME --role admin "
              f"--data-dir {where}", file=sys.stderr)
        return 2
    with open_store(args) as store:
        handler = {("users", "add"): _users_add, ("users", "list"): _users_list,
                   ("users", "remove"): _users_remove, ("users", "passwd"): _users_passwd,
                   ("users", "role"): _users_role, ("tokens", "add"): _tokens_add,
                   ("tokens", "list"): _tokens_list, ("tokens", "revoke"): _tokens_revoke,
                   ("access", "check"): _access_check}[(args.command, args.action)]
        return handler(store, args)


def _users_add(store: Store, args: argparse.Namespace) -> int:
    if args.sso:
        # A random password nobody is told: the account exists for its role, and the
        # password form can never open it.
        user = store.users.add(args.name.strip().lower() if "@" in args.name else args.name,
                               secrets.token_urlsafe(48), args.role, by=cli_user())
        _say(f"added {user.name} ({user.role}), single sign-on only")
    else:
        user = store.users.add(args.name, read_password(), args.role, by=cli_user())
        _say(f"added {user.name} ({user.role})")
    if ensure_secret(store):
        _say(f"made the session secret {secret_path(store)} (keep it private)")
    return 0


def _users_list(store: Store, args: argparse.Namespace) -> int:
    users = store.users.list()
    if not users:
        _say(f"no users in {store.data_dir} (padim users add NAME --role admin)")
        return 0
    _say(f"{'NAME':<30} {'ROLE':<9} {'CREATED (UTC)':<17} LAST SIGN-IN (UTC)")
    for u in users:
        last = f"{u.last_sign_in_at:%Y-%m-%d %H:%M}" if u.last_sign_in_at else "never"
        _say(f"{u.name:<30} {u.role:<9} {u.created_at:%Y-%m-%d %H:%M} {last}")
    return 0


def _users_remove(store: Store, args: argparse.Namespace) -> int:
    store.users.remove(args.name, by=cli_user())
    _say(f"removed {args.name.strip()}; what they did keeps their name")
    return 0


def _users_passwd(store: Store, args: argparse.Namespace) -> int:
    user = store.users.set_password(args.name, read_password("New password"), by=cli_user())
    store.users.clear_failures(user.name)
    _say(f"new password set for {user.name}; their other sessions have ended")
    return 0


def _users_role(store: Store, args: argparse.Namespace) -> int:
    user = store.users.set_role(args.name, args.role, by=cli_user())
    _say(f"{user.name} is now {user.role}")
    return 0


def _tokens_add(store: Store, args: argparse.Namespace) -> int:
    token, info = store.users.add_token(args.name, args.by or cli_user())
    _say(f"token {info.name!r} (shown only now; send it as 'Authorization: Bearer TOKEN'):")
    print(token)
    return 0


def _tokens_list(store: Store, args: argparse.Namespace) -> int:
    tokens = store.users.tokens()
    if not tokens:
        _say("no API tokens (padim tokens add NAME)")
        return 0
    _say(f"{'NAME':<30} {'PREFIX':<11} {'CREATED (UTC)':<17} {'BY':<16} STATUS")
    for t in tokens:
        status = "active" if t.active else f"revoked {t.revoked_at:%Y-%m-%d %H:%M}"
        _say(f"{t.name:<30} {t.prefix:<11} {t.created_at:%Y-%m-%d %H:%M} "
             f"{t.created_by or '-':<16} {status}")
    return 0


def _tokens_revoke(store: Store, args: argparse.Namespace) -> int:
    info = store.users.revoke_token(args.name, by=cli_user())
    _say(f"revoked token {info.name!r}; requests with it now get 401")
    return 0


def _workspace_exists(args: argparse.Namespace) -> bool:
    """Whether the workspace is there: a database URL was given, or the data dir exists."""
    return bool(os.environ.get(DATABASE_URL_ENV)) or \
        resolve_data_dir(getattr(args, "data_dir", None)).is_dir()


def _access_check(store: Store, args: argparse.Namespace) -> int:
    problem = not_ready(store)
    if problem is not None:
        print(f"padim: error: refusing to serve on {args.host}. {problem}", file=sys.stderr)
        return 2
    _say(f"{args.host}: sign-in required; {store.users.count()} account(s) in "
         f"{store.data_dir}")
    return 0


def token_checker(args: argparse.Namespace) -> Callable[[str], bool] | None:
    """For ``padim serve``: None (no token asked) on a loopback ``--host`` without
    ``--require-token``; otherwise a check against the workspace's active API tokens. Refuses
    (InvalidInputError) when tokens are needed and the workspace has none."""
    from .store_commands import open_store

    if is_loopback(args.host) and not args.require_token:
        return None
    where = "--require-token" if is_loopback(args.host) else f"--host {args.host}"
    if not _workspace_exists(args):     # refusing must not leave a workspace behind
        raise InvalidInputError(
            where, f"API tokens are required and there is no workspace at "
                   f"{resolve_data_dir(getattr(args, 'data_dir', None))}; give --data-dir, "
                   "or make a token there with: padim tokens add NAME")
    store = open_store(args)   # open for the server's lifetime: each request checks it
    if store.users.active_tokens() == 0:
        store.close()
        raise InvalidInputError(
            where, f"API tokens are required and the workspace {store.data_dir} has none; "
                   "make one with: padim tokens add NAME")

    def check(token: str) -> bool:
        return store.users.verify_token(token) is not None

    return check
