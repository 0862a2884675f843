"""The catalog's tables as SQLAlchemy 2 typed models. The schema itself is created by the
Alembic migrations in ``reelvault_catalog/migrations`` (these models must match them; an
integration test compares the two)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal

from reelvault_common.contracts.tenancy import ORG_SLUG_PATTERN, Scope
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    Text,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so migrations can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

STATUS_VALUES = ("queued", "processing", "completed", "failed")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _tz() -> DateTime:
    return DateTime(timezone=True)


def _usd() -> Numeric[Decimal]:
    return Numeric(12, 4)


_KNOWN_SCOPES = ", ".join(f"'{scope.value}'" for scope in Scope)


class OrganizationRow(Base):
    """A tenant. ``slug`` is what everything else refers to (events, storage keys, rows)."""

    __tablename__ = "organizations"
    __table_args__ = (CheckConstraint(f"slug ~ '{ORG_SLUG_PATTERN}'", name="slug_valid"),)

    id: Mapped[uuid.UUID] = mapped_column(
        Uuid(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )
    slug: Mapped[str] = mapped_column(Text, unique=True)
    name: Mapped[str] = mapped_column(Text, server_default=text("''"))
    created_at: Mapped[datetime] = mapped_column(_tz(), server_default=text("now()"))


class ApiKeyRow(Base):
    """An API key of an organization; only the hash of the whole key is kept."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint(
            f"scopes <@ ARRAY[{_KNOWN_SCOPES}]::text[] AND cardinality(scopes) > 0",
            name="scopes_known",
        ),
        Index("ix_api_keys_org_id", "org_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(
        Uuid(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )
    public_id: Mapped[str] = mapped_column(Text, unique=True)
    org_id: Mapped[uuid.UUID] = mapped_column(Uuid(as_uuid=True), ForeignKey("organizations.id"))
    name: Mapped[str] = mapped_column(Text, server_default=text("''"))
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text))
    key_hash: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime | None] = mapped_column(_tz())
    created_at: Mapped[datetime] = mapped_column(_tz(), server_default=text("now()"))
    last_used_at: Mapped[datetime | None] = mapped_column(_tz())
    revoked_at: Mapped[datetime | None] = mapped_column(_tz())


class OrgQuotaRow(Base):
    """An organization's limits; NULL: no limit (no row at all: no limits)."""

    __tablename__ = "org_quotas"
    __table_args__ = (
        CheckConstraint(
            "videos_per_month >= 0 AND generation_seconds_per_month >= 0"
            " AND cost_usd_per_month >= 0 AND storage_bytes >= 0",
            name="limits_not_negative",
        ),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(
        Uuid(as_uuid=True), ForeignKey("organizations.id"), primary_key=True
    )
    videos_per_month: Mapped[int | None] = mapped_column(Integer)
    generation_seconds_per_month: Mapped[int | None] = mapped_column(Integer)
    cost_usd_per_month: Mapped[Decimal | None] = mapped_column(_usd())
    storage_bytes: Mapped[int | None] = mapped_column(BigInteger)


class UsageReservationRow(Base):
    """One video counted against its organization's monthly quotas (before it is requested)."""

    __tablename__ = "usage_reservations"
    __table_args__ = (
        Index("ix_usage_reservations_org_period_start", "org", "period_start"),
    )

    video_id: Mapped[uuid.UUID] = mapped_column(Uuid(as_uuid=True), primary_key=True)
    org: Mapped[str] = mapped_column(Text, ForeignKey("organizations.slug"))
    # The first day of the UTC month the reservation counts in.
    period_start: Mapped[date] = mapped_column(Date)
    seconds: Mapped[int] = mapped_column(Integer)
    cost_usd: Mapped[Decimal] = mapped_column(_usd())
    created_at: Mapped[datetime] = mapped_column(_tz(), server_default=text("now()"))
    # Given back: the request was never published, or the provider never took the job.
    released_at: Mapped[datetime | None] = mapped_column(_tz())


class QuotaNoticeRow(Base):
    """A level of a limit announced for a period: each crossing is announced once."""

    __tablename__ = "quota_notices"
    __table_args__ = (
        PrimaryKeyConstraint("org", "quota", "period", "level", name="pk_quota_notices"),
        CheckConstraint("level IN ('warning', 'exceeded')", name="level_valid"),
    )

    org: Mapped[str] = mapped_column(Text, ForeignKey("organizations.slug"))
    quota: Mapped[str] = mapped_column(Text)
    # YYYY-MM, or 'total' for stored bytes.
    period: Mapped[str] = mapped_column(Text)
    level: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(_tz(), server_default=text("now()"))


class VideoRow(Base):
    """One requested video: the seed's ``videos`` table plus what the pipeline records."""

    __tablename__ = "videos"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'processing', 'completed', 'failed')", name="status_valid"
        ),
        CheckConstraint("progress BETWEEN 0 AND 100", name="progress_range"),
        # An organization's videos newest first, keyset pagination on (created_at, id); the
        # second serves status filters and the sum of an organization's stored bytes.
        Index("ix_videos_org_created_at_id", "org", text("created_at DESC"), text("id DESC")),
        Index(
            "ix_videos_org_status_created_at_id",
            "org", "status", text("created_at DESC"), text("id DESC"),
        ),
    )

    # --- the seed's columns ---------------------------------------------------------------
    id: Mapped[uuid.UUID] = mapped_column(Uuid(as_uuid=True), primary_key=True)
    prompt: Mapped[str] = mapped_column(Text)
    image1_url: Mapped[str | None] = mapped_column(Text)
    image2_url: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default=text("'queued'"))
    # The seed calls the provider's job id ``video_id``; the column keeps that name.
    provider_job_id: Mapped[str | None] = mapped_column("video_id", Text)
    video_url: Mapped[str | None] = mapped_column(Text)
    openai_url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(_tz())
    updated_at: Mapped[datetime] = mapped_column(_tz())

    # --- the request ----------------------------------------------------------------------
    model: Mapped[str] = mapped_column(Text)
    seconds: Mapped[str] = mapped_column(Text)
    size: Mapped[str] = mapped_column(Text)
    org: Mapped[str] = mapped_column(
        Text, ForeignKey("organizations.slug"), server_default=text("'default'")
    )
    reference_image_keys: Mapped[list[str]] = mapped_column(
        ARRAY(Text), server_default=text("'{}'::text[]")
    )
    requested_at: Mapped[datetime] = mapped_column(_tz())
    correlation_id: Mapped[str] = mapped_column(Text)

    # --- generation -----------------------------------------------------------------------
    progress: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    provider: Mapped[str | None] = mapped_column(Text)
    # Until when the provider's copy can be downloaded.
    expires_at: Mapped[datetime | None] = mapped_column(_tz())

    # --- permanent storage ----------------------------------------------------------------
    video_bucket: Mapped[str | None] = mapped_column(Text)
    video_key: Mapped[str | None] = mapped_column(Text)
    thumbnail_url: Mapped[str | None] = mapped_column(Text)
    thumbnail_bucket: Mapped[str | None] = mapped_column(Text)
    thumbnail_key: Mapped[str | None] = mapped_column(Text)
    thumbnail_bytes: Mapped[int | None] = mapped_column(BigInteger)
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(Text)
    stored_at: Mapped[datetime | None] = mapped_column(_tz())

    # --- failure --------------------------------------------------------------------------
    error_stage: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    # When the recorded failure happened: an older failure delivered late does not replace it.
    failed_at: Mapped[datetime | None] = mapped_column(_tz())
