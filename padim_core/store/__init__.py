"""The workspace store: model library and inspection history in a real database.

    from padim_core.store import Store
    with Store.open("inspector-data") as store:          # or PADIM_DATABASE_URL
        v = store.library.save(model, "transistor line 3")
        model = store.library.load(store.library.resolve("transistor line 3@1"))
        store.history.record([NewInspection(...)])
"""

from .audit import ACTIONS, Audit, AuditEvent
from .blobs import DAMAGED, MISSING, OK
from .errors import BlobUnavailableError, NotFoundError, SchemaTooNewError, StoreError
from .history import DECISIONS, VERDICTS, Filters, History, Inspection, NewInspection, new_batch
from .library import (
    Library,
    ModelEntry,
    ModelVersion,
    check_name,
    fitted_fingerprint,
    parse_ref,
    training_fingerprint,
)
from .store import DATA_DIR_ENV, DATABASE_URL_ENV, THUMBNAIL_CAP_ENV, Store
from .users import ROLES, ApiToken, LockedOutError, SignInError, User, Users

__all__ = [
    "ACTIONS", "Audit", "AuditEvent", "DAMAGED", "DATABASE_URL_ENV", "DATA_DIR_ENV",
    "DECISIONS", "MISSING", "OK",
    "ROLES", "THUMBNAIL_CAP_ENV", "VERDICTS", "ApiToken", "BlobUnavailableError", "Filters",
    "History", "Inspection", "Library", "LockedOutError", "ModelEntry", "ModelVersion",
    "NewInspection", "NotFoundError", "SchemaTooNewError", "SignInError", "Store", "StoreError",
    "User", "Users", "check_name", "fitted_fingerprint", "new_batch", "parse_ref",
    "training_fingerprint",
]
