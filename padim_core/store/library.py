"""The model library: named models, their numbered versions and each version's card.

A version is one model file (a content-addressed blob, see ``blobs``) plus a row with its
card. Numbers count up per name and are never reused, so "transistor@3" in the history always
means the same file. Names are stored literally (quotes, SQL-looking text and emoji are just
text); empty, over-long or control-character names are refused with a message.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from ..errors import InvalidInputError
from ..images import file_sha256
from .audit import log
from .blobs import OK, BlobStore, FileContent
from .database import Database
from .errors import BlobUnavailableError, NotFoundError, StoreError
from .tables import MAX_NAME_CHARS, InspectionRow, ModelRow, VersionRow, utcnow

if TYPE_CHECKING:
    from ..backbones import FeatureExtractor
    from ..model import PadimModel

#: Where a version's file came from: fitted, or images added to another version ("update"),
#: on this machine; a file imported from this machine; an upload. Files fitted or imported
#: on this machine may name a local weights file; an upload never chooses a path here
#: (``PadimModel.from_bytes``).
SOURCES = ("fit", "update", "file", "upload")
_RETRIES = 5


def check_name(name: Any, what: str = "model name") -> str:
    """The name as stored (Unicode NFC, outer spaces removed), or InvalidInputError."""
    if not isinstance(name, str):
        raise InvalidInputError(what, f"must be text, got {type(name).__name__}")
    cleaned = unicodedata.normalize("NFC", name).strip()
    if not cleaned:
        raise InvalidInputError(what, "is empty")
    if len(cleaned) > MAX_NAME_CHARS:
        raise InvalidInputError(what, f"has {len(cleaned)} characters; at most "
                                      f"{MAX_NAME_CHARS} are allowed")
    bad = [c for c in cleaned if unicodedata.category(c) in ("Cc", "Cs", "Cn")]
    if bad:
        raise InvalidInputError(what, f"contains a control or invalid character "
                                      f"(U+{ord(bad[0]):04X})")
    return cleaned


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``"name"`` or ``"name@3"`` → (name, 3); a name may itself contain '@'."""
    head, sep, tail = ref.rpartition("@")
    if sep and head and tail.isascii() and tail.isdigit():   # '²'.isdigit(), int('²') fails
        return head, int(tail)
    return ref, None


def training_fingerprint(images: Iterable[str | os.PathLike | bytes]) -> str:
    """sha256 over the sorted sha256 digests of the training images' bytes: the same set of
    images gives the same fingerprint whatever their names or order."""
    return fitted_fingerprint(file_sha256(item) for item in images)


def fitted_fingerprint(digests: Iterable[str]) -> str:
    """``training_fingerprint`` from the SHA-256 (hex) of the files, as a fitted model records
    those it learned (``train_sha256_``): the images fit skipped as unreadable are not among
    them, so the same images give the same fingerprint whatever junk came with them, from
    the app or the command line, and no file is read again."""
    return hashlib.sha256(b"".join(sorted(bytes.fromhex(d) for d in digests))).hexdigest()


@dataclass(frozen=True)
class ModelVersion:
    """One version of a named model: its card and where its file stands."""

    id: int
    name: str
    version: int
    is_default: bool
    sha256: str
    size_bytes: int
    source: str
    backbone: str
    d: int
    image_size: int
    crop: int
    n_train_images: int
    training_fingerprint: str
    fit_seconds: float
    device: str
    image_threshold: float
    pixel_threshold: float
    operating_image_threshold: float | None
    operating_pixel_threshold: float | None
    created_at: datetime
    note: str
    card: dict[str, Any] = field(repr=False)
    #: ``ok``, ``file missing`` or ``damaged``.
    status: str = OK
    #: The signed-in user who saved it ("" when nobody was signed in).
    created_by: str = ""

    @property
    def ref(self) -> str:
        """``name@version``, as the CLI takes it."""
        return f"{self.name}@{self.version}"

    @property
    def thresholds(self) -> tuple[float, float]:
        """(image, pixel) thresholds to operate with: the saved ones, else the calibrated."""
        image = self.operating_image_threshold
        pixel = self.operating_pixel_threshold
        return (self.image_threshold if image is None else image,
                self.pixel_threshold if pixel is None else pixel)


@dataclass(frozen=True)
class ModelEntry:
    """A named model and its versions (oldest first)."""

    name: str
    created_at: datetime
    default_version: int | None
    versions: tuple[ModelVersion, ...]

    @property
    def current(self) -> ModelVersion | None:
        """The version used when none is asked for: the default, else the newest."""
        return _pick(self.versions, self.default_version)


def _pick(versions: Iterable[ModelVersion], default: int | None) -> ModelVersion | None:
    versions = list(versions)
    for v in versions:
        if v.version == default:
            return v
    return versions[-1] if versions else None


