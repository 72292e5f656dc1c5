"""Model files under the data dir, addressed by the sha256 of their bytes.

A file is written to ``blobs/tmp/<random>.part`` (locked while it is written), fsynced and
renamed to ``blobs/<ab>/<sha256>.safetensors`` before the database row that names it is
committed, so a row never points at half a file. A writer killed halfway leaves only its
temporary file; ``clean_temporary`` removes those nobody holds a lock on any more.

Saving a new file and deleting an unreferenced one hold ``blobs/.lock`` across "file +
database commit", so a delete can never remove a file another writer has just committed a
row for.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock

from .errors import StoreError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: open files cannot be deleted there anyway
    fcntl = None  # type: ignore[assignment]

SUFFIX = ".safetensors"
#: A temporary file younger than this is never cleaned (its writer may not hold the lock yet).
TEMP_GRACE_S = 2.0
_CHUNK = 1 << 20

OK, MISSING, DAMAGED = "ok", "file missing", "damaged"
#: Mode of the workspace's files: its owner's only (models, and the database with password
#: hashes and history images; the folders are 0700).
PRIVATE_FILE = 0o600

#: What ``BlobStore.staged`` writes: the file's bytes, or a function that hands them piece
#: by piece to the writer it is given.
FileContent = bytes | Callable[[Callable[[memoryview], None]], object]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def describe_os_error(err: OSError, action: str) -> str:
    """One line for a failed write: which file, and what a user can do about it."""
    reason = err.strerror or str(err)
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        reason += " (the disk or quota is full: free some space)"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason += " (the data dir is not writable)"
    return f"cannot {action} {err.filename or ''}: {reason}".replace("  ", " ")


class BlobStore:
    """Content-addressed model files in ``root`` (``<data dir>/blobs``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        # The lock stays unusable (and saving fails with a clear message) on a read-only dir.
        self._lock = FileLock(str(root / ".lock"))
        self._verified: dict[tuple[str, int, int], bool] = {}

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}{SUFFIX}"

    # ------------------------------------------------------------------ writing
    def prepare(self) -> None:
        """Create the folders (first use)."""
        self.tmp.mkdir(mode=0o700, parents=True, exist_ok=True)

    @contextmanager
    def locked(self, timeout: float = -1) -> Iterator[None]:
        """Hold the data dir's blob lock (save and delete both take it); ``timeout`` seconds
        (-1: wait for ever) before ``filelock.Timeout``."""
        try:
            self._lock.acquire(timeout=timeout)
        except OSError as err:
            raise StoreError(describe_os_error(err, "lock")) from None
        try:
            yield
        finally:
            self._lock.release()

    @contextmanager
    def staged(self, content: FileContent) -> Iterator[tuple[str, Path, int]]:
        """Write ``content`` to a locked, fsynced temporary file; yields (sha256, temp path,
        size). ``content`` is the bytes, or a function that hands the file's bytes piece by
        piece to the writer it is given (a model straight from its arrays: no copy of the
        whole file in memory); each piece is hashed as it is written.
        ``publish`` it inside the block; whatever is left is removed on leaving it."""
        try:
            self.prepare()
            path = self.tmp / f"{secrets.token_hex(8)}.part"
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE)
        except OSError as err:
            raise StoreError(describe_os_error(err, "write a model file in")) from None
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            digest = hashlib.sha256()
            size = 0

            def put(piece: memoryview) -> None:
                nonlocal size
                view = memoryview(piece).cast("B")
                digest.update(view)
                size += len(view)
                while view:
                    view = view[os.write(fd, view[:_CHUNK]):]

            try:
                if callable(content):
                    content(put)
                else:
                    put(memoryview(content))
                os.fsync(fd)
            except OSError as err:
                err.filename = err.filename or str(path)
                raise StoreError(describe_os_error(err, "write")) from None
            yield digest.hexdigest(), path, size
        finally:
            os.close(fd)
            path.unlink(missing_ok=True)

    def publish(self, sha256: str, staged: Path) -> Path:
        """Move a staged file to its content address (keeps an intact existing copy)."""
        final = self.path(sha256)
        try:
            final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if final.exists() and self.status(sha256, final.stat().st_size) == OK:
                staged.unlink()
                return final
            os.replace(staged, final)
            _fsync_dir(final.parent)
        except OSError as err:
            raise StoreError(describe_os_error(err, "store a model file in")) from None
        return final

    def remove(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def files(self) -> dict[str, Path]:
        """sha256 -> path of every stored model file."""
        return {p.stem: p for p in self.root.glob(f"??/*{SUFFIX}") if len(p.stem) == 64}

    def clean_temporary(self) -> int:
        """Delete temporary files whose writer is gone (its lock released); returns how many."""
        if not self.tmp.is_dir():
            return 0
        removed = 0
        for path in self.tmp.glob("*.part"):
            try:
                if time.time() - path.stat().st_mtime < TEMP_GRACE_S:
                    continue
                fd = os.open(path, os.O_RDWR)
            except OSError:
                continue
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                path.unlink()
                removed += 1
            except OSError:
                pass   # held by a live writer, or a read-only dir: leave it
            finally:
                os.close(fd)
        return removed

    # ------------------------------------------------------------------ reading
    def status(self, sha256: str, size: int, verify: bool = True) -> str:
        """``ok``, ``file missing`` or ``damaged`` (size, then - once per file state and
        BlobStore - the sha256 of its bytes)."""
        path = self.path(sha256)
        try:
            st = path.stat()
        except OSError:
            return MISSING
        if st.st_size != size:
            return DAMAGED
        if not verify:
            return OK
        key = (sha256, st.st_size, st.st_mtime_ns)
        if key not in self._verified:
            try:
                self._verified[key] = sha256_file(path) == sha256
            except OSError:
                return MISSING
        return OK if self._verified[key] else DAMAGED
