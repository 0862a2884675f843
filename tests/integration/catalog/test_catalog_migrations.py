"""The catalog's schema comes from its packaged Alembic migrations, applied at start: on an empty
database, again as a no-op, from two starts at once, and matching the SQLAlchemy models."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from reelvault_catalog.migrate import current_revision, head_revision, migrate
from reelvault_catalog.models import Base
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

pytestmark = pytest.mark.integration

SEED_COLUMNS = {"id", "prompt", "image1_url", "image2_url", "status", "video_id", "video_url",
                "openai_url", "created_at", "updated_at"}
PIPELINE_COLUMNS = {
    "model", "seconds", "size", "org", "progress", "provider", "reference_image_keys",
    "video_bucket", "video_key", "thumbnail_url", "thumbnail_bucket", "thumbnail_key", "bytes",
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


async def test_migrations_create_the_videos_table_and_reapply_as_a_no_op(
    engine: AsyncEngine,
) -> None:
    assert head_revision() == "0001_videos"
    assert await migrate(engine) == "0001_videos"
    async with engine.connect() as conn:
        schema = await conn.run_sync(_schema)
        assert await conn.run_sync(current_revision) == "0001_videos"
    assert {"videos", "alembic_version"} <= schema["tables"]
    columns = schema["columns"]
    assert set(columns) >= SEED_COLUMNS | PIPELINE_COLUMNS
    assert schema["pk"] == ["id"]
    indexes = schema["indexes"]
    assert {"ix_videos_created_at_id", "ix_videos_status_created_at_id"} <= set(indexes)

    # Again: nothing to do, nothing changes, still one version row.
    assert await migrate(engine) == "0001_videos"
    async with engine.connect() as conn:
        assert await conn.run_sync(_schema) == schema
        versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
    assert [v[0] for v in versions] == ["0001_videos"]


async def test_the_listing_indexes_are_newest_first(engine: AsyncEngine) -> None:
    await migrate(engine)
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'videos'"
        ))).all()
    definitions = {name: definition for name, definition in rows}
    assert "(created_at DESC, id DESC)" in definitions["ix_videos_created_at_id"]
    assert "(status, created_at DESC, id DESC)" in definitions["ix_videos_status_created_at_id"]


async def test_two_replicas_migrating_at_once_both_succeed(database_url: str) -> None:
    engines = [create_async_engine(database_url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(e) for e in engines))
    finally:
        for e in engines:
            await e.dispose()
    assert results == ["0001_videos"] * 3


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
