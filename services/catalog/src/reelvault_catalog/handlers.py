"""Thin handlers: apply an event through the repository, or answer a read.

- the projection (declared in ``consumers.py``, run by the ``ConsumerRunner``): every decoded
  lifecycle event is applied idempotently; an event whose row is not there yet asks to come
  back later (``RetryLater``); one the database refuses (a NUL byte in a text, a violated
  constraint) raises ``DatabaseRefused`` and the runner retries it, then dead-letters it. While
  the database itself is down, events are held here (no delivery is spent on an outage);
- request/reply on core NATS (queue group: replicas share the load): get and list (one
  organization's videos), stats, ping; the organizations, keys and usage RPCs are in
  ``tenancy_handlers.py``. Every reply is an ``RpcReply``; bad requests get
  ``invalid_request``, never silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol

from faststream.nats import NatsBroker, NatsResponse
from reelvault_common.contracts.catalog import (
    CatalogErrorCode,
    CatalogRpc,
    CatalogStats,
    GetStats,
    GetVideo,
    ListVideos,
    RpcReply,
    VideoPage,
    VideoRecord,
    VideoStatus,
)
from reelvault_common.contracts.events import VideoEvent, VideoStored
from reelvault_common.messaging.broker import raw_body
from reelvault_common.messaging.consumer import Delivery
from reelvault_common.messaging.outcomes import RetryLater
from reelvault_common.messaging.topology import Topology
from reelvault_common.runtime import telemetry
from reelvault_common.runtime.startup import causes
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from reelvault_catalog.batching import Batcher, BatchFailed
from reelvault_catalog.cursor import InvalidCursor
from reelvault_catalog.projection import Insert, Wait
from reelvault_catalog.replies import Answer, answer_with, error_reply
from reelvault_catalog.repository import Applied
from reelvault_catalog.tenancy_handlers import TenancyHandlers

log = logging.getLogger(__name__)

# Worth another try after a pause: the database is restarting, unreachable or overloaded.
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    PoolTimeoutError,
    OSError,
    TimeoutError,
)


class DatabaseRefused(Exception):
    """The database refused to store an event (a value or a constraint, not an outage)."""


def refusal_of(exc: DBAPIError) -> DatabaseRefused:
    """The driver's own error, without the SQL text and its parameters (they carry the
    payload, and this message travels on to ``VideoFailed`` and the catalog row)."""
    cause = causes(exc)[-1]  # SQLAlchemy's adapter wraps the asyncpg exception
    lines = str(cause).strip().splitlines()
    text = lines[0] if lines else type(cause).__name__
    return DatabaseRefused(f"{type(cause).__name__}: {text}"[:500])


def _is_outage(exc: BaseException) -> bool:
    """Could the database be down? (Confirmed with a ping before an event is blamed.)"""
    return isinstance(exc, TRANSIENT_DB_ERRORS) or (
        isinstance(exc, DBAPIError) and bool(exc.connection_invalidated))


class CatalogStore(Protocol):
    """What the handlers need from the database (``CatalogRepository`` in production)."""

    async def apply(self, event: VideoEvent) -> Applied: ...
    async def apply_many(self, events: Sequence[VideoEvent]) -> list[Applied]: ...
    async def get(self, org: str, video_id: uuid.UUID) -> VideoRecord | None: ...
    async def list(
        self,
        org: str,
        *,
        status: VideoStatus | None = ...,
        limit: int = ...,
        cursor: str | None = ...,
    ) -> VideoPage: ...
    async def stats(self) -> CatalogStats: ...
    async def ping(self) -> bool: ...


def wait_delay(attempt: int) -> float:
    """How long an event whose row is not there yet waits: 1 s, then a little longer each time
    (with the default 20 deliveries an orphan event waits about 3 minutes before it is
    dead-lettered; its ``video.requested`` normally arrives within a second)."""
    return min(float(max(attempt, 1)), 15.0)


# A held event's first look after an outage began; later looks back off to ``outage_poll_s``.
FIRST_OUTAGE_PAUSE_S = 1.0


class KeyedLocks:
    """One lock per key, held only while in use: events of one video handled by this replica
    take turns in arrival order (a ``generation.started`` pulled in the same batch as its
    ``video.requested`` then finds the row instead of waiting a second)."""

    def __init__(self) -> None:
        self._locks: dict[object, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: object) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class CatalogHandlers:
    def __init__(
        self,
        store: CatalogStore,
        *,
        ping_timeout_s: float = 2.0,
        outage_poll_s: float = 5.0,
        batch_size: int = 1,
        on_recorded: Callable[[uuid.UUID], Awaitable[None]] | None = None,
        on_stored: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        # Told about every new row once it is committed (the gateway waits for it).
        self._on_recorded = on_recorded
        # Told the organization of every video once its storage is recorded (storage quota).
        self._on_stored = on_stored
        self._ping_timeout_s = ping_timeout_s
        self._outage_poll_s = outage_poll_s
        self._locks = KeyedLocks()
        # > 1: events handled at the same moment share one transaction (see batching.py).
        self._batcher: Batcher[VideoEvent, Applied] | None = (
            Batcher(store.apply_many, batch_size) if batch_size > 1 else None
        )

    async def close(self) -> None:
        """After the consumer stopped: let the batch in progress finish."""
        if self._batcher is not None:
            await self._batcher.close()

    # --- the projection consumer ----------------------------------------------------------
    async def handle_event(self, event: VideoEvent, delivery: Delivery) -> None:
        """Apply one event: returns once its row is committed (or already said so), raises
        ``RetryLater`` while its row is not there yet, ``DatabaseRefused`` (or the error) when
        the database answers but will not take it."""
        # The write's own span (in a batch, it covers the wait for the batch's transaction).
        with telemetry.span(f"apply {event.type}", {"db.system.name": "postgresql"}) as span:
            applied = await self._apply_through_outages(event)
            if span is not None:
                span.set_attribute("reelvault.catalog.outcome", type(applied.outcome).__name__)
                span.set_attribute("reelvault.catalog.written", applied.written)
        await self._announce(event, applied)
        if self._on_stored is not None and isinstance(event, VideoStored) and applied.written:
            # After the commit, outside the batch's transaction: a failure here must not
            # fail an event that is recorded (its redelivery would change nothing).
            try:
                await self._on_stored(event.org)
            except Exception as exc:
                log.warning("after storing video %s: %r", event.video_id, exc)
        self._check_applied(delivery, event, applied)

    async def _announce(self, event: VideoEvent, applied: Applied) -> None:
        if self._on_recorded is not None and isinstance(applied.outcome, Insert):
            try:
                await self._on_recorded(event.video_id)
            except Exception as exc:  # only a hint: a reader polls if it never comes
                log.debug("could not announce %s: %r", event.video_id, exc)

    @staticmethod
    def _check_applied(delivery: Delivery, event: VideoEvent, applied: Applied) -> None:
        if isinstance(applied.outcome, Wait):
            attempt = delivery.attempt
            if attempt >= 10:
                log.warning("video %s: %s (delivery %d)", event.video_id,
                            applied.outcome.reason, attempt)
            raise RetryLater(wait_delay(attempt), applied.outcome.reason)
        log.debug("video %s: %s -> %s", event.video_id, event.type,
                  type(applied.outcome).__name__)

    async def _apply_through_outages(self, event: VideoEvent) -> Applied:
        """Apply ``event``; while the database is down, hold it and look again.

        An outage is not the event's fault: handing the message back would spend one of its
        deliveries per retry, and a long outage would dead-letter healthy events (meanwhile the
        runner's heartbeat keeps the message from timing out). A transient error while the
        database answers a ping is this event's own problem (a statement that times out, say):
        it propagates and costs a delivery like any other failure. A refusal (a value or
        constraint the database rejects) becomes ``DatabaseRefused``."""
        if self._batcher is not None:
            with contextlib.suppress(BatchFailed):
                return await self._batcher.apply(event)
            # The batch failed (a refused event, or an outage): this event alone now.
        pause = min(FIRST_OUTAGE_PAUSE_S, self._outage_poll_s)
        held_since: float | None = None
        while True:
            try:
                async with self._locks.hold(event.video_id):
                    applied = await self._store.apply(event)
            except Exception as exc:
                if not _is_outage(exc):
                    if isinstance(exc, DBAPIError):
                        raise refusal_of(exc) from exc
                    raise
                if await self._database_answers():
                    raise
                loop = asyncio.get_running_loop()
                if held_since is None:
                    held_since = loop.time()
                    log.warning("database unavailable (%s): holding %s of video %s until it "
                                "is back", type(exc).__name__, event.type, event.video_id)
                await asyncio.sleep(pause)
                pause = min(pause * 2, self._outage_poll_s)
                continue
            if held_since is not None:
                log.info("database back: applied %s of video %s after %.1fs", event.type,
                         event.video_id, asyncio.get_running_loop().time() - held_since)
            return applied

    async def _database_answers(self) -> bool:
        try:
            async with asyncio.timeout(self._ping_timeout_s):
                return await self._store.ping()
        except Exception:
            return False

    # --- request/reply ----------------------------------------------------------------------
    async def answer_get(self, body: bytes) -> RpcReply:
        async def act(request: GetVideo) -> RpcReply:
            video = await self._store.get(request.org, request.video_id)
            if video is None:
                return error_reply(CatalogErrorCode.NOT_FOUND, f"no video {request.video_id}")
            return RpcReply(ok=True, video=video)
        return await answer_with(GetVideo, body, act)

    async def answer_list(self, body: bytes) -> RpcReply:
        async def act(request: ListVideos) -> RpcReply:
            try:
                page = await self._store.list(request.org, status=request.status,
                                              limit=request.limit, cursor=request.cursor)
            except InvalidCursor:
                return error_reply(CatalogErrorCode.INVALID_CURSOR,
                                   "the cursor is not one this catalog returned")
            return RpcReply(ok=True, page=page)
        return await answer_with(ListVideos, body, act)

    async def answer_stats(self, body: bytes) -> RpcReply:
        async def act(request: GetStats) -> RpcReply:
            return RpcReply(ok=True, stats=await self._store.stats())
        return await answer_with(GetStats, body, act)

    async def answer_ping(self, body: bytes) -> RpcReply:
        try:
            async with asyncio.timeout(self._ping_timeout_s):
                alive = await self._store.ping()
        except Exception as exc:
            log.warning("catalog database ping failed: %s", type(exc).__name__)
            alive = False
        if not alive:
            return error_reply(CatalogErrorCode.UNAVAILABLE,
                               "the catalog database does not answer")
        return RpcReply(ok=True)

    def answers(self) -> dict[CatalogRpc, Answer]:
        return {
            CatalogRpc.GET: self.answer_get,
            CatalogRpc.LIST: self.answer_list,
            CatalogRpc.STATS: self.answer_stats,
            CatalogRpc.PING: self.answer_ping,
        }


def _replying(name: str, answer: Answer) -> Callable[[bytes], Awaitable[NatsResponse]]:
    async def reply(body: bytes) -> NatsResponse:
        try:
            result = await answer(body)
        except TRANSIENT_DB_ERRORS as exc:
            log.warning("catalog %s: database unavailable: %s", name, type(exc).__name__)
            result = error_reply(
                CatalogErrorCode.UNAVAILABLE, "the catalog database is unavailable, try again"
            )
        except Exception:
            log.exception("catalog %s failed", name)
            result = error_reply(CatalogErrorCode.INTERNAL, "the catalog could not answer")
        return NatsResponse(
            result.model_dump_json().encode(), headers={"content-type": "application/json"}
        )

    reply.__name__ = reply.__qualname__ = "catalog_" + name.replace(".", "_")
    return reply


def register_rpc(
    broker: NatsBroker,
    topology: Topology,
    handlers: CatalogHandlers,
    tenancy: TenancyHandlers | None = None,
    *,
    rpc_workers: int,
    more: dict[CatalogRpc, Answer] | None = None,
) -> None:
    """Subscribe the catalog's request/reply handlers on ``broker`` (before it starts): core
    NATS, one queue group, so replicas share the requests. One subject per ``CatalogRpc``."""
    answers = handlers.answers()
    if tenancy is not None:
        answers.update(tenancy.answers())
    answers.update(more or {})
    for name, answer in answers.items():
        broker.subscriber(
            topology.rpc(name), queue=topology.rpc_queue, decoder=raw_body,
            max_workers=rpc_workers,
        )(_replying(name, answer))
