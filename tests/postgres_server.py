"""A throw-away PostgreSQL cluster for the store tests: ``initdb`` + ``pg_ctl`` from Debian's
``postgresql`` package (``make postgresql`` installs it), on a free loopback port, trust
authentication, fsync off; stopped and deleted afterwards. No mock database.

PostgreSQL refuses to run as root, so under root the cluster belongs to the ``postgres``
user the Debian package creates and its commands run through ``runuser``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from streamlit_server import free_port

SUPERUSER = "padim"


def pg_bin() -> Path:
    """The folder with initdb and pg_ctl (``$PG_BIN``, else the newest Debian install)."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    raise RuntimeError("PostgreSQL server binaries not found: run `make postgresql` "
                       "(apt-get install -y postgresql) or set PG_BIN")


def _as_owner(cmd: list[str], owner: str | None) -> list[str]:
    return ["runuser", "-u", owner, "--", *cmd] if owner else cmd


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Start a cluster; yields an admin URL (``postgresql+psycopg://padim@127.0.0.1:PORT/
    postgres``); stops and deletes it on exit."""
    bindir = pg_bin()
    owner = None
    if os.geteuid() == 0:
        owner = "postgres"
        pwd.getpwnam(owner)  # KeyError if the package did not create its user
    base = Path(tempfile.mkdtemp(prefix="padim-pg-"))
    base.chmod(0o755)
    data, sock = base / "data", base / "sock"
    for d in (data, sock):
        d.mkdir()
        if owner:
            shutil.chown(d, owner, owner)
    port = free_port()
    log = base / "server.log"
    log.touch()
    if owner:
        shutil.chown(log, owner, owner)
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    try:
        subprocess.run(_as_owner([str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER,
                                  "--auth=trust", "-E", "UTF8", "--no-sync"], owner),
                       check=True, capture_output=True, env=env, timeout=120)
        options = (f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
        subprocess.run(_as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log),
                                  "-o", options, "-w", "-t", "60", "start"], owner),
                       check=True, capture_output=True, env=env, timeout=90)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        detail = getattr(err, "stderr", b"") or b""
        server_log = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"could not start PostgreSQL: {detail.decode(errors='replace')}"
                           f"\n{server_log}") from None
    try:
        yield f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                                  "-w", "stop"], owner), capture_output=True, env=env,
                       timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def fresh_database(admin_url: str) -> str:
    """A new empty database on the cluster; returns its URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)
