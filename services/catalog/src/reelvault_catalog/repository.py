"""The catalog's database adapter: applies events to rows and answers the read queries.

Reads of videos are a tenant's (``get``, ``list``: in a tenant transaction, see ``tenant.py``);
the projection and ``stats`` are the system's and see every organization.

Events are applied in one transaction per batch (``apply_many``; ``apply`` is a batch of one):
lock the batch's rows (``SELECT ... FOR UPDATE``, in id order), ask the projection what each
event writes (a video's events in their order, each seeing the row as the previous left it),
write it. Replicas working on the same video therefore take turns, and two inserts of the same
id end in one row (``ON CONFLICT DO NOTHING``; the loser then locks the winner's row). Videos
are handled in id order, so two batches never wait for each other in a circle.

Writes use SQLAlchemy Core (no ORM session): the projection is the hot path of the catalog.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from reelvault_common.contracts.catalog import (
    VIDEO_STATUSES,
    CatalogStats,
    VideoPage,
    VideoRecord,
    VideoStatus,
)
from reelvault_common.contracts.events import VideoEvent
from sqlalchemy import (
    Column,
    Table,
    Uuid,
    any_,
    bindparam,
    func,
    inspect,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)

from reelvault_catalog.cursor import decode_cursor, encode_cursor
from reelvault_catalog.models import DELETED, UsageReservationRow, VideoRow
from reelvault_catalog.projection import (
    STATE_FIELDS,
    Insert,
    Outcome,
    Update,
    VideoState,
    gives_reservation_back,
    project,
)
from reelvault_catalog.settings import CatalogSettings
from reelvault_catalog.tenant import enter_tenant


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
        cost_usd=row.cost_usd,
        estimated_start_at=row.estimated_start_at,
        queue_position=row.queue_position,
        stored_at=row.stored_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


# ORM attribute -> table column (``provider_job_id`` is the seed's ``video_id`` column).
_COLUMNS: dict[str, Column[object]] = {
    attr.key: attr.columns[0] for attr in inspect(VideoRow).column_attrs  # type: ignore[misc]
}
_TABLE = cast("Table", VideoRow.__table__)
_STATE_COLUMNS = [_COLUMNS[name] for name in STATE_FIELDS]


def _row_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """ORM attribute names -> column names, for Core statements."""
    return {_COLUMNS[name].name: value for name, value in values.items()}


# The projection's statements are built once and reused with new parameters: building one per
# event (``.values(**...)``) costs more CPU in SQLAlchemy's cache-key traversal than the query.
# ``id = ANY(:ids)`` with one array parameter, not ``IN (:ids_1, ...)``: an expanding IN is
# re-rendered for every execution (and is a new prepared statement per batch size).
_LOCK = (
    select(_COLUMNS["id"], *_STATE_COLUMNS)
    .where(_COLUMNS["id"] == any_(bindparam("ids", type_=ARRAY(Uuid()))))
    .order_by(_COLUMNS["id"])
    .with_for_update()
)
_INSERT = (
    insert(_TABLE).on_conflict_do_nothing(index_elements=[_COLUMNS["id"]]).returning(_COLUMNS["id"])
)
_UPDATES: dict[tuple[str, ...], Any] = {}
# A failed video whose provider never took the job gives its quota reservation back, in the
# transaction that records the failure (a redelivery then finds nothing left to do).
_RELEASE = (
    update(UsageReservationRow)
    .where(
        UsageReservationRow.video_id == bindparam("row_id"),
        UsageReservationRow.released_at.is_(None),
    )
    .values(released_at=func.now())
)


def _update_for(columns: tuple[str, ...]) -> Any:
    """``UPDATE videos SET <columns> WHERE id = :row_id``, one statement per set of columns."""
    statement = _UPDATES.get(columns)
    if statement is None:
        statement = _UPDATES[columns] = (
            update(_TABLE)
            .where(_COLUMNS["id"] == bindparam("row_id"))
            .values({name: bindparam(f"set_{name}") for name in columns})
        )
    return statement


def _state(row: Sequence[Any]) -> VideoState:
    return VideoState(**dict(zip(STATE_FIELDS, row, strict=True)))


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
        [applied] = await self.apply_many([event], now=now)
        return applied

    async def apply_many(
        self, events: Sequence[VideoEvent], *, now: datetime | None = None
    ) -> list[Applied]:
        """Apply ``events`` in one transaction; what each did, in their order. Raises (and
        writes nothing) if the database refuses any of them."""
        if not events:
            return []
        moment = now or datetime.now(UTC)
        by_video: dict[uuid.UUID, list[int]] = {}
        for index, event in enumerate(events):
            by_video.setdefault(event.video_id, []).append(index)
        results: list[Applied | None] = [None] * len(events)
        async with self._engine.begin() as conn:
            states = await self._lock(conn, sorted(by_video))
            for video_id in sorted(by_video):
                for index in by_video[video_id]:
                    results[index] = await self._apply_one(conn, events[index], states, moment)
        return [result for result in results if result is not None]

    async def _lock(
        self, conn: AsyncConnection, video_ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, VideoState]:
        rows = await conn.execute(_LOCK, {"ids": video_ids})
        return {cast("uuid.UUID", row[0]): _state(row[1:]) for row in rows}

    async def _apply_one(
        self,
        conn: AsyncConnection,
        event: VideoEvent,
        states: dict[uuid.UUID, VideoState],
        now: datetime,
    ) -> Applied:
        video_id = event.video_id
        outcome = project(
            states.get(video_id), event, now=now, public_base_url=self._public_base_url
        )
        if isinstance(outcome, Insert):
            inserted = await conn.execute(_INSERT, _row_values(outcome.values))
            written = inserted.scalar_one_or_none() is not None
            if written:
                values = outcome.values
                states[video_id] = VideoState(
                    **{name: values[name] for name in STATE_FIELDS if name in values}
                )
            else:
                # Another replica inserted it first (and has committed): take its row.
                states.update(await self._lock(conn, [video_id]))
            return Applied(outcome, written=written)
        if isinstance(outcome, Update):
            values = _row_values(outcome.changes)
            columns = tuple(sorted(values))
            await conn.execute(
                _update_for(columns),
                {"row_id": video_id, **{f"set_{name}": values[name] for name in columns}},
            )
            after = states[video_id] = states[video_id].with_changes(outcome.changes)
            if gives_reservation_back(event, after):
                await conn.execute(_RELEASE, {"row_id": video_id})
            return Applied(outcome, written=True)
        return Applied(outcome, written=False)

    # --- reads ----------------------------------------------------------------------------
    async def get(self, org: str, video_id: uuid.UUID) -> VideoRecord | None:
        """``org``'s video ``video_id`` (None for another organization's: read as ``org``,
        row-level security hides it even if the query forgot to)."""
        # A deleted video's tombstone is no video to its readers.
        query = select(VideoRow).where(
            VideoRow.id == video_id, VideoRow.org == org, VideoRow.status != DELETED
        )
        async with self._sessions() as session, session.begin():
            await enter_tenant(session, org)
            row = (await session.scalars(query)).one_or_none()
            return to_record(row) if row is not None else None

    async def list(
        self,
        org: str,
        *,
        status: VideoStatus | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> VideoPage:
        """``org``'s videos, newest first. Raises ``InvalidCursor`` for a cursor this catalog
        did not make."""
        query = select(VideoRow).where(VideoRow.org == org, VideoRow.status != DELETED)
        if status is not None:
            query = query.where(VideoRow.status == status)
        if cursor is not None:
            created_at, last_id = decode_cursor(cursor)
            # Row-value comparison: one range scan on (org, created_at DESC, id DESC).
            query = query.where(tuple_(VideoRow.created_at, VideoRow.id) < (created_at, last_id))
        query = query.order_by(VideoRow.created_at.desc(), VideoRow.id.desc()).limit(limit + 1)
        async with self._sessions() as session, session.begin():
            await enter_tenant(session, org)
            rows = list((await session.scalars(query)).all())
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None
        return VideoPage(items=[to_record(row) for row in rows], next_cursor=next_cursor)

    async def stats(self) -> CatalogStats:
        query = select(
            VideoRow.status, func.count(), func.coalesce(func.sum(VideoRow.bytes), 0)
        ).group_by(VideoRow.status)
        # The provider is known from the first video.generation.waiting on.
        waiting = select(VideoRow.provider, func.count()).where(
            VideoRow.status == "queued", VideoRow.estimated_start_at.is_not(None)
        ).group_by(VideoRow.provider)
        async with self._sessions() as session:
            rows = (await session.execute(query)).all()
            waiting_rows = (await session.execute(waiting)).all()
        by_status: dict[str, int] = dict.fromkeys(VIDEO_STATUSES, 0)
        stored_bytes = 0
        for status, count, total_bytes in rows:
            by_status[status] = int(count)
            if status == "completed":
                stored_bytes += int(total_bytes or 0)
        return CatalogStats(
            by_status=by_status, total=sum(by_status.values()), stored_bytes=stored_bytes,
            waiting_by_provider={str(provider): int(count) for provider, count in waiting_rows},
        )

    async def ping(self) -> bool:
        """True when the database answers ``SELECT 1``; raises on connection problems."""
        async with self._engine.connect() as conn:
            answer: object = (await conn.execute(text("SELECT 1"))).scalar_one()
            return answer == 1

