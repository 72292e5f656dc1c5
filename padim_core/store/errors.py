"""Errors of the workspace store, each one line naming what is wrong (CLI and app print it)."""

from __future__ import annotations

from ..errors import InvalidInputError, PadimError


class StoreError(PadimError):
    """The store cannot do what was asked (database unreachable, data dir not writable...)."""


class SchemaTooNewError(StoreError):
    """The database was written by a newer version of this program; it is never touched."""


class NotFoundError(InvalidInputError, LookupError):
    """No model, version or history row of that name / number."""


class BlobUnavailableError(StoreError):
    """A version's model file is missing from the data dir or its bytes no longer match."""

    def __init__(self, ref: str, status: str, path: str) -> None:
        self.ref, self.status, self.path = ref, status, path
        # status is "file missing" or "damaged": "model file missing", "model file damaged"
        super().__init__(f"{ref}: model file {status.removeprefix('file ')} ({path})")
