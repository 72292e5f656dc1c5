"""The store's tables (SQLAlchemy 2 ORM). Changing them needs a new Alembic revision in
``migrations/versions``; the tests check that the two agree.

History rows copy the model's name and version number, so they stay readable after the
version is deleted (``version_id`` then becomes NULL). Who did what is kept as the user's
name, copied (``created_by``, ``operator``, ``decided_by``), so it stays readable after the
account is removed. Accounts, API tokens and failed sign-ins (for lock-out) live in ``users``,
``api_tokens`` and ``sign_in_failures`` (revision 0003, see ``users.py``); every change to
models, accounts, tokens and decisions in ``audit_events`` (revision 0005, ``audit.py``).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

#: Longest model name, in characters.
MAX_NAME_CHARS = 200

NAMING = {"ix": "ix_%(column_0_label)s", "uq": "uq_%(table_name)s_%(column_0_name)s",
          "ck": "ck_%(table_name)s_%(constraint_name)s",
          "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
          "pk": "pk_%(table_name)s"}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no time zone: stored naive UTC)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware one")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class NanFloat(TypeDecorator[float]):
    """A float where NaN (a score the model could not compute) is kept: stored as NULL,
    because SQLite turns NaN into NULL anyway."""

    impl = Float
    cache_ok = True

    def process_bind_param(self, value: float | None, dialect: object) -> float | None:
        return None if value is None or math.isnan(value) else float(value)

    def process_result_value(self, value: float | None, dialect: object) -> float | None:
        return math.nan if value is None else value


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ModelRow(Base):
    """A named model ("transistor line 3"); its versions hold the files."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME_CHARS), unique=True)
    default_version: Mapped[int | None] = mapped_column(Integer)
    #: Highest version number ever given: numbers are not reused after a delete, so a
    #: history row's "name@3" never comes to mean another file.
    last_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    versions: Mapped[list[VersionRow]] = relationship(
        back_populates="model", cascade="all, delete-orphan", passive_deletes=True,
        order_by="VersionRow.version")


class VersionRow(Base):
    """One saved model file (content-addressed blob) and its card."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version", name="uq_model_versions_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"),
                                          index=True)
    version: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(16))
    backbone: Mapped[str] = mapped_column(String(64))
    d: Mapped[int] = mapped_column(Integer)
    image_size: Mapped[int] = mapped_column(Integer)
    crop: Mapped[int] = mapped_column(Integer)
    n_train_images: Mapped[int] = mapped_column(Integer)
    training_fingerprint: Mapped[str] = mapped_column(String(64), default="")
    fit_seconds: Mapped[float] = mapped_column(Float)
    device: Mapped[str] = mapped_column(String(64))
    image_threshold: Mapped[float] = mapped_column(Float)
    pixel_threshold: Mapped[float] = mapped_column(Float)
    operating_image_threshold: Mapped[float | None] = mapped_column(Float)
    operating_pixel_threshold: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    note: Mapped[str] = mapped_column(Text, default="")
    card_json: Mapped[str] = mapped_column(Text, default="{}")
    #: The signed-in user who saved this version ("" before sign-in existed, or from the CLI
    #: without ``--user``).
    created_by: Mapped[str] = mapped_column(String(MAX_NAME_CHARS), default="",
                                            server_default="")
    model: Mapped[ModelRow] = relationship(back_populates="versions")


class InspectionRow(Base):
    """One inspected image: what the model said and what the operator decided."""

    __tablename__ = "inspections"
    __table_args__ = (Index("ix_inspections_model", "model_name", "model_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    inspected_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    image_sha256: Mapped[str] = mapped_column(String(64), default="", index=True)
    file_name: Mapped[str] = mapped_column(Text, default="")
    model_name: Mapped[str] = mapped_column(String(MAX_NAME_CHARS))
    model_version: Mapped[int | None] = mapped_column(Integer)
    version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL"), index=True)
    score: Mapped[float] = mapped_column(NanFloat(), nullable=True)
    normalized_score: Mapped[float] = mapped_column(NanFloat(), nullable=True)
    image_threshold: Mapped[float] = mapped_column(Float)
    pixel_threshold: Mapped[float] = mapped_column(Float)
    verdict: Mapped[str] = mapped_column(String(8), index=True)
    operator: Mapped[str] = mapped_column(String(MAX_NAME_CHARS), default="")
    decision: Mapped[str | None] = mapped_column(String(32), index=True)
    comment: Mapped[str] = mapped_column(Text, default="")
    decided_by: Mapped[str] = mapped_column(String(MAX_NAME_CHARS), default="")
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: One id per inspection run (a click on Inspect, a camera session, a predict run); ""
    #: for rows recorded before revision 0004.
    batch: Mapped[str] = mapped_column(String(32), default="", server_default="", index=True)


class ThumbnailRow(Base):
    """Small JPEGs of an inspected image and its overlay; pruned oldest-first under a cap
    (the inspection row stays)."""

    __tablename__ = "thumbnails"

    inspection_id: Mapped[int] = mapped_column(
        ForeignKey("inspections.id", ondelete="CASCADE"), primary_key=True)
    image_jpeg: Mapped[bytes | None] = mapped_column(LargeBinary)
    overlay_jpeg: Mapped[bytes | None] = mapped_column(LargeBinary)
    n_bytes: Mapped[int] = mapped_column(Integer)


class UserRow(Base):
    """An account: a name, a role and an argon2 hash of its password (never the password)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME_CHARS), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ApiTokenRow(Base):
    """A bearer token for ``padim serve``: only its sha256 is kept (the token itself is shown
    once, when made), and a short prefix to tell tokens apart in lists."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME_CHARS), unique=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str] = mapped_column(String(MAX_NAME_CHARS), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SignInFailureRow(Base):
    """One failed sign-in (user name as typed, client address, time): counted per name and per
    address for the lock-out, cleared for a name by its next successful sign-in."""

    __tablename__ = "sign_in_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_name: Mapped[str] = mapped_column(String(MAX_NAME_CHARS), index=True)
    address: Mapped[str] = mapped_column(String(64), index=True)
    failed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class AuditRow(Base):
    """One change to shared state: who (a name, copied), what (``audit.ACTIONS``), on what,
    and the details in words. Written in the same transaction as the change itself."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(MAX_NAME_CHARS), default="")
    action: Mapped[str] = mapped_column(String(32), index=True)
    target: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[str] = mapped_column(Text, default="")


__all__ = ["ApiTokenRow", "AuditRow", "Base", "InspectionRow", "ModelRow", "SignInFailureRow",
           "ThumbnailRow", "UserRow", "VersionRow"]
