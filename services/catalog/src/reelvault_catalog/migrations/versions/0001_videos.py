"""videos: the seed's table plus the pipeline's columns

Revision ID: 0001_videos
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001_videos"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _tz() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "videos",
        # the seed's columns
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("image1_url", sa.Text(), nullable=True),
        sa.Column("image2_url", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), server_default=sa.text("'queued'"), nullable=False),
        sa.Column("video_id", sa.Text(), nullable=True),
        sa.Column("video_url", sa.Text(), nullable=True),
        sa.Column("openai_url", sa.Text(), nullable=True),
        sa.Column("created_at", _tz(), nullable=False),
        sa.Column("updated_at", _tz(), nullable=False),
        # the request
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("seconds", sa.Text(), nullable=False),
        sa.Column("size", sa.Text(), nullable=False),
        sa.Column("org", sa.Text(), server_default=sa.text("'default'"), nullable=False),
        sa.Column(
            "reference_image_keys",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'::text[]"),
            nullable=False,
        ),
        sa.Column("requested_at", _tz(), nullable=False),
        sa.Column("correlation_id", sa.Text(), nullable=False),
        # generation
        sa.Column("progress", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("provider", sa.Text(), nullable=True),
        sa.Column("expires_at", _tz(), nullable=True),
        # permanent storage
        sa.Column("video_bucket", sa.Text(), nullable=True),
        sa.Column("video_key", sa.Text(), nullable=True),
        sa.Column("thumbnail_url", sa.Text(), nullable=True),
        sa.Column("thumbnail_bucket", sa.Text(), nullable=True),
        sa.Column("thumbnail_key", sa.Text(), nullable=True),
        sa.Column("bytes", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.Text(), nullable=True),
        sa.Column("stored_at", _tz(), nullable=True),
        # failure
        sa.Column("error_stage", sa.Text(), nullable=True),
        sa.Column("error_code", sa.Text(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("failed_at", _tz(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_videos"),
        sa.CheckConstraint(
            "status IN ('queued', 'processing', 'completed', 'failed')",
            name="ck_videos_status_valid",
        ),
        sa.CheckConstraint("progress BETWEEN 0 AND 100", name="ck_videos_progress_range"),
    )
    # Newest first with keyset pagination on (created_at, id), with and without a status filter.
    op.create_index(
        "ix_videos_created_at_id", "videos", [sa.text("created_at DESC"), sa.text("id DESC")]
    )
    op.create_index(
        "ix_videos_status_created_at_id",
        "videos",
        ["status", sa.text("created_at DESC"), sa.text("id DESC")],
    )


def downgrade() -> None:
    op.drop_index("ix_videos_status_created_at_id", table_name="videos")
    op.drop_index("ix_videos_created_at_id", table_name="videos")
    op.drop_table("videos")
