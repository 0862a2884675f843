"""Deleting videos: one path for a client's ``DELETE`` and for the retention sweeper.

Deleting a video turns its row into a tombstone (status ``deleted``, ``deleted_at``,
``deleted_by``) and announces ``video.deleted`` with the objects to remove (the archiver, which
owns writes to storage, removes them). A video still queued or being generated is canceled
first: ``video.cancel.requested`` is acked by the stream before the tombstone commits.

Crash safety: the tombstone commits first, then ``video.deleted`` is published and
``deletion_announced_at`` recorded. A tombstone left unannounced (a crash, the stream briefly
away) is announced again by the sweeper once it is ``announce_grace_s`` old; the event id is
derived from the video, so a second announcement is dropped by the stream.

Replicas: every row a pass works on is taken with ``FOR UPDATE SKIP LOCKED``, so two
catalogs sweeping at once take disjoint batches and never wait for each other; a client's
delete of a row the sweeper holds waits for that batch, then finds the tombstone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from reelvault_common.contracts.catalog import (
    CatalogErrorCode,
    CatalogRpc,
    DeletedVideo,
    DeleteVideo,
    OrgInfo,
    RpcReply,
    SetRetention,
)
from reelvault_common.contracts.events import ObjectRef, VideoCancelRequested, VideoDeleted
from sqlalchemy import any_, bindparam, func, literal, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.types import Uuid

from reelvault_catalog.errors import NotFound
from reelvault_catalog.models import DELETED, OrganizationRow, VideoRow
from reelvault_catalog.replies import Answer, answer_with, error_reply

log = logging.getLogger(__name__)

# ``deleted_by`` of a video its organization's retention deleted.
RETENTION = "retention"
# Statuses of a video whose generation may still be running: canceled before deleting.
UNFINISHED = frozenset({"queued", "processing"})

Publish = Callable[[VideoDeleted | VideoCancelRequested], Awaitable[object]]
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- pure rules ---------------------------------------------------------------------------
def stored_objects(row: Mapping[Any, Any]) -> tuple[ObjectRef, ...]:
    """The objects a row refers to (video, thumbnail), as far as it records them."""
    found = []
    for bucket, key in (("video_bucket", "video_key"), ("thumbnail_bucket", "thumbnail_key")):
        if row.get(bucket) and row.get(key):
            found.append(ObjectRef(bucket=row[bucket], key=row[key]))
    return tuple(found)


def stored_bytes(row: Mapping[Any, Any]) -> int:
    return int(row.get("bytes") or 0) + int(row.get("thumbnail_bytes") or 0)


def retention_cutoff(now: datetime, delete_after_days: int | None) -> datetime | None:
    """Videos created before this are expired; None: the organization keeps them forever."""
    if not delete_after_days:
        return None
    return now - timedelta(days=delete_after_days)


def needs_cancel(status: str) -> bool:
    return status in UNFINISHED


@dataclass(frozen=True)
class Tombstone:
    """A deleted video, as the catalog announces it."""

    video_id: uuid.UUID
    org: str
    correlation_id: str
    deleted_at: datetime
    deleted_by: str | None
    objects: tuple[ObjectRef, ...]
    bytes: int
    announced: bool

    @classmethod
    def of(cls, row: Mapping[Any, Any]) -> Tombstone:
        return cls(
            video_id=row["id"], org=row["org"], correlation_id=row["correlation_id"],
            deleted_at=row["deleted_at"], deleted_by=row["deleted_by"],
            objects=stored_objects(row), bytes=stored_bytes(row),
            announced=row["deletion_announced_at"] is not None,
        )

    def event(self) -> VideoDeleted:
        return VideoDeleted.new(
            video_id=self.video_id, org=self.org, correlation_id=self.correlation_id,
            deleted_by=self.deleted_by, objects=self.objects, bytes=self.bytes,
            occurred_at=self.deleted_at,
        )

    def record(self) -> DeletedVideo:
        return DeletedVideo(id=self.video_id, org=self.org, deleted_at=self.deleted_at,
                            deleted_by=self.deleted_by)


@dataclass(frozen=True)
class SweepResult:
    deleted: int = 0
    announced: int = 0

    @property
    def total(self) -> int:
        return self.deleted + self.announced


# --- the database -------------------------------------------------------------------------
_COLUMNS = (
    VideoRow.id, VideoRow.org, VideoRow.status, VideoRow.correlation_id,
    VideoRow.video_bucket, VideoRow.video_key, VideoRow.thumbnail_bucket,
    VideoRow.thumbnail_key, VideoRow.bytes, VideoRow.thumbnail_bytes, VideoRow.deleted_at,
    VideoRow.deleted_by, VideoRow.deletion_announced_at,
)
_IDS = bindparam("ids", type_=ARRAY(Uuid()))


class Deletions:
    """Deletes videos (``delete``) and sweeps (``sweep_once``, ``run``): expired videos of
    organizations with a retention, and tombstones whose announcement was lost."""

    def __init__(
        self,
        engine: AsyncEngine,
        publish: Publish,
        *,
        batch_size: int = 100,
        max_deletions_per_s: float = 50.0,
        announce_grace_s: float = 60.0,
        clock: Clock = utcnow,
    ) -> None:
        self._engine = engine
        self._publish = publish
        self._batch_size = batch_size
        self._max_per_s = max_deletions_per_s
        self._announce_grace = timedelta(seconds=announce_grace_s)
        self._clock = clock

    # --- one video ----------------------------------------------------------------------
    async def delete(
        self, org: str, video_id: uuid.UUID, deleted_by: str | None
    ) -> DeletedVideo | None:
        """Delete ``org``'s video (None: it has no such video). Deleting a tombstone answers
        the same tombstone (and announces it again if that never succeeded)."""
        now = self._clock()
        query = (select(*_COLUMNS)
                 .where(VideoRow.id == video_id, VideoRow.org == org).with_for_update())
        async with self._engine.begin() as conn:
            found = (await conn.execute(query)).mappings().one_or_none()
            if found is None:
                return None
            row: Mapping[Any, Any] = found
            if row["status"] != DELETED:
                [row] = await self._tombstone(conn, [row], deleted_by, now)
        tombstone = Tombstone.of(row)
        if not tombstone.announced:
            async with self._engine.begin() as conn:
                await self._announce(conn, [tombstone], now)
        return tombstone.record()

    async def set_retention(self, org: str, delete_after_days: int) -> OrgInfo:
        statement = (
            update(OrganizationRow)
            .where(OrganizationRow.slug == org)
            .values(delete_after_days=delete_after_days or None)
            .returning(OrganizationRow.id, OrganizationRow.slug, OrganizationRow.name,
                       OrganizationRow.created_at, OrganizationRow.delete_after_days)
        )
        async with self._engine.begin() as conn:
            row = (await conn.execute(statement)).mappings().one_or_none()
        if row is None:
            raise NotFound(f"no organization {org!r}")
        return OrgInfo.model_validate(dict(row))

    # --- the sweeper --------------------------------------------------------------------
    async def sweep_once(self, now: datetime | None = None) -> SweepResult:
        """One batch of expired videos deleted and one of lost announcements made again."""
        moment = now or self._clock()
        return SweepResult(deleted=await self._delete_expired(moment),
                           announced=await self._announce_lost(moment))

    async def run(self, interval_s: float, stopping: asyncio.Event) -> None:
        """Sweep until ``stopping``: batch after batch while there is work, at most
        ``max_deletions_per_s``, then every ``interval_s``. A failed pass (the database or
        the stream away) is logged and tried again at the next interval."""
        while not stopping.is_set():
            pause = interval_s
            try:
                result = await self.sweep_once()
                if result.total:
                    log.info("retention sweep: %d videos deleted, %d deletions announced again",
                             result.deleted, result.announced)
                if result.deleted >= self._batch_size or result.announced >= self._batch_size:
                    pause = result.total / self._max_per_s
            except Exception as exc:
                log.warning("retention sweep failed, trying again in %.0fs: %r", interval_s, exc)
            if not stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), pause)

    async def _delete_expired(self, now: datetime) -> int:
        days = func.make_interval(0, 0, 0, OrganizationRow.delete_after_days)
        query = (
            select(*_COLUMNS)
            .join(OrganizationRow, OrganizationRow.slug == VideoRow.org)
            .where(
                OrganizationRow.delete_after_days > 0,
                VideoRow.status != DELETED,
                VideoRow.created_at < literal(now) - days,
            )
            .order_by(VideoRow.created_at)
            .limit(self._batch_size)
            .with_for_update(of=VideoRow, skip_locked=True)
        )
        async with self._engine.begin() as conn:
            rows = list((await conn.execute(query)).mappings().all())
            if not rows:
                return 0
            tombstoned = await self._tombstone(conn, rows, RETENTION, now)
        async with self._engine.begin() as conn:
            await self._announce(conn, [Tombstone.of(row) for row in tombstoned], now)
        return len(rows)

    async def _announce_lost(self, now: datetime) -> int:
        query = (
            select(*_COLUMNS)
            .where(VideoRow.status == DELETED, VideoRow.deletion_announced_at.is_(None),
                   VideoRow.deleted_at < now - self._announce_grace)
            .order_by(VideoRow.deleted_at)
            .limit(self._batch_size)
            .with_for_update(skip_locked=True)
        )
        async with self._engine.begin() as conn:
            rows = (await conn.execute(query)).mappings().all()
            await self._announce(conn, [Tombstone.of(row) for row in rows], now)
        return len(rows)

    # --- shared steps -------------------------------------------------------------------
    async def _tombstone(
        self, conn: AsyncConnection, rows: Sequence[Mapping[Any, Any]], deleted_by: str | None,
        now: datetime,
    ) -> list[dict[str, Any]]:
        """Cancel the unfinished ones (acked before anything commits), then write the
        tombstones; the rows as they are now."""
        for row in rows:
            if needs_cancel(row["status"]):
                await self._publish(VideoCancelRequested.new(
                    video_id=row["id"], org=row["org"], correlation_id=row["correlation_id"],
                    requested_by=deleted_by,
                ))
        ids = [row["id"] for row in rows]
        await conn.execute(
            update(VideoRow).where(VideoRow.id == any_(_IDS))
            .values(status=DELETED, deleted_at=now, deleted_by=deleted_by, updated_at=now),
            {"ids": ids},
        )
        return [{**row, "status": DELETED, "deleted_at": now, "deleted_by": deleted_by}
                for row in rows]

    async def _announce(
        self, conn: AsyncConnection, tombstones: Sequence[Tombstone], now: datetime
    ) -> None:
        """Publish each ``video.deleted`` (acked by the stream), then record it announced."""
        if not tombstones:
            return
        for tombstone in tombstones:
            await self._publish(tombstone.event())
        await conn.execute(
            update(VideoRow)
            .where(VideoRow.id == any_(_IDS), VideoRow.deletion_announced_at.is_(None))
            .values(deletion_announced_at=now),
            {"ids": [tombstone.video_id for tombstone in tombstones]},
        )


# --- request/reply ------------------------------------------------------------------------
class DeletionHandlers:
    """The ``delete`` and ``orgs.retention`` RPCs."""

    def __init__(self, deletions: Deletions) -> None:
        self._deletions = deletions

    async def answer_delete(self, body: bytes) -> RpcReply:
        async def act(request: DeleteVideo) -> RpcReply:
            deleted = await self._deletions.delete(request.org, request.video_id,
                                                   request.deleted_by)
            if deleted is None:
                return error_reply(CatalogErrorCode.NOT_FOUND, f"no video {request.video_id}")
            return RpcReply(ok=True, deleted=deleted)
        return await answer_with(DeleteVideo, body, act)

    async def answer_set_retention(self, body: bytes) -> RpcReply:
        async def act(request: SetRetention) -> RpcReply:
            org = await self._deletions.set_retention(request.org, request.delete_after_days)
            return RpcReply(ok=True, org=org)
        return await answer_with(SetRetention, body, act)

    def answers(self) -> dict[CatalogRpc, Answer]:
        return {
            CatalogRpc.DELETE: self.answer_delete,
            CatalogRpc.ORGS_RETENTION: self.answer_set_retention,
        }
