"""The catalog's tables as SQLAlchemy 2 typed models. The schema itself is created by the
Alembic migrations in ``reelvault_catalog/migrations`` (these models must match them; an
integration test compares the two)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Index,
    Integer,
    MetaData,
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


class VideoRow(Base):
    """One requested video: the seed's ``videos`` table plus what the pipeline records."""

    __tablename__ = "videos"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'processing', 'completed', 'failed')", name="status_valid"
        ),
        CheckConstraint("progress BETWEEN 0 AND 100", name="progress_range"),
        # Newest first, keyset pagination on (created_at, id); the second serves status filters.
        Index("ix_videos_created_at_id", text("created_at DESC"), text("id DESC")),
        Index("ix_videos_status_created_at_id", "status", text("created_at DESC"), text("id DESC")),
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
    org: Mapped[str] = mapped_column(Text, server_default=text("'default'"))
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
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(Text)
    stored_at: Mapped[datetime | None] = mapped_column(_tz())

    # --- failure --------------------------------------------------------------------------
    error_stage: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    # When the recorded failure happened: an older failure delivered late does not replace it.
    failed_at: Mapped[datetime | None] = mapped_column(_tz())
