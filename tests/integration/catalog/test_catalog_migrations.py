"""The catalog's schema comes from its packaged Alembic migrations, applied at start: on an empty
database, again as a no-op, from two starts at once, over a database of the previous revision,
down and up again, and matching the SQLAlchemy models."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from reelvault_catalog.migrate import alembic_config, current_revision, head_revision, migrate
from reelvault_catalog.models import Base
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

pytestmark = pytest.mark.integration

SEED_COLUMNS = {"id", "prompt", "image1_url", "image2_url", "status", "video_id", "video_url",
                "openai_url", "created_at", "updated_at"}
HEAD = "0007_queue_estimate"
TENANCY_TABLES = {"organizations", "api_keys", "org_quotas", "usage_reservations",
                  "quota_notices"}
PIPELINE_COLUMNS = {
    "model", "seconds", "size", "org", "progress", "provider", "reference_image_keys",
    "video_bucket", "video_key", "thumbnail_url", "thumbnail_bucket", "thumbnail_key",
    "thumbnail_bytes", "bytes",
    "sha256", "error_stage", "error_code", "error_message", "expires_at", "stored_at",
    "correlation_id", "requested_at",
}


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url)
    yield engine
    await engine.dispose()


def _schema(conn: Connection) -> dict[str, Any]:
    inspector = inspect(conn)
    return {
        "tables": set(inspector.get_table_names()),
        "columns": {
            c["name"]: (str(c["type"]), c["nullable"], c["default"])
            for c in inspector.get_columns("videos")
        },
        "indexes": {i["name"]: tuple(i["column_names"]) for i in inspector.get_indexes("videos")},
        "pk": inspector.get_pk_constraint("videos")["constrained_columns"],
    }


async def test_migrations_create_the_tables_and_reapply_as_a_no_op(
    engine: AsyncEngine,
) -> None:
    assert head_revision() == HEAD
    assert await migrate(engine) == HEAD
    async with engine.connect() as conn:
        schema = await conn.run_sync(_schema)
        assert await conn.run_sync(current_revision) == HEAD
    assert {"videos", "alembic_version"} | TENANCY_TABLES <= schema["tables"]
    columns = schema["columns"]
    assert set(columns) >= SEED_COLUMNS | PIPELINE_COLUMNS
    assert schema["pk"] == ["id"]
    indexes = schema["indexes"]
    assert {"ix_videos_org_created_at_id", "ix_videos_org_status_created_at_id"} <= set(indexes)

    # Again: nothing to do, nothing changes, still one version row.
    assert await migrate(engine) == HEAD
    async with engine.connect() as conn:
        assert await conn.run_sync(_schema) == schema
        versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
    assert [v[0] for v in versions] == [HEAD]


async def test_the_listing_indexes_are_newest_first(engine: AsyncEngine) -> None:
    await migrate(engine)
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'videos'"
        ))).all()
    definitions = {name: definition for name, definition in rows}
    assert "(org, created_at DESC, id DESC)" in definitions["ix_videos_org_created_at_id"]
    assert ("(org, status, created_at DESC, id DESC)"
            in definitions["ix_videos_org_status_created_at_id"])


async def test_two_replicas_migrating_at_once_both_succeed(database_url: str) -> None:
    engines = [create_async_engine(database_url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(e) for e in engines))
    finally:
        for e in engines:
            await e.dispose()
    assert results == [HEAD] * 3


async def test_models_match_the_migrated_schema(engine: AsyncEngine) -> None:
    await migrate(engine)

    def differences(conn: Connection) -> list[object]:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, Base.metadata))

    async with engine.connect() as conn:
        diffs = await conn.run_sync(differences)
    assert diffs == []


async def test_the_status_check_constraint_refuses_unknown_statuses(engine: AsyncEngine) -> None:
    await migrate(engine)
    insert = text(
        "INSERT INTO videos (id, prompt, status, created_at, updated_at, model, seconds, size,"
        " requested_at, correlation_id) VALUES (:id, 'p', :status, :t, :t, 'sora-2', '4',"
        " '720x1280', :t, 'c')"
    )
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(insert, {"id": uuid.uuid4(), "status": "queued", "t": now})
    with pytest.raises(IntegrityError, match="ck_videos_status_valid"):
        async with engine.begin() as conn:
            await conn.execute(insert, {"id": uuid.uuid4(), "status": "archived", "t": now})


async def _run_alembic(engine: AsyncEngine, action: str, revision: str) -> None:
    def run(conn: Connection) -> None:
        getattr(command, action)(alembic_config(conn), revision)

    async with engine.begin() as conn:
        await conn.run_sync(run)


INSERT_VIDEO = text(
    "INSERT INTO videos (id, prompt, org, created_at, updated_at, model, seconds, size,"
    " requested_at, correlation_id) VALUES (:id, 'p', :org, :t, :t, 'sora-2', '4',"
    " '720x1280', :t, 'c')"
)


async def test_the_default_organization_and_those_of_existing_videos_are_created(
    engine: AsyncEngine,
) -> None:
    # A catalog of the previous revision, with videos of the default and of another org.
    await _run_alembic(engine, "upgrade", "0001_videos")
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        for org in ("default", "legacy-team", "legacy-team"):
            await conn.execute(INSERT_VIDEO, {"id": uuid.uuid4(), "org": org, "t": now})
    assert await migrate(engine) == HEAD
    async with engine.connect() as conn:
        slugs = (await conn.execute(text("SELECT slug FROM organizations ORDER BY slug"))).all()
    assert [row[0] for row in slugs] == ["default", "legacy-team"]
    # From now on a video names an organization that exists.
    with pytest.raises(IntegrityError, match="fk_videos_org_organizations"):
        async with engine.begin() as conn:
            await conn.execute(INSERT_VIDEO, {"id": uuid.uuid4(), "org": "nobody", "t": now})


async def test_down_to_the_previous_revision_and_up_again(engine: AsyncEngine) -> None:
    await migrate(engine)
    await _run_alembic(engine, "downgrade", "0001_videos")
    async with engine.connect() as conn:
        schema = await conn.run_sync(_schema)
        policies = (await conn.execute(text("SELECT count(*) FROM pg_policies"))).scalar_one()
    assert schema["tables"] & TENANCY_TABLES == set()
    assert {"ix_videos_created_at_id", "ix_videos_status_created_at_id"} <= set(
        schema["indexes"])
    assert policies == 0
    assert await migrate(engine) == HEAD
    async with engine.connect() as conn:
        assert (await conn.run_sync(_schema))["tables"] >= TENANCY_TABLES


@pytest.mark.parametrize(("slug", "valid"), [
    ("acme", True), ("a-1", True), ("x" * 40, True),
    ("ab", False), ("x" * 41, False), ("-acme", False), ("acme-", False), ("Acme", False),
    ("ac_me", False), ("ac.me", False),
])
async def test_the_slug_check_follows_the_contract(
    engine: AsyncEngine, slug: str, valid: bool
) -> None:
    await migrate(engine)
    insert = text("INSERT INTO organizations (slug) VALUES (:slug)")
    if valid:
        async with engine.begin() as conn:
            await conn.execute(insert, {"slug": slug})
        return
    with pytest.raises(IntegrityError, match="ck_organizations_slug_valid"):
        async with engine.begin() as conn:
            await conn.execute(insert, {"slug": slug})


@pytest.mark.parametrize(("scopes", "valid"), [
    (["videos:read"], True), (["admin", "videos:write"], True),
    ([], False), (["videos:delete"], False), (["admin", "root"], False),
])
async def test_the_scopes_check_knows_every_scope_and_only_those(
    engine: AsyncEngine, scopes: list[str], valid: bool
) -> None:
    await migrate(engine)
    insert = text(
        "INSERT INTO api_keys (public_id, org_id, scopes, key_hash) SELECT :pid, id, :scopes,"
        " 'h' FROM organizations WHERE slug = 'default'"
    )
    params = {"pid": uuid.uuid4().hex[:16], "scopes": scopes}
    if valid:
        async with engine.begin() as conn:
            await conn.execute(insert, params)
        return
    with pytest.raises(IntegrityError, match="ck_api_keys_scopes_known"):
        async with engine.begin() as conn:
            await conn.execute(insert, params)
