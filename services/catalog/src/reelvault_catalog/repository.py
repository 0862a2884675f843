"""The catalog's database adapter: applies events to rows and answers the read queries.

Every event is applied in one transaction: lock the row (``SELECT ... FOR UPDATE``), ask the
projection what to write, write it. Replicas working on the same video therefore take turns, and
two inserts of the same id end in one row (``ON CONFLICT DO NOTHING``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from reelvault_common.contracts.catalog import (
    VIDEO_STATUSES,
    CatalogStats,
    VideoPage,
    VideoRecord,
    VideoStatus,
)
from reelvault_common.contracts.events import VideoEvent
from sqlalchemy import func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)

from reelvault_catalog.cursor import decode_cursor, encode_cursor
from reelvault_catalog.models import VideoRow
from reelvault_catalog.projection import (
    Insert,
    Outcome,
    Update,
    VideoState,
    project,
)
from reelvault_catalog.settings import CatalogSettings


def make_engine(settings: CatalogSettings) -> AsyncEngine:
    return create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_s,
        # A connection dropped by a Postgres restart is detected at checkout, not mid-query.
        pool_pre_ping=True,
        connect_args={
            "timeout": settings.db_pool_timeout_s,
            "server_settings": {
                "application_name": f"reelvault-catalog-{settings.namespace}",
                "statement_timeout": str(int(settings.db_statement_timeout_s * 1000)),
            },
        },
    )


def to_record(row: VideoRow) -> VideoRecord:
    return VideoRecord(
        id=row.id,
        status=row.status,  # the CHECK constraint keeps it one of VIDEO_STATUSES
        progress=row.progress,
        prompt=row.prompt,
        model=row.model,
        seconds=row.seconds,
        size=row.size,
        org=row.org,
        image1_url=row.image1_url,
        image2_url=row.image2_url,
        reference_image_keys=list(row.reference_image_keys or []),
        provider=row.provider,
        provider_job_id=row.provider_job_id,
        video_url=row.video_url,
        openai_url=row.openai_url,
        video_bucket=row.video_bucket,
        video_key=row.video_key,
        thumbnail_url=row.thumbnail_url,
        thumbnail_bucket=row.thumbnail_bucket,
        thumbnail_key=row.thumbnail_key,
        bytes=row.bytes,
        sha256=row.sha256,
        error_stage=row.error_stage,
        error_code=row.error_code,
        error_message=row.error_message,
        expires_at=row.expires_at,
        stored_at=row.stored_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


@dataclass(frozen=True)
class Applied:
    """What applying one event did."""

    outcome: Outcome
    # False when an insert lost the race to a concurrent one (the row exists all the same).
    written: bool


class CatalogRepository:
    def __init__(self, engine: AsyncEngine, public_base_url: str) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._public_base_url = public_base_url

    # --- writes ---------------------------------------------------------------------------
    async def apply(self, event: VideoEvent, *, now: datetime | None = None) -> Applied:
        async with self._sessions() as session, session.begin():
            row = await session.get(VideoRow, event.video_id, with_for_update=True)
            state = VideoState.of(row) if row is not None else None
            outcome = project(
                state, event, now=now or datetime.now(UTC), public_base_url=self._public_base_url
            )
            if isinstance(outcome, Insert):
                result = await session.execute(
                    insert(VideoRow)
                    .values(**outcome.values)
                    .on_conflict_do_nothing(index_elements=[VideoRow.id])
                    .returning(VideoRow.id)
                )
                return Applied(outcome, written=result.scalar_one_or_none() is not None)
            if isinstance(outcome, Update):
                await session.execute(
                    update(VideoRow)
                    .where(VideoRow.id == event.video_id)
                    .values(**outcome.changes)
                    .execution_options(synchronize_session=False)
                )
                return Applied(outcome, written=True)
            return Applied(outcome, written=False)

    # --- reads ----------------------------------------------------------------------------
    async def get(self, video_id: uuid.UUID) -> VideoRecord | None:
        async with self._sessions() as session:
            row = await session.get(VideoRow, video_id)
            return to_record(row) if row is not None else None

    async def list(
        self, *, status: VideoStatus | None = None, limit: int = 20, cursor: str | None = None
    ) -> VideoPage:
        """Newest first. Raises ``InvalidCursor`` for a cursor this catalog did not make."""
        query = select(VideoRow)
        if status is not None:
            query = query.where(VideoRow.status == status)
        if cursor is not None:
            created_at, last_id = decode_cursor(cursor)
            # Row-value comparison: one index range scan on (created_at DESC, id DESC).
            query = query.where(tuple_(VideoRow.created_at, VideoRow.id) < (created_at, last_id))
        query = query.order_by(VideoRow.created_at.desc(), VideoRow.id.desc()).limit(limit + 1)
        async with self._sessions() as session:
            rows = list((await session.scalars(query)).all())
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None
        return VideoPage(items=[to_record(row) for row in rows], next_cursor=next_cursor)

    async def stats(self) -> CatalogStats:
        query = select(
            VideoRow.status, func.count(), func.coalesce(func.sum(VideoRow.bytes), 0)
        ).group_by(VideoRow.status)
        async with self._sessions() as session:
            rows = (await session.execute(query)).all()
        by_status: dict[str, int] = dict.fromkeys(VIDEO_STATUSES, 0)
        stored_bytes = 0
        for status, count, total_bytes in rows:
            by_status[status] = int(count)
            if status == "completed":
                stored_bytes += int(total_bytes or 0)
        return CatalogStats(
            by_status=by_status, total=sum(by_status.values()), stored_bytes=stored_bytes
        )

    async def ping(self) -> bool:
        """True when the database answers ``SELECT 1``; raises on connection problems."""
        async with self._engine.connect() as conn:
            answer: object = (await conn.execute(text("SELECT 1"))).scalar_one()
            return answer == 1

