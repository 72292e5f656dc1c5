"""Inspection history: one row per inspected image, the operator's decision on it, and small
JPEGs of the image and its overlay.

Thumbnails share one size cap (default ``DEFAULT_THUMBNAIL_CAP_MB``, per workspace
``PADIM_THUMBNAIL_CAP_MB``): when a new row pushes them over it, the oldest thumbnails are
dropped; the rows themselves are kept.
"""

from __future__ import annotations

import csv
import io
import math
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any, TextIO

import numpy as np
from sqlalchemy import Select, delete, func, select

from ..errors import InvalidInputError
from ..tables import spreadsheet_safe, write_text_file
from ..thresholds import is_ng
from .database import Database
from .errors import NotFoundError
from .tables import InspectionRow, ModelRow, ThumbnailRow, VersionRow, utcnow

#: Default size cap of all thumbnails together, in MB (MiB).
DEFAULT_THUMBNAIL_CAP_MB = 2048
#: Stored value → words shown to people.
DECISIONS = {"confirmed_defect": "confirmed defect", "false_alarm": "false alarm",
             "missed_defect": "missed defect"}
VERDICTS = ("OK", "NG")
#: Longest side of a thumbnail in pixels, and its JPEG quality.
THUMBNAIL_SIDE = 256
THUMBNAIL_QUALITY = 80
CSV_COLUMNS = ("id", "time_utc", "file_name", "image_sha256", "model_name", "model_version",
               "score", "normalized_score", "image_threshold", "pixel_threshold", "verdict",
               "decision", "comment", "decided_by", "decided_at_utc", "operator", "batch")


def new_batch() -> str:
    """A fresh batch id: the rows of one inspection run share it."""
    return uuid.uuid4().hex


