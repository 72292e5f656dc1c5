"""Opening the database: the engine for a URL, SQLite set up for several writers, and the
schema brought to this program's revision with Alembic (a newer one is refused).

SQLite (the default) runs in WAL mode, so readers never wait for a writer, with a busy
timeout so a writer waits for the other writers instead of failing with "database is
locked". Python's sqlite3 would open a write transaction lazily, at the first INSERT, and a
transaction that read before it wrote can then fail at once; so transaction control is taken
over here (the recipe in SQLAlchemy's SQLite notes) and writes begin with ``BEGIN
IMMEDIATE``: they queue for the write lock before reading anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from .errors import SchemaTooNewError, StoreError

MIGRATIONS = Path(__file__).with_name("migrations")
#: How long a writer waits for another writer's lock (SQLite) before giving up.
BUSY_TIMEOUT_S = 60.0
_WRITE = "padim_write"
#: PostgreSQL advisory lock key that serializes concurrent schema upgrades.
_MIGRATION_LOCK = 0x7061_6469_6D00


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout, foreign keys and explicit
    BEGIN (IMMEDIATE for writes)."""
    try:
        parsed = make_url(url)
    except ArgumentError as err:
        raise StoreError(f"database URL {url!r}: {err}") from None
    if parsed.get_backend_name() != "sqlite":
        try:
            return create_engine(parsed, pool_pre_ping=True)
        except (ArgumentError, ImportError) as err:
            raise StoreError(f"database URL {parsed.render_as_string()}: {err}") from None
    engine = create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (below)
        cur = dbapi_connection.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        cur.execute("PRAGMA foreign_keys = ON")
        if parsed.database not in (None, "", ":memory:"):
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")  # durable at checkpoints, safe in WAL
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


class Database:
    """An engine and two session factories: ``reading()`` and ``writing()``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(engine.execution_options(**{_WRITE: True}),
                                   expire_on_commit=False)

    @contextmanager
    def reading(self) -> Iterator[Session]:
        with self._read() as session, _database_errors(self.engine):
            yield session

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """A session whose transaction commits on leaving the block (rolls back on error)."""
        with self._write() as session, _database_errors(self.engine), session.begin():
            yield session

    def close(self) -> None:
        self.engine.dispose()


@contextmanager
def _database_errors(engine: Engine) -> Iterator[None]:
    """Driver errors that are not about the caller's data become one-line StoreErrors."""
    from sqlalchemy.exc import IntegrityError, OperationalError

    try:
        yield
    except IntegrityError:
        raise   # the callers turn these into messages about names and versions
    except OperationalError as err:
        raise StoreError(f"database {safe_url(engine)}: {_first_line(err.orig)}") from None


#: Driver messages → what a user can do about them.
_HINTS = {"readonly": "the data dir or the database file is not writable",
          "unable to open database file": "the data dir is missing or not writable",
          "disk is full": "free some disk space", "database or disk is full": "free some space",
          "connection refused": "is the database server running, on that host and port?"}


def _first_line(err: BaseException | None) -> str:
    """The driver's first line, with a hint when there is an obvious one."""
    text_ = str(err or "").strip().splitlines()
    line = text_[0] if text_ else type(err).__name__
    hint = next((h for key, h in _HINTS.items() if key in line.lower()), None)
    return f"{line} ({hint})" if hint else line


def safe_url(engine_or_url: Engine | str) -> str:
    """The URL with any password hidden (for messages and logs)."""
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else make_url(engine_or_url)
    return url.render_as_string(hide_password=True)


def _alembic_config(connection: Any) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The schema revision this program writes."""
    head = ScriptDirectory.from_config(_alembic_config(None)).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The schema revision stored in the database (None: empty database)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> str:
    """Bring the schema to this program's head; refuse a database from a newer program.

    Concurrent openers of a new database serialize: SQLite through BEGIN IMMEDIATE, PostgreSQL
    through a transaction-level advisory lock, so the second one finds the schema done.
    """
    script = ScriptDirectory.from_config(_alembic_config(None))
    head = script.get_current_head()
    try:
        found = current_revision(engine)
        if found == head:
            return head
        _refuse_unknown(script, found, engine)
        with engine.execution_options(**{_WRITE: True}).begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            command.upgrade(_alembic_config(conn), "head")
    except SQLAlchemyError as err:
        raise StoreError(f"database {safe_url(engine)}: "
                         f"{_first_line(getattr(err, 'orig', None) or err)}") from None
    return str(head)


def _refuse_unknown(script: ScriptDirectory, found: str | None, engine: Engine) -> None:
    if found is None:
        return
    known = {rev.revision for rev in script.walk_revisions()}
    if found not in known:
        raise SchemaTooNewError(
            f"database {safe_url(engine)}: its schema revision {found!r} is newer than this "
            f"program knows (up to {script.get_current_head()!r}); upgrade padim-inspector, or "
            "open another data dir. Nothing was changed.")
