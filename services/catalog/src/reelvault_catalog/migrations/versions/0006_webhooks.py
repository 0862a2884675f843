"""outbound webhooks: organizations' endpoints and the log of deliveries to them

Revision ID: 0006_webhooks
Revises: 0005_deletion
Create Date: 2026-12-04

- ``webhook_endpoints``: an organization's URL, the event types it takes, its signing secret
  (kept, since every attempt is signed with it), whether it is enabled (and why not), and its
  run of failures (``consecutive_failures`` since ``failing_since``), which disables it;
- ``webhook_deliveries``: one row per event and endpoint (the id, derived from both, is the
  ``webhook-id`` of every attempt), with its status, attempts, last answer and when it is due
  next: the retry schedule lives here, so a restart loses none. ``lease_until`` marks a
  delivery an attempt is in flight for (another replica leaves it alone until then).

Both carry their organization's slug and have the same row-level security as the other tenant
tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006_webhooks"
down_revision: str | Sequence[str] | None = "0005_deletion"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out, not imported: a migration states the schema as it was at this revision.
TENANT_ROLE = "reelvault_tenant"
KNOWN_EVENT_TYPES = "'video.completed', 'video.failed', 'video.deleted', 'quota.warning'"
TABLES = ("webhook_endpoints", "webhook_deliveries")


def _tz() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _endpoints() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("org", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("event_types", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("disabled_at", _tz(), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), server_default=sa.text("0"),
                  nullable=False),
        sa.Column("failing_since", _tz(), nullable=True),
        sa.Column("created_at", _tz(), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_endpoints"),
        sa.ForeignKeyConstraint(
            ["org"], ["organizations.slug"], name="fk_webhook_endpoints_org_organizations"
        ),
        sa.CheckConstraint(
            f"event_types <@ ARRAY[{KNOWN_EVENT_TYPES}]::text[] AND cardinality(event_types) > 0",
            name="ck_webhook_endpoints_event_types_known",
        ),
        sa.CheckConstraint("url ~ '^https?://'", name="ck_webhook_endpoints_url_http"),
    )
    op.create_index("ix_webhook_endpoints_org", "webhook_endpoints", ["org"])


def _deliveries() -> None:
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("org", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _tz(), nullable=True),
        sa.Column("lease_until", _tz(), nullable=True),
        sa.Column("last_attempt_at", _tz(), nullable=True),
        sa.Column("last_response_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", _tz(), nullable=True),
        sa.Column("created_at", _tz(), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sa.ForeignKeyConstraint(
            ["endpoint_id"], ["webhook_endpoints.id"],
            name="fk_webhook_deliveries_endpoint_id_webhook_endpoints", ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org"], ["organizations.slug"], name="fk_webhook_deliveries_org_organizations"
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed')",
            name="ck_webhook_deliveries_status_valid",
        ),
    )
    # What the dispatcher polls: each endpoint's pending deliveries by when they are due.
    op.create_index(
        "ix_webhook_deliveries_due", "webhook_deliveries", ["endpoint_id", "next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    # An endpoint's delivery log, newest first.
    op.create_index(
        "ix_webhook_deliveries_endpoint_created_at", "webhook_deliveries",
        ["endpoint_id", sa.text("created_at DESC")],
    )


def upgrade() -> None:
    _endpoints()
    _deliveries()
    for table in TABLES:
        op.execute(f"GRANT SELECT ON {table} TO {TENANT_ROLE}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_rows ON {table}"
            " USING (org = current_setting('reelvault.org', true))"
        )


def downgrade() -> None:
    for table in reversed(TABLES):
        op.execute(f"DROP POLICY IF EXISTS tenant_rows ON {table}")
        op.execute(f"REVOKE ALL ON {table} FROM {TENANT_ROLE}")
    op.drop_index("ix_webhook_deliveries_endpoint_created_at", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_webhook_endpoints_org", table_name="webhook_endpoints")
    op.drop_table("webhook_endpoints")
