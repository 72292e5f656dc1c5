"""The audit trail: every change to shared state, who made it and when.

Roles decide who *may* delete a model, move its thresholds, manage accounts or change an
operator's decision; the trail says who *did*. Each store method that changes those things
takes the actor's name (``by=``; the app passes the signed-in user, the CLI the login name
marked "(cli)") and writes one row in the same transaction as the change, so there is no
change without its row and no row without its change. Rows are never edited or deleted by the
program. Read with ``store.audit.find`` / ``export_csv``, ``padim audit`` or the Models page
(admins).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from datetime import date, datetime
from typing import TextIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import InvalidInputError
from ..tables import spreadsheet_safe, write_text_file
from .database import Database
from .history import as_utc
from .tables import AuditRow, utcnow

#: What a row can record.
ACTIONS = {
    "model.add": "a model version was saved (trained, updated, accepted, imported, uploaded)",
    "model.delete": "a version or a whole model was deleted",
    "model.rename": "a model was renamed",
    "model.default": "the default version was set or cleared",
    "model.thresholds": "operating thresholds were saved or cleared on a version",
    "model.note": "a version's note was changed",
    "user.add": "an account was made",
    "user.remove": "an account was removed",
    "user.role": "an account's role changed",
    "user.password": "an account's password was set",
    "token.add": "an API token was made",
    "token.revoke": "an API token was revoked",
    "decision": "a decision on a history row was set, changed or cleared",
}
CSV_COLUMNS = ("id", "time_utc", "actor", "action", "target", "details")


@dataclass(frozen=True)
class AuditEvent:
    """One row of the trail."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: str


def log(session: Session, actor: str, action: str, target: str, details: str = "") -> None:
    """Add a row to ``session`` (the transaction of the change it records)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    session.add(AuditRow(at=utcnow(), actor=str(actor)[:200] or "(not named)", action=action,
                         target=str(target), details=str(details)))


class Audit:
    """The trail of one workspace (``Store.audit``): read-only here."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def find(self, since: datetime | date | None = None, action: str | None = None,
             actor: str | None = None, limit: int | None = None) -> list[AuditEvent]:
        """Rows newest first, from ``since`` (a date: its local midnight), of one action
        (or an action family such as ``"model"``) and/or one actor."""
        query = select(AuditRow).order_by(AuditRow.id.desc())
        if since is not None:
            query = query.where(AuditRow.at >= as_utc(since))
        if action is not None:
            if action not in ACTIONS and not any(a.startswith(f"{action}.") for a in ACTIONS):
                raise InvalidInputError("action", f"must be one of {', '.join(ACTIONS)} (or "
                                                  f"model, user, token), got {action!r}")
            query = query.where(AuditRow.action.startswith(action))
        if actor is not None:
            query = query.where(AuditRow.actor == actor)
        with self._db.reading() as s:
            return [AuditEvent(r.id, r.at, r.actor, r.action, r.target, r.details)
                    for r in s.scalars(query.limit(limit))]

    def export_csv(self, target: str | os.PathLike | TextIO,
                   since: datetime | date | None = None) -> int:
        """Write the rows (oldest first) as CSV; returns how many. Text that a spreadsheet
        would run as a formula gets a leading ``'``. A path is written atomically."""
        if isinstance(target, str | os.PathLike):
            return write_text_file(target, lambda fh: self.export_csv(fh, since))
        rows = list(reversed(self.find(since)))
        writer = csv.writer(target)
        writer.writerow(CSV_COLUMNS)
        for r in rows:
            writer.writerow([str(r.id), r.at.isoformat(timespec="seconds"),
                             spreadsheet_safe(r.actor), r.action, spreadsheet_safe(r.target),
                             spreadsheet_safe(r.details)])
        return len(rows)


__all__ = ["ACTIONS", "Audit", "AuditEvent", "log"]
