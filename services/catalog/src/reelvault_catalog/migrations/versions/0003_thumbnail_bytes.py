"""videos.thumbnail_bytes: the stored thumbnail's size, so storage use counts thumbnails too

Revision ID: 0003_thumbnail_bytes
Revises: 0002_organizations
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_thumbnail_bytes"
down_revision: str | Sequence[str] | None = "0002_organizations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: thumbnails stored before this revision have no recorded size.
    op.add_column("videos", sa.Column("thumbnail_bytes", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("videos", "thumbnail_bytes")
