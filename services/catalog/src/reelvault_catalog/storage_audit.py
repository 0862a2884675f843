"""What other services ask the catalog about stored objects, since only it reads Postgres:

- which uploads some video references (the archiver removes the others once they are old);
- every row that names a stored object, page by page (``reelvault audit`` compares them with
  storage);
- recording that a live video's object is missing (``storage_missing_at``, ``audit --repair``).

A deleted video's row counts as a reference to its uploads: an upload is an orphan only when
no video ever named it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

from reelvault_common.contracts.catalog import (
    CatalogRpc,
    FindReferencedUploads,
    ListStoredRows,
    MarkStorageMissing,
    RpcReply,
    StoredRow,
    StoredRowPage,
)
from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from reelvault_catalog.errors import NotFound
from reelvault_catalog.models import DELETED, VideoRow
from reelvault_catalog.replies import Answer, answer_with
from reelvault_catalog.tenant import tenant_transaction

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def referenced_among(asked: Iterable[str], references: Iterable[Sequence[str]]) -> list[str]:
    """The asked keys that appear in any of the rows' reference lists, sorted."""
    wanted = set(asked)
    return sorted({key for keys in references for key in keys if key in wanted})


_STORED_COLUMNS = (
    VideoRow.id, VideoRow.org, VideoRow.status, VideoRow.video_bucket, VideoRow.video_key,
    VideoRow.thumbnail_bucket, VideoRow.thumbnail_key, VideoRow.sha256, VideoRow.bytes,
    VideoRow.storage_missing_at,
)


class StorageAudit:
    def __init__(self, engine: AsyncEngine, *, clock: Clock = utcnow) -> None:
        self._engine = engine
        self._clock = clock

    async def referenced_uploads(self, org: str, keys: Sequence[str]) -> list[str]:
        query = select(VideoRow.reference_image_keys).where(
            VideoRow.org == org, VideoRow.reference_image_keys.overlap(list(keys)))
        # A tenant read: row-level security keeps it inside ``org`` whatever the query says.
        async with tenant_transaction(self._engine, org) as conn:
            rows = (await conn.execute(query)).scalars().all()
        return referenced_among(keys, rows)

    async def stored_rows(
        self, org: str | None, after: uuid.UUID | None, limit: int
    ) -> StoredRowPage:
        query = (select(*_STORED_COLUMNS)
                 .where(or_(VideoRow.video_key.is_not(None), VideoRow.thumbnail_key.is_not(None)))
                 .order_by(VideoRow.id).limit(limit + 1))
        if org is not None:
            query = query.where(VideoRow.org == org)
        if after is not None:
            query = query.where(VideoRow.id > after)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        items = [StoredRow.model_validate(dict(row)) for row in rows[:limit]]
        more = len(rows) > limit
        return StoredRowPage(items=items, next_after=items[-1].id if more and items else None)

    async def mark_missing(self, org: str, video_id: uuid.UUID) -> None:
        statement = (
            update(VideoRow)
            .where(VideoRow.id == video_id, VideoRow.org == org, VideoRow.status != DELETED)
            .values(storage_missing_at=func.coalesce(VideoRow.storage_missing_at, self._clock()))
            .returning(VideoRow.id)
        )
        async with self._engine.begin() as conn:
            marked = (await conn.execute(statement)).one_or_none()
        if marked is None:
            raise NotFound(f"no live video {video_id}")


class StorageAuditHandlers:
    """The ``uploads.referenced``, ``audit.rows`` and ``audit.mark_missing`` RPCs."""

    def __init__(self, audit: StorageAudit) -> None:
        self._audit = audit

    async def answer_referenced(self, body: bytes) -> RpcReply:
        async def act(request: FindReferencedUploads) -> RpcReply:
            keys = await self._audit.referenced_uploads(request.org, request.keys)
            return RpcReply(ok=True, referenced_keys=keys)
        return await answer_with(FindReferencedUploads, body, act)

    async def answer_rows(self, body: bytes) -> RpcReply:
        async def act(request: ListStoredRows) -> RpcReply:
            page = await self._audit.stored_rows(request.org, request.after, request.limit)
            return RpcReply(ok=True, stored_rows=page)
        return await answer_with(ListStoredRows, body, act)

    async def answer_mark_missing(self, body: bytes) -> RpcReply:
        async def act(request: MarkStorageMissing) -> RpcReply:
            await self._audit.mark_missing(request.org, request.video_id)
            return RpcReply(ok=True)
        return await answer_with(MarkStorageMissing, body, act)

    def answers(self) -> dict[CatalogRpc, Answer]:
        return {
            CatalogRpc.UPLOADS_REFERENCED: self.answer_referenced,
            CatalogRpc.AUDIT_ROWS: self.answer_rows,
            CatalogRpc.AUDIT_MARK_MISSING: self.answer_mark_missing,
        }