class Library:
    """Named, versioned models (``Store.library``)."""

    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self._db = db
        self._blobs = blobs

    # ------------------------------------------------------------------ reading
    def models(self, verify: bool = False) -> list[ModelEntry]:
        """Every named model with its versions, by name. ``verify`` hashes each file once
        (per file state) to tell "damaged" apart; otherwise a size check is done."""
        with self._db.reading() as s:
            rows = s.scalars(select(ModelRow).options(selectinload(ModelRow.versions))
                             .order_by(ModelRow.name)).all()
            return [self._entry(m, verify) for m in rows]

    def get(self, name: str) -> ModelEntry:
        """One named model (NotFoundError naming it if there is none)."""
        name = check_name(name)
        with self._db.reading() as s:
            row = s.scalar(select(ModelRow).options(selectinload(ModelRow.versions))
                           .where(ModelRow.name == name))
            if row is None:
                raise NotFoundError(name, "no model of that name in the library")
            return self._entry(row, verify=False)

    def by_id(self, version_id: int) -> ModelVersion:
        """The version with this id, under its current name (a rename keeps the id): how a
        session that opened it finds it again after another session renamed the model."""
        with self._db.reading() as s:
            row = s.get(VersionRow, version_id)
            if row is None:
                raise NotFoundError(f"model version #{version_id}", "no longer in the library")
            return self._version(row, row.model,
                                 self._blobs.status(row.sha256, row.size_bytes, False))

    def version(self, name: str, version: int | None = None, verify: bool = True,
                ) -> ModelVersion:
        """A version (the default or newest when ``version`` is None); its file is checked."""
        entry = self.get(name)
        if version is None:
            found = entry.current
            if found is None:
                raise NotFoundError(name, "has no versions")
        else:
            found = next((v for v in entry.versions if v.version == version), None)
            if found is None:
                have = ", ".join(str(v.version) for v in entry.versions) or "none"
                raise NotFoundError(f"{entry.name}@{version}",
                                    f"no such version (versions: {have})")
        if verify:
            found = _with_status(found, self._blobs.status(found.sha256, found.size_bytes))
        return found

    def resolve(self, ref: str, verify: bool = True) -> ModelVersion:
        """``"name"`` or ``"name@3"`` (a name containing '@' is found as it is first)."""
        try:
            return self.version(ref, None, verify)
        except InvalidInputError:   # not found, or "name@3" too long to be a name itself
            name, number = parse_ref(ref)
            if number is None:
                raise
            return self.version(name, number, verify)

    def file_hashes(self) -> set[str]:
        """sha256 of every file a version names."""
        with self._db.reading() as s:
            return set(s.scalars(select(VersionRow.sha256).distinct()).all())

    def path(self, version: ModelVersion) -> Path:
        """The file of a version, after checking it is whole (BlobUnavailableError if not)."""
        status = self._blobs.status(version.sha256, version.size_bytes)
        path = self._blobs.path(version.sha256)
        if status != OK:
            raise BlobUnavailableError(version.ref, status, str(path))
        return path

    def read_bytes(self, version: ModelVersion) -> bytes:
        """The model file, e.g. for a download."""
        return self.path(version).read_bytes()

    def load(self, version: ModelVersion, device: str = "auto",
             extractor: FeatureExtractor | None = None) -> PadimModel:
        """The fitted model of a version."""
        from ..model import PadimModel

        path = self.path(version)
        if version.source == "upload":
            return PadimModel.from_bytes(path.read_bytes(), name=version.ref, device=device,
                                         extractor=extractor)
        return PadimModel.load(path, device=device, extractor=extractor)

    # ------------------------------------------------------------------ adding
    def save(self, model: PadimModel, name: str, *, note: str = "",
             training_fingerprint: str = "", created_by: str = "",
             source: str = "fit") -> ModelVersion:
        """Add a fitted model as the next version of ``name`` (created if new); ``source``
        "update" when it is another version with images added (``padim update``)."""
        if source not in ("fit", "update"):
            raise InvalidInputError("source", f"must be 'fit' or 'update', got {source!r}")
        return self._add(name, model.stream_file, model.card(), source, note,
                         training_fingerprint, created_by=created_by)

    def import_file(self, path: str | os.PathLike, name: str, *, note: str = "",
                    created_by: str = "") -> ModelVersion:
        """Add an existing ``.safetensors`` file from this machine (validated first)."""
        from ..model import PadimModel

        model = PadimModel.load(path, device="cpu")
        return self._add(name, Path(path).read_bytes(), model.card(), "file", note, "",
                         created_by=created_by)

    def import_bytes(self, data: bytes, name: str, *, file_name: str = "upload.safetensors",
                     note: str = "", created_by: str = "") -> ModelVersion:
        """Add an uploaded model file (validated by ``PadimModel.from_bytes``, errors name
        ``file_name``)."""
        from ..model import PadimModel

        model = PadimModel.from_bytes(data, name=file_name, device="cpu")
        return self._add(name, data, model.card(), "upload", note, "", created_by=created_by)

    def _add(self, name: str, content: FileContent, card: dict[str, Any], source: str,
             note: str, fingerprint: str, *, created_by: str = "") -> ModelVersion:
        """Store ``content`` (the file's bytes, or a function streaming them: see
        ``BlobStore.staged``) as the next version of ``name``."""
        name = check_name(name)
        note = str(note)
        with self._blobs.staged(content) as (sha, tmp, size), self._blobs.locked():
            self._blobs.publish(sha, tmp)
            for attempt in range(_RETRIES):
                try:
                    with self._db.writing() as s:
                        model = s.scalar(select(ModelRow).where(ModelRow.name == name)
                                         .with_for_update())
                        if model is None:
                            # A name whose versions were all deleted starts above the numbers
                            # its history rows carry: "name@1" never means two files.
                            model = ModelRow(name=name, last_version=s.scalar(
                                select(func.max(InspectionRow.model_version))
                                .where(InspectionRow.model_name == name)) or 0)
                            s.add(model)
                            s.flush()
                        model.last_version += 1
                        row = _version_row(model, model.last_version, sha, size, source,
                                           card, note, fingerprint)
                        row.created_by = str(created_by)[:200]
                        s.add(row)
                        s.flush()
                        log(s, created_by, "model.add", f"{name}@{row.version}",
                            f"{source}, sha256 {sha[:12]}" + (f"; note: {note}" if note else ""))
                        return self._version(row, model, status=OK)
                except IntegrityError:
                    # Another server on the same database added the name or the number.
                    if attempt == _RETRIES - 1:
                        raise StoreError(f"{name}: could not add a version (another writer "
                                         "kept taking the number); try again") from None
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ changing
    def rename(self, name: str, new_name: str, *, by: str = "") -> ModelEntry:
        """Rename a model; history rows of its versions follow. Refused if taken. ``by``:
        who, for the audit trail (as in every method that changes the library)."""
        name, new_name = check_name(name), check_name(new_name, "new model name")
        try:
            with self._db.writing() as s:
                model = self._model_row(s, name)
                if new_name != name and s.scalar(
                        select(ModelRow.id).where(ModelRow.name == new_name)) is not None:
                    raise InvalidInputError(new_name, "a model of that name already exists")
                model.name = new_name
                s.execute(update(InspectionRow)
                          .where(InspectionRow.version_id.in_(
                              select(VersionRow.id).where(VersionRow.model_id == model.id)))
                          .values(model_name=new_name))
                for v in model.versions:
                    # Rows the app recorded without their version (before 2026-12-07): the
                    # same name and number, not older than the version itself.
                    s.execute(update(InspectionRow)
                              .where(InspectionRow.version_id.is_(None),
                                     InspectionRow.model_name == name,
                                     InspectionRow.model_version == v.version,
                                     InspectionRow.inspected_at >= v.created_at)
                              .values(model_name=new_name, version_id=v.id))
                log(s, by, "model.rename", name, f"renamed to {new_name}")
        except IntegrityError:
            raise InvalidInputError(new_name, "a model of that name already exists") from None
        return self.get(new_name)

    def set_default(self, name: str, version: int | None, *, by: str = "") -> ModelEntry:
        """Make ``version`` the one used when none is named (None: the newest)."""
        name = check_name(name)
        with self._db.writing() as s:
            model = self._model_row(s, name)
            if version is not None and s.scalar(
                    select(VersionRow.id).where(VersionRow.model_id == model.id,
                                                VersionRow.version == version)) is None:
                raise NotFoundError(f"{name}@{version}", "no such version")
            before = model.default_version
            model.default_version = version
            log(s, by, "model.default", name,
                f"default {'none (the newest)' if version is None else f'@{version}'}, was "
                f"{'none (the newest)' if before is None else f'@{before}'}")
        return self.get(name)

    def set_thresholds(self, version: ModelVersion, image_threshold: float | None,
                       pixel_threshold: float | None, *, by: str = "") -> ModelVersion:
        """Save operating thresholds (e.g. from the sliders) on a version; None clears one
        (the calibrated threshold applies again)."""
        values = {}
        for label, value in (("image threshold", image_threshold),
                             ("pixel threshold", pixel_threshold)):
            if value is not None and not (math.isfinite(float(value)) and float(value) > 0):
                raise InvalidInputError(label, f"must be a positive number, got {value!r}")
            values[label] = None if value is None else float(value)
        with self._db.writing() as s:
            row = s.get(VersionRow, version.id)
            if row is None:
                raise NotFoundError(version.ref, "no such version (deleted?)")
            before = (row.operating_image_threshold, row.operating_pixel_threshold)
            row.operating_image_threshold = values["image threshold"]
            row.operating_pixel_threshold = values["pixel threshold"]
            log(s, by, "model.thresholds", version.ref,
                f"image {_threshold_words(values['image threshold'])}, pixel "
                f"{_threshold_words(values['pixel threshold'])} (was image "
                f"{_threshold_words(before[0])}, pixel {_threshold_words(before[1])})")
        return self.version(version.name, version.version, verify=False)

    def set_note(self, version: ModelVersion, note: str, *, by: str = "") -> ModelVersion:
        with self._db.writing() as s:
            row = s.get(VersionRow, version.id)
            if row is None:
                raise NotFoundError(version.ref, "no such version (deleted?)")
            row.note = str(note)
            log(s, by, "model.note", version.ref, str(note))
        return self.version(version.name, version.version, verify=False)

    def delete(self, name: str, version: int | None = None, *, by: str = "") -> int:
        """Delete one version, or the whole model when ``version`` is None; returns how many
        versions went. History rows keep their model name and number. A file no other
        version uses is removed from the data dir."""
        name = check_name(name)
        with self._blobs.locked():
            with self._db.writing() as s:
                model = self._model_row(s, name)
                rows = [v for v in model.versions if version is None or v.version == version]
                if not rows:
                    raise NotFoundError(f"{name}@{version}", "no such version")
                shas = {v.sha256 for v in rows}
                if version is None or len(rows) == len(model.versions):
                    s.delete(model)
                else:
                    for v in rows:
                        s.delete(v)
                    if model.default_version == version:
                        model.default_version = None
                log(s, by, "model.delete", name if version is None else f"{name}@{version}",
                    f"{len(rows)} version(s) deleted: "
                    + ", ".join(f"@{v.version} (sha256 {v.sha256[:12]})" for v in rows))
                s.flush()
                used = set(s.scalars(select(VersionRow.sha256)
                                     .where(VersionRow.sha256.in_(shas))).all())
            for sha in shas - used:
                self._blobs.remove(sha)
        return len(rows)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _model_row(s: Session, name: str) -> ModelRow:
        row = s.scalar(select(ModelRow).options(selectinload(ModelRow.versions))
                       .where(ModelRow.name == name))
        if row is None:
            raise NotFoundError(name, "no model of that name in the library")
        return row

    def _entry(self, row: ModelRow, verify: bool) -> ModelEntry:
        versions = tuple(
            self._version(v, row, self._blobs.status(v.sha256, v.size_bytes, verify))
            for v in row.versions)
        return ModelEntry(row.name, row.created_at, row.default_version, versions)

    @staticmethod
    def _version(v: VersionRow, model: ModelRow, status: str) -> ModelVersion:
        try:
            card = json.loads(v.card_json)
        except (TypeError, ValueError):
            card = {}
        return ModelVersion(
            id=v.id, name=model.name, version=v.version,
            is_default=model.default_version == v.version, sha256=v.sha256,
            size_bytes=v.size_bytes, source=v.source, backbone=v.backbone, d=v.d,
            image_size=v.image_size, crop=v.crop, n_train_images=v.n_train_images,
            training_fingerprint=v.training_fingerprint, fit_seconds=v.fit_seconds,
            device=v.device, image_threshold=v.image_threshold,
            pixel_threshold=v.pixel_threshold,
            operating_image_threshold=v.operating_image_threshold,
            operating_pixel_threshold=v.operating_pixel_threshold,
            created_at=v.created_at, note=v.note, card=card, status=status,
            created_by=v.created_by or "")


def _with_status(v: ModelVersion, status: str) -> ModelVersion:
    return replace(v, status=status)


def _version_row(model: ModelRow, number: int, sha: str, size: int, source: str,
                 card: dict[str, Any], note: str, fingerprint: str) -> VersionRow:
    return VersionRow(
        model=model, version=number, sha256=sha, size_bytes=size, source=source,
        backbone=str(card.get("backbone", "")), d=int(card.get("d", 0)),
        image_size=int(card.get("image_size", 0)), crop=int(card.get("crop", 0)),
        n_train_images=int(card.get("n_train_images", 0)),
        training_fingerprint=fingerprint, fit_seconds=float(card.get("fit_seconds", 0.0)),
        device=str(card.get("device", ""))[:64],
        image_threshold=float(card["image_threshold"]),
        pixel_threshold=float(card["pixel_threshold"]),
        created_at=utcnow(), note=note, card_json=json.dumps(card, default=str))


def _threshold_words(value: float | None) -> str:
    return "calibrated" if value is None else f"{value:.6g}"
