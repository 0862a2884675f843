"""organizations, API keys, quotas and usage; videos belong to an organization; row-level
security for tenant reads

Revision ID: 0002_organizations
Revises: 0001_videos
Create Date: 2026-12-03

Keys belong to an organization, not to a person. People come later without a rewrite: a
``members`` table (id, org_id, email, role, ...) and a nullable ``api_keys.member_id`` referring
to it (NULL: an organization key, as every key made before); RLS stays keyed on the org.

Row-level security is defence in depth for tenant reads: the catalog connects as the tables'
owner (who bypasses RLS, and so does a superuser), and a tenant read runs in a transaction that
first switches to the NOLOGIN role ``reelvault_tenant`` and sets ``reelvault.org``, both
transaction-local; the policies below then show that organization's rows only, and none at all
when ``reelvault.org`` is not set.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002_organizations"
down_revision: str | Sequence[str] | None = "0001_videos"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out, not imported: a migration states the schema as it was at this revision.
SLUG_PATTERN = "^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$"
KNOWN_SCOPES = "'videos:read', 'videos:write', 'admin'"
TENANT_ROLE = "reelvault_tenant"
# Tables a tenant may read, and how a row names its organization.
ORG_OF_ROW = {
    "organizations": "slug = current_setting('reelvault.org', true)",
    "videos": "org = current_setting('reelvault.org', true)",
    "usage_reservations": "org = current_setting('reelvault.org', true)",
    "quota_notices": "org = current_setting('reelvault.org', true)",
    "org_quotas": "org_id IN (SELECT id FROM organizations"
                  " WHERE slug = current_setting('reelvault.org', true))",
    "api_keys": "org_id IN (SELECT id FROM organizations"
                " WHERE slug = current_setting('reelvault.org', true))",
}


def _tz() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _uuid_pk() -> sa.Column[object]:
    return sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False)


def _created_at() -> sa.Column[object]:
    return sa.Column("created_at", _tz(), server_default=sa.text("now()"), nullable=False)


def _organizations() -> None:
    op.create_table(
        "organizations",
        _uuid_pk(),
        sa.Column("slug", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), server_default=sa.text("''"), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_organizations"),
        sa.UniqueConstraint("slug", name="uq_organizations_slug"),
        sa.CheckConstraint(f"slug ~ '{SLUG_PATTERN}'", name="ck_organizations_slug_valid"),
    )
    # The default organization owns every row made before organizations existed; any other
    # organization the videos already name becomes one too (a name that is no valid slug
    # stops the migration with the CHECK's error, before anything is half done).
    op.execute("INSERT INTO organizations (slug, name) VALUES ('default', 'Default')")
    op.execute(
        "INSERT INTO organizations (slug, name) SELECT DISTINCT org, org FROM videos"
        " WHERE org <> 'default'"
    )


def _api_keys() -> None:
    op.create_table(
        "api_keys",
        _uuid_pk(),
        sa.Column("public_id", sa.Text(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("key_hash", sa.Text(), nullable=False),
        sa.Column("expires_at", _tz(), nullable=True),
        _created_at(),
        sa.Column("last_used_at", _tz(), nullable=True),
        sa.Column("revoked_at", _tz(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("public_id", name="uq_api_keys_public_id"),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name="fk_api_keys_org_id_organizations"
        ),
        sa.CheckConstraint(
            f"scopes <@ ARRAY[{KNOWN_SCOPES}]::text[] AND cardinality(scopes) > 0",
            name="ck_api_keys_scopes_known",
        ),
    )
    op.create_index("ix_api_keys_org_id", "api_keys", ["org_id"])


def _quotas_and_usage() -> None:
    op.create_table(
        "org_quotas",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("videos_per_month", sa.Integer(), nullable=True),
        sa.Column("generation_seconds_per_month", sa.Integer(), nullable=True),
        sa.Column("cost_usd_per_month", sa.Numeric(12, 4), nullable=True),
        sa.Column("storage_bytes", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("org_id", name="pk_org_quotas"),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name="fk_org_quotas_org_id_organizations"
        ),
        sa.CheckConstraint(
            "videos_per_month >= 0 AND generation_seconds_per_month >= 0"
            " AND cost_usd_per_month >= 0 AND storage_bytes >= 0",
            name="ck_org_quotas_limits_not_negative",
        ),
    )
    op.create_table(
        "usage_reservations",
        sa.Column("video_id", sa.Uuid(), nullable=False),
        sa.Column("org", sa.Text(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("seconds", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Numeric(12, 4), nullable=False),
        _created_at(),
        sa.Column("released_at", _tz(), nullable=True),
        sa.PrimaryKeyConstraint("video_id", name="pk_usage_reservations"),
        sa.ForeignKeyConstraint(
            ["org"], ["organizations.slug"], name="fk_usage_reservations_org_organizations"
        ),
    )
    op.create_index(
        "ix_usage_reservations_org_period_start", "usage_reservations", ["org", "period_start"]
    )
    op.create_table(
        "quota_notices",
        sa.Column("org", sa.Text(), nullable=False),
        sa.Column("quota", sa.Text(), nullable=False),
        sa.Column("period", sa.Text(), nullable=False),
        sa.Column("level", sa.Text(), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("org", "quota", "period", "level", name="pk_quota_notices"),
        sa.ForeignKeyConstraint(
            ["org"], ["organizations.slug"], name="fk_quota_notices_org_organizations"
        ),
        sa.CheckConstraint("level IN ('warning', 'exceeded')", name="ck_quota_notices_level_valid"),
    )


def _videos_belong_to_organizations() -> None:
    op.create_foreign_key(
        "fk_videos_org_organizations", "videos", "organizations", ["org"], ["slug"]
    )
    # Every list is one organization's now: its index leads with org.
    op.drop_index("ix_videos_status_created_at_id", table_name="videos")
    op.drop_index("ix_videos_created_at_id", table_name="videos")
    op.create_index(
        "ix_videos_org_created_at_id",
        "videos",
        ["org", sa.text("created_at DESC"), sa.text("id DESC")],
    )
    op.create_index(
        "ix_videos_org_status_created_at_id",
        "videos",
        ["org", "status", sa.text("created_at DESC"), sa.text("id DESC")],
    )


def _row_level_security() -> None:
    # Roles are cluster-wide: another database of the cluster may have made it already (at
    # the same moment, even: a concurrent CREATE ROLE fails with unique_violation).
    op.execute(f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{TENANT_ROLE}') THEN
                BEGIN
                    CREATE ROLE {TENANT_ROLE} NOLOGIN;
                EXCEPTION WHEN duplicate_object OR unique_violation THEN
                    NULL;
                END;
            END IF;
            EXECUTE format('GRANT USAGE ON SCHEMA %I TO {TENANT_ROLE}', current_schema());
        END
        $$
    """)
    # The catalog's own user switches to the role inside tenant transactions.
    op.execute(f"GRANT {TENANT_ROLE} TO CURRENT_USER")
    for table, condition in ORG_OF_ROW.items():
        op.execute(f"GRANT SELECT ON {table} TO {TENANT_ROLE}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY tenant_rows ON {table} USING ({condition})")


