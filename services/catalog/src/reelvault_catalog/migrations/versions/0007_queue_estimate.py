"""videos.estimated_start_at, videos.queue_position: where a queued video stands

Revision ID: 0007_queue_estimate
Revises: 0006_webhooks
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_queue_estimate"
down_revision: str | Sequence[str] | None = "0006_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: only a create the provider's request budget holds back has an estimate.
    op.add_column(
        "videos", sa.Column("estimated_start_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("videos", sa.Column("queue_position", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("videos", "queue_position")
    op.drop_column("videos", "estimated_start_at")
