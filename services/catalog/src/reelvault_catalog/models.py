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
    Boolean,
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
# A deleted video's row: kept as a tombstone, never shown to readers.
DELETED = "deleted"


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
    __table_args__ = (
        CheckConstraint(f"slug ~ '{ORG_SLUG_PATTERN}'", name="slug_valid"),
        CheckConstraint("delete_after_days >= 0", name="retention_not_negative"),
    )

    id: Mapped[uuid.UUID] = mapped_column(
        Uuid(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )
    slug: Mapped[str] = mapped_column(Text, unique=True)
    name: Mapped[str] = mapped_column(Text, server_default=text("''"))
    created_at: Mapped[datetime] = mapped_column(_tz(), server_default=text("now()"))
    # Videos older than this many days are deleted; NULL or 0: kept forever.
    delete_after_days: Mapped[int | None] = mapped_column(Integer)


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
            "status IN ('queued', 'processing', 'completed', 'failed', 'deleted')",
            name="status_valid",
        ),
        CheckConstraint("progress BETWEEN 0 AND 100", name="progress_range"),
        # An organization's videos newest first, keyset pagination on (created_at, id); the
        # second serves status filters and the sum of an organization's stored bytes.
        Index("ix_videos_org_created_at_id", "org", text("created_at DESC"), text("id DESC")),
        Index(
            "ix_videos_org_status_created_at_id",
            "org", "status", text("created_at DESC"), text("id DESC"),
        ),
        # Tombstones whose video.deleted is not acked yet (announced again by the sweeper).
        Index(
            "ix_videos_unannounced_deletions", "deleted_at",
            postgresql_where=text("status = 'deleted' AND deletion_announced_at IS NULL"),
        ),
        # The retention sweep: an organization's live videos, oldest first.
        Index(
            "ix_videos_org_live_created_at", "org", "created_at",
            postgresql_where=text("status <> 'deleted'"),
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
    # What the provider reported charging (None: it does not say).
    cost_usd: Mapped[Decimal | None] = mapped_column(_usd())
    # A create the provider's request budget holds back: when it should start, and the
    # creates of its organization ahead of it (cleared once the job exists).
    estimated_start_at: Mapped[datetime | None] = mapped_column(_tz())
    queue_position: Mapped[int | None] = mapped_column(Integer)

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

    # --- deletion -------------------------------------------------------------------------
    deleted_at: Mapped[datetime | None] = mapped_column(_tz())
    # The key's public id, or ``retention``.
    deleted_by: Mapped[str | None] = mapped_column(Text)
    # When the stream acked ``video.deleted`` (NULL on a tombstone: announce it again).
    deletion_announced_at: Mapped[datetime | None] = mapped_column(_tz())
    # The audit found the stored object missing.
    storage_missing_at: Mapped[datetime | None] = mapped_column(_tz())


# --- outbound webhooks ------------------------------------------------------------------------
class WebhookEndpointRow(Base):
    """An organization's webhook endpoint. ``secret`` signs every attempt, so it is kept."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        CheckConstraint(
            "event_types <@ ARRAY['video.completed', 'video.failed', 'video.deleted', "
            "'quota.warning']::text[] AND cardinality(event_types) > 0",
            name="event_types_known",
        ),
        CheckConstraint("url ~ '^https?://'", name="url_http"),
        Index("ix_webhook_endpoints_org", "org"),
    )

    id: Mapped[uuid.UUID] = mapped_column(
        Uuid(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )
    org: Mapped[str] = mapped_column(Text, ForeignKey("organizations.slug"))
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, server_default=text("''"))
    event_types: Mapped[list[str]] = mapped_column(ARRAY(Text))
    secret: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    disabled_at: Mapped[datetime | None] = mapped_column(_tz())
    # The current run of failed attempts (reset by a success): what disables an endpoint.
    consecutive_failures: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    failing_since: Mapped[datetime | None] = mapped_column(_tz())
    created_at: Mapped[datetime] = mapped_column(_tz(), server_default=text("now()"))


class WebhookDeliveryRow(Base):
    """One event for one endpoint; ``id`` (derived from both) is every attempt's
    ``webhook-id``. ``next_attempt_at`` is the durable retry schedule."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="status_valid"),
        Index("ix_webhook_deliveries_due", "endpoint_id", "next_attempt_at",
              postgresql_where=text("status = 'pending'")),
        Index("ix_webhook_deliveries_endpoint_created_at", "endpoint_id",
              text("created_at DESC")),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid(as_uuid=True), primary_key=True)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        Uuid(as_uuid=True), ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    org: Mapped[str] = mapped_column(Text, ForeignKey("organizations.slug"))
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid(as_uuid=True))
    event_type: Mapped[str] = mapped_column(Text)
    # The body sent, byte for byte the same on every attempt.
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default=text("'pending'"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    max_attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime | None] = mapped_column(_tz())
    # An attempt is in flight until then (other replicas leave the delivery alone).
    lease_until: Mapped[datetime | None] = mapped_column(_tz())
    last_attempt_at: Mapped[datetime | None] = mapped_column(_tz())
    last_response_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(_tz())
    created_at: Mapped[datetime] = mapped_column(_tz(), server_default=text("now()"))
