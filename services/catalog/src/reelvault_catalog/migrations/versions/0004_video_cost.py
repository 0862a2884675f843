"""videos.cost_usd: what the provider reported charging for the video, when it says

Revision ID: 0004_video_cost
Revises: 0003_thumbnail_bytes
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_video_cost"
down_revision: str | Sequence[str] | None = "0003_thumbnail_bytes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: most providers report no cost (the price table's estimate stands in).
    op.add_column("videos", sa.Column("cost_usd", sa.Numeric(12, 4), nullable=True))


def downgrade() -> None:
    op.drop_column("videos", "cost_usd")