def upgrade() -> None:
    _organizations()
    _api_keys()
    _quotas_and_usage()
    _videos_belong_to_organizations()
    _row_level_security()


def downgrade() -> None:
    for table in ORG_OF_ROW:
        op.execute(f"DROP POLICY IF EXISTS tenant_rows ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
        op.execute(f"REVOKE ALL ON {table} FROM {TENANT_ROLE}")
    op.drop_index("ix_videos_org_status_created_at_id", table_name="videos")
    op.drop_index("ix_videos_org_created_at_id", table_name="videos")
    op.create_index(
        "ix_videos_created_at_id", "videos", [sa.text("created_at DESC"), sa.text("id DESC")]
    )
    op.create_index(
        "ix_videos_status_created_at_id",
        "videos",
        ["status", sa.text("created_at DESC"), sa.text("id DESC")],
    )
    op.drop_constraint("fk_videos_org_organizations", "videos", type_="foreignkey")
    op.drop_table("quota_notices")
    op.drop_index("ix_usage_reservations_org_period_start", table_name="usage_reservations")
    op.drop_table("usage_reservations")
    op.drop_table("org_quotas")
    op.drop_index("ix_api_keys_org_id", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("organizations")
    # The role goes only when no other database of the cluster still grants it anything.
    op.execute(f"""
        DO $$
        BEGIN
            EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM {TENANT_ROLE}', current_schema());
            IF NOT EXISTS (
                SELECT FROM pg_shdepend d JOIN pg_roles r ON r.oid = d.refobjid
                WHERE d.refclassid = 'pg_authid'::regclass AND r.rolname = '{TENANT_ROLE}'
            ) THEN
                DROP ROLE {TENANT_ROLE};
            END IF;
        END
        $$
    """)