def thumbnail_jpeg(image: np.ndarray | bytes | None) -> bytes | None:
    """A small JPEG of an HxW(x3) uint8 image or of encoded image bytes (PNG, JPEG...)."""
    if image is None:
        return None
    from PIL import Image

    if isinstance(image, bytes):
        with Image.open(io.BytesIO(image)) as src:
            pic = src.convert("RGB")
    else:
        arr = np.asarray(image)
        if arr.dtype != np.uint8:
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        pic = Image.fromarray(arr).convert("RGB")
    pic.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    buf = io.BytesIO()
    pic.save(buf, format="JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    return buf.getvalue()


@dataclass
class NewInspection:
    """What to record for one inspected image. ``verdict`` None: derived from the score and
    ``image_threshold`` by the one verdict rule (``thresholds.is_ng``)."""

    file_name: str
    score: float
    model_name: str
    model_version: int | None
    image_threshold: float
    pixel_threshold: float
    image_sha256: str = ""
    verdict: str | None = None
    operator: str = ""
    version_id: int | None = None
    image: np.ndarray | bytes | None = None
    overlay: np.ndarray | bytes | None = None
    inspected_at: datetime | None = None
    #: The run it belongs to (``new_batch()``); "" puts it in one batch per ``record`` call.
    batch: str = ""


@dataclass(frozen=True)
class Inspection:
    """One history row as read back."""

    id: int
    inspected_at: datetime
    file_name: str
    image_sha256: str
    model_name: str
    model_version: int | None
    version_id: int | None
    score: float
    normalized_score: float
    image_threshold: float
    pixel_threshold: float
    verdict: str
    operator: str
    decision: str | None
    comment: str
    decided_by: str
    decided_at: datetime | None
    batch: str = ""

    @property
    def model_ref(self) -> str:
        return self.model_name if self.model_version is None \
            else f"{self.model_name}@{self.model_version}"

    @property
    def decision_label(self) -> str:
        return DECISIONS.get(self.decision or "", "")


@dataclass(frozen=True)
class Filters:
    """Which rows: time window (``since`` inclusive, ``until`` exclusive), model, verdict and
    decision (``"none"`` = rows without a decision)."""

    since: datetime | date | None = None
    until: datetime | date | None = None
    model_name: str | None = None
    model_version: int | None = None
    verdict: str | None = None
    decision: str | None = None
    batch: str | None = None

    def apply(self, query: Select[Any]) -> Select[Any]:
        if self.since is not None:
            query = query.where(InspectionRow.inspected_at >= as_utc(self.since))
        if self.until is not None:
            query = query.where(InspectionRow.inspected_at < as_utc(self.until))
        if self.model_name is not None:
            query = query.where(InspectionRow.model_name == self.model_name)
        if self.model_version is not None:
            query = query.where(InspectionRow.model_version == self.model_version)
        if self.verdict is not None:
            query = query.where(InspectionRow.verdict == _check_verdict(self.verdict))
        if self.decision == "none":
            query = query.where(InspectionRow.decision.is_(None))
        elif self.decision is not None:
            query = query.where(InspectionRow.decision == _check_decision(self.decision))
        if self.batch is not None:
            query = query.where(InspectionRow.batch == self.batch)
        return query


def as_utc(when: datetime | date) -> datetime:
    """An aware datetime; a date means its local midnight, a naive time is local time."""
    if not isinstance(when, datetime):
        when = datetime.combine(when, time())
    return when.astimezone() if when.tzinfo is None else when


def _check_verdict(verdict: str) -> str:
    if verdict not in VERDICTS:
        raise InvalidInputError("verdict", f"must be one of {', '.join(VERDICTS)}, "
                                           f"got {verdict!r}")
    return verdict


def _check_decision(decision: str) -> str:
    if decision not in DECISIONS:
        raise InvalidInputError("decision", f"must be one of {', '.join(DECISIONS)}, "
                                            f"got {decision!r}")
    return decision


def _finite(value: float, what: str) -> float:
    value = float(value)
    if math.isnan(value) and what == "score":
        return value   # a part the model could not score: recorded, and NG by the rule
    if not math.isfinite(value) or (what != "score" and value <= 0):
        raise InvalidInputError(what, f"must be a positive finite number, got {value!r}")
    return value


class History:
    """Inspected images and decisions (``Store.history``)."""

    def __init__(self, db: Database, thumbnail_cap_bytes: int) -> None:
        self._db = db
        self.thumbnail_cap_bytes = int(thumbnail_cap_bytes)

    # ------------------------------------------------------------------ writing
    def record(self, entries: Sequence[NewInspection]) -> list[int]:
        """Add rows (one transaction); returns their ids. Thumbnails over the cap are pruned,
        oldest first, in the same transaction."""
        rows, thumbs = [], []
        call_batch = new_batch()
        version_ids: dict[tuple[str, int], int | None] = {}
        for e in entries:
            score = _finite(e.score, "score")
            image_thr = _finite(e.image_threshold, "image threshold")
            pixel_thr = _finite(e.pixel_threshold, "pixel threshold")
            verdict = e.verdict if e.verdict is not None else \
                ("NG" if bool(is_ng(score, image_thr)) else "OK")
            rows.append(InspectionRow(
                inspected_at=e.inspected_at or utcnow(), image_sha256=e.image_sha256,
                file_name=str(e.file_name), model_name=str(e.model_name),
                model_version=e.model_version, version_id=e.version_id if e.version_id is not None
                else self._version_id(str(e.model_name), e.model_version, version_ids),
                score=score,
                normalized_score=score / image_thr, image_threshold=image_thr,
                pixel_threshold=pixel_thr, verdict=_check_verdict(verdict),
                operator=str(e.operator), comment="", decided_by="",
                batch=str(e.batch or call_batch)[:32]))
            thumbs.append((thumbnail_jpeg(e.image), thumbnail_jpeg(e.overlay)))
        with self._db.writing() as s:
            s.add_all(rows)
            s.flush()
            for row, (img, ovl) in zip(rows, thumbs, strict=True):
                if img is not None or ovl is not None:
                    s.add(ThumbnailRow(inspection_id=row.id, image_jpeg=img, overlay_jpeg=ovl,
                                       n_bytes=len(img or b"") + len(ovl or b"")))
            s.flush()
            if any(img is not None or ovl is not None for img, ovl in thumbs):
                self._prune(s, self.thumbnail_cap_bytes)
            return [row.id for row in rows]

    def _version_id(self, name: str, number: int | None,
                    known: dict[tuple[str, int], int | None]) -> int | None:
        """The library version a row names, so renaming the model carries its rows along
        (rows recorded without it kept the old name)."""
        if number is None:
            return None
        if (name, number) not in known:
            with self._db.reading() as s:
                known[(name, number)] = s.scalar(
                    select(VersionRow.id).join(ModelRow, VersionRow.model_id == ModelRow.id)
                    .where(ModelRow.name == name, VersionRow.version == number))
        return known[(name, number)]

    def decide(self, inspection_id: int, decision: str | None, comment: str = "",
               operator: str = "") -> Inspection:
        """Set (or with None clear) the operator's decision on a row; the audit trail keeps
        what it replaced (a row holds only the latest decision)."""
        from .audit import log

        if decision is not None:
            _check_decision(decision)
        with self._db.writing() as s:
            row = s.get(InspectionRow, inspection_id)
            if row is None:
                raise NotFoundError(f"inspection {inspection_id}", "no such history row")
            was = "none" if row.decision is None else \
                f"{DECISIONS.get(row.decision, row.decision)} by {row.decided_by or '?'}"
            log(s, operator, "decision",
                f"inspection {row.id} ({row.file_name}, {row.model_name}"
                + ("" if row.model_version is None else f"@{row.model_version}") + ")",
                ("cleared" if decision is None else DECISIONS.get(decision, decision))
                + (f": {comment}" if decision is not None and comment else "")
                + f" (was {was})")
            row.decision = decision
            row.comment = str(comment) if decision is not None else ""
            row.decided_by = str(operator) if decision is not None else ""
            row.decided_at = utcnow() if decision is not None else None
            s.flush()
            return _inspection(row)

    def prune_thumbnails(self, cap_bytes: int | None = None) -> int:
        """Drop the oldest thumbnails until they fit ``cap_bytes`` (default: the store's cap);
        returns how many rows lost theirs."""
        with self._db.writing() as s:
            return self._prune(s, self.thumbnail_cap_bytes if cap_bytes is None else cap_bytes)

    @staticmethod
    def _prune(s: Any, cap: int) -> int:
        total = s.scalar(select(func.coalesce(func.sum(ThumbnailRow.n_bytes), 0)))
        if total <= cap:
            return 0
        excess, freed, ids = total - cap, 0, []
        for tid, n in s.execute(select(ThumbnailRow.inspection_id, ThumbnailRow.n_bytes)
                                .order_by(ThumbnailRow.inspection_id)):
            ids.append(tid)
            freed += n
            if freed >= excess:
                break
        for start in range(0, len(ids), 500):
            s.execute(delete(ThumbnailRow)
                      .where(ThumbnailRow.inspection_id.in_(ids[start:start + 500])))
        return len(ids)

    # ------------------------------------------------------------------ reading
    def find(self, filters: Filters | None = None, limit: int | None = None,
             offset: int = 0, newest_first: bool = True) -> list[Inspection]:
        """Rows matching ``filters``, newest first by default."""
        order = InspectionRow.id.desc() if newest_first else InspectionRow.id
        query = (filters or Filters()).apply(select(InspectionRow)).order_by(order)
        query = query.offset(offset).limit(limit)
        with self._db.reading() as s:
            return [_inspection(r) for r in s.scalars(query)]

    def model_names(self) -> list[str]:
        """Every model name in the history (deleted models included), sorted."""
        query = select(InspectionRow.model_name).distinct().order_by(InspectionRow.model_name)
        with self._db.reading() as s:
            return list(s.scalars(query))

    def versions(self, model_name: str) -> list[int]:
        """The version numbers of ``model_name`` that have rows, ascending."""
        query = (select(InspectionRow.model_version).distinct()
                 .where(InspectionRow.model_name == model_name,
                        InspectionRow.model_version.is_not(None))
                 .order_by(InspectionRow.model_version))
        with self._db.reading() as s:
            return [int(v) for v in s.scalars(query)]

    def count(self, filters: Filters | None = None) -> int:
        query = (filters or Filters()).apply(select(func.count(InspectionRow.id)))
        with self._db.reading() as s:
            return int(s.scalar(query) or 0)

    def get(self, inspection_id: int) -> Inspection:
        with self._db.reading() as s:
            row = s.get(InspectionRow, inspection_id)
            if row is None:
                raise NotFoundError(f"inspection {inspection_id}", "no such history row")
            return _inspection(row)

    def thumbnails(self, inspection_id: int) -> tuple[bytes | None, bytes | None]:
        """(image JPEG, overlay JPEG) of a row; (None, None) once pruned."""
        with self._db.reading() as s:
            row = s.get(ThumbnailRow, inspection_id)
            return (None, None) if row is None else (row.image_jpeg, row.overlay_jpeg)

    def thumbnail_bytes(self) -> int:
        """Bytes all thumbnails take now (what the cap limits)."""
        with self._db.reading() as s:
            return int(s.scalar(select(func.coalesce(func.sum(ThumbnailRow.n_bytes), 0))))

    def export_csv(self, target: str | os.PathLike | TextIO,
                   filters: Filters | None = None) -> int:
        """Write matching rows, oldest first, as CSV (text cells spreadsheet-safe); returns
        the row count. A path is written atomically (temp file, then rename)."""
        if isinstance(target, str | os.PathLike):
            return write_text_file(target, lambda fh: self.export_csv(fh, filters))
        writer = csv.writer(target)
        writer.writerow(CSV_COLUMNS)
        n, batch, last_id = 0, 1000, 0
        while True:  # in pages, so a long history never sits in memory at once
            query = ((filters or Filters()).apply(select(InspectionRow))
                     .where(InspectionRow.id > last_id).order_by(InspectionRow.id).limit(batch))
            with self._db.reading() as s:
                rows = [_inspection(r) for r in s.scalars(query)]
            for r in rows:
                writer.writerow(_csv_row(r))
            n += len(rows)
            if len(rows) < batch:
                return n
            last_id = rows[-1].id


def _csv_row(r: Inspection) -> list[str]:
    def text(value: str) -> str:
        return spreadsheet_safe(value)

    return [str(r.id), r.inspected_at.isoformat(timespec="seconds"), text(r.file_name),
            r.image_sha256, text(r.model_name),
            "" if r.model_version is None else str(r.model_version), f"{r.score:.6g}",
            f"{r.normalized_score:.6g}", f"{r.image_threshold:.6g}",
            f"{r.pixel_threshold:.6g}", r.verdict, r.decision_label, text(r.comment),
            text(r.decided_by),
            "" if r.decided_at is None else r.decided_at.isoformat(timespec="seconds"),
            text(r.operator), r.batch]


def _inspection(r: InspectionRow) -> Inspection:
    return Inspection(
        id=r.id, inspected_at=r.inspected_at, file_name=r.file_name,
        image_sha256=r.image_sha256, model_name=r.model_name, model_version=r.model_version,
        version_id=r.version_id, score=r.score, normalized_score=r.normalized_score,
        image_threshold=r.image_threshold, pixel_threshold=r.pixel_threshold,
        verdict=r.verdict, operator=r.operator, decision=r.decision, comment=r.comment,
        decided_by=r.decided_by, decided_at=r.decided_at, batch=r.batch or "")
