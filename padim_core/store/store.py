"""``Store``: one workspace (model library + inspection history) opened from a data dir or a
database URL. No Streamlit, no web framework: the app, the CLI and later services share it.

Where things live:
  data dir  ``--data-dir`` / ``PADIM_DATA_DIR`` / ``./inspector-data``, created on first use:
            ``inspector.db`` (SQLite, the default database) and ``blobs/`` (model files).
  database  ``PADIM_DATABASE_URL`` (any SQLAlchemy URL, e.g.
            ``postgresql+psycopg://user:pass@host/db``) instead of the SQLite file; model
            files stay in the data dir.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from filelock import Timeout

from ..errors import InvalidInputError
from .audit import Audit
from .blobs import PRIVATE_FILE, BlobStore, describe_os_error
from .database import Database, head_revision, make_engine, safe_url, upgrade
from .errors import StoreError
from .history import DEFAULT_THUMBNAIL_CAP_MB, History
from .library import Library
from .users import Users

DATA_DIR_ENV = "PADIM_DATA_DIR"
DATABASE_URL_ENV = "PADIM_DATABASE_URL"
THUMBNAIL_CAP_ENV = "PADIM_THUMBNAIL_CAP_MB"
DEFAULT_DATA_DIR = "inspector-data"
SQLITE_FILE = "inspector.db"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data dir: the argument, else ``PADIM_DATA_DIR``, else ``./inspector-data``."""
    chosen = data_dir if data_dir not in (None, "") else os.environ.get(DATA_DIR_ENV) \
        or DEFAULT_DATA_DIR
    return Path(chosen).expanduser().absolute()


def resolve_url(data_dir: Path, url: str | None = None) -> str:
    """The database URL: the argument, else ``PADIM_DATABASE_URL``, else SQLite in the data
    dir."""
    chosen = url or os.environ.get(DATABASE_URL_ENV)
    return chosen if chosen else f"sqlite:///{data_dir / SQLITE_FILE}"


def _create_private(path: Path) -> None:
    """An empty file readable by its owner only, unless it exists (SQLite opens an empty
    file as a new database; left to itself it would create it 0644)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE))


def _thumbnail_cap(cap_bytes: int | None) -> int:
    if cap_bytes is not None:
        return int(cap_bytes)
    raw = os.environ.get(THUMBNAIL_CAP_ENV)
    if not raw:
        return DEFAULT_THUMBNAIL_CAP_MB << 20
    try:
        mb = float(raw)
    except ValueError:
        mb = -1.0
    if mb < 0:
        raise InvalidInputError(THUMBNAIL_CAP_ENV, f"must be a number of MB >= 0, got {raw!r}")
    return int(mb * (1 << 20))


class Store:
    """The workspace: ``library`` (models, versions, files), ``history`` (inspections,
    decisions, thumbnails), ``users`` (accounts, roles, API tokens) and ``audit`` (who
    changed what). Thread-safe; open one per process and share it."""

    def __init__(self, data_dir: Path, db: Database, thumbnail_cap_bytes: int) -> None:
        self.data_dir = data_dir
        self._db = db
        self.blobs = BlobStore(data_dir / "blobs")
        self.library = Library(db, self.blobs)
        self.history = History(db, thumbnail_cap_bytes)
        self.users = Users(db)
        self.audit = Audit(db)

    @classmethod
    def open(cls, data_dir: str | os.PathLike | None = None, url: str | None = None, *,
             thumbnail_cap_bytes: int | None = None) -> Store:
        """Open (creating on first use) the workspace; the schema is upgraded to this
        program's revision, a newer one is refused (``SchemaTooNewError``). Temporary files
        left by a writer that died are removed."""
        root = resolve_data_dir(data_dir)
        chosen = resolve_url(root, url)
        try:   # a new workspace is its owner's only: password hashes, history, models
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
            (root / "blobs").mkdir(mode=0o700, exist_ok=True)
            if chosen == f"sqlite:///{root / SQLITE_FILE}":
                _create_private(root / SQLITE_FILE)   # SQLite's -wal / -shm take its mode
        except OSError as err:
            raise StoreError(describe_os_error(err, "create the data dir")) from None
        engine = make_engine(chosen)
        db = Database(engine)
        try:
            upgrade(engine)
            store = cls(root, db, _thumbnail_cap(thumbnail_cap_bytes))
            store.clean_up()
        except BaseException:
            db.close()
            raise
        return store

    def clean_up(self) -> tuple[int, int]:
        """Remove what a killed writer left: temporary files nobody is writing any more and
        model files no version names (a writer that died between file and row). Returns
        (temporary files, model files) removed; skipped on a read-only or busy data dir."""
        temporary = self.blobs.clean_temporary()
        try:
            with self.blobs.locked(timeout=0):
                used = self.library.file_hashes()
                orphans = [p for sha, p in self.blobs.files().items() if sha not in used]
                for path in orphans:
                    path.unlink(missing_ok=True)
        except (Timeout, StoreError, OSError):
            return temporary, 0
        return temporary, len(orphans)

    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return safe_url(self._db.engine)

    @property
    def schema_revision(self) -> str:
        return head_revision()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store(data_dir={str(self.data_dir)!r}, url={self.url!r})"
