"""Deleting videos and retention: tombstones, the organization's retention, missing objects

- ``videos.status`` may be ``deleted`` (a tombstone: the row stays, its objects are removed);
  ``deleted_at``, ``deleted_by`` (the key's public id, or ``retention``) and
  ``deletion_announced_at`` (``video.deleted`` acked by the stream: until then the sweeper
  announces it again, so a crash between the commit and the publish loses nothing);
- ``videos.storage_missing_at``: the audit found the row's stored object missing;
- ``organizations.delete_after_days``: videos older than this are deleted (NULL or 0: kept);
- an index on the tombstones still to announce, and one for the retention sweep.

Revision ID: 0005_deletion
Revises: 0004_video_cost
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_deletion"
down_revision: str | Sequence[str] | None = "0004_video_cost"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUSES = "'queued', 'processing', 'completed', 'failed'"


def upgrade() -> None:
    tz = sa.DateTime(timezone=True)
    op.add_column("videos", sa.Column("deleted_at", tz, nullable=True))
    op.add_column("videos", sa.Column("deleted_by", sa.Text(), nullable=True))
    op.add_column("videos", sa.Column("deletion_announced_at", tz, nullable=True))
    op.add_column("videos", sa.Column("storage_missing_at", tz, nullable=True))
    op.drop_constraint("ck_videos_status_valid", "videos", type_="check")
    op.create_check_constraint(
        "ck_videos_status_valid", "videos", f"status IN ({_STATUSES}, 'deleted')"
    )
    op.add_column("organizations", sa.Column("delete_after_days", sa.Integer(), nullable=True))
    op.create_check_constraint(
        "ck_organizations_retention_not_negative", "organizations", "delete_after_days >= 0"
    )
    op.create_index(
        "ix_videos_unannounced_deletions", "videos", ["deleted_at"],
        postgresql_where=sa.text("status = 'deleted' AND deletion_announced_at IS NULL"),
    )
    # The retention sweep: an organization's live videos, oldest first.
    op.create_index(
        "ix_videos_org_live_created_at", "videos", ["org", "created_at"],
        postgresql_where=sa.text("status <> 'deleted'"),
    )


def downgrade() -> None:
    op.drop_index("ix_videos_org_live_created_at", table_name="videos")
    op.drop_index("ix_videos_unannounced_deletions", table_name="videos")
    op.drop_constraint("ck_organizations_retention_not_negative", "organizations", type_="check")
    op.drop_column("organizations", "delete_after_days")
    op.execute("DELETE FROM videos WHERE status = 'deleted'")
    op.drop_constraint("ck_videos_status_valid", "videos", type_="check")
    op.create_check_constraint("ck_videos_status_valid", "videos", f"status IN ({_STATUSES})")
    for column in ("storage_missing_at", "deletion_announced_at", "deleted_by", "deleted_at"):
        op.drop_column("videos", column)
