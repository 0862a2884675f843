"""Thin broker handlers: decode, call the repository, settle or reply.

- the projection consumer: one durable pull consumer on ``<namespace>.video.>``; every event is
  applied idempotently, an event that cannot be parsed is rejected (terminated) at once;
- request/reply on core NATS (queue group: replicas share the load): get, list, stats, ping.
  Every reply is an ``RpcReply``; bad requests get ``invalid_request``, never silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, TypeVar

from faststream.nats import NatsBroker, NatsMessage, NatsResponse
from pydantic import BaseModel, ValidationError
from reelvault_common.contracts.catalog import (
    CatalogStats,
    GetStats,
    GetVideo,
    ListVideos,
    RpcErrorBody,
    RpcReply,
    VideoPage,
    VideoRecord,
    VideoStatus,
)
from reelvault_common.contracts.events import VideoEvent, parse_event
from reelvault_common.messaging import (
    RetryLater,
    delivery_attempt,
    durable_subscriber,
    raw_body,
    settle,
)
from reelvault_common.topology import ConsumerPolicy, Topology
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from reelvault_catalog.cursor import InvalidCursor
from reelvault_catalog.projection import Wait
from reelvault_catalog.repository import Applied

log = logging.getLogger(__name__)

# Worth another try after a pause: the database is restarting, unreachable or overloaded.
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    PoolTimeoutError,
    OSError,
    TimeoutError,
)


class CatalogStore(Protocol):
    """What the handlers need from the database (``CatalogRepository`` in production)."""

    async def apply(self, event: VideoEvent) -> Applied: ...
    async def get(self, video_id: uuid.UUID) -> VideoRecord | None: ...
    async def list(
        self, *, status: VideoStatus | None = ..., limit: int = ..., cursor: str | None = ...
    ) -> VideoPage: ...
    async def stats(self) -> CatalogStats: ...
    async def ping(self) -> bool: ...


def wait_delay(attempt: int) -> float:
    """How long an event whose row is not there yet waits: 1 s, then a little longer each time
    (the consumer redelivers without limit, so a lost ``video.requested`` costs little)."""
    return min(float(max(attempt, 1)), 15.0)


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


def _validation_summary(exc: ValidationError, limit: int = 3) -> str:
    """Why a payload was refused, without echoing the payload itself."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False)[:limit]:
        where = ".".join(str(part) for part in error.get("loc", ())) or "payload"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def _error(code: str, message: str) -> RpcReply:
    return RpcReply(ok=False, error=RpcErrorBody(code=code, message=message))


_Request = TypeVar("_Request", bound=BaseModel)


def _parse_request(model: type[_Request], body: bytes) -> _Request:
    # An empty body means "no parameters" (stats, ping, a first list page).
    return model.model_validate_json(body if body.strip() else b"{}")


class CatalogHandlers:
    def __init__(self, store: CatalogStore, *, ping_timeout_s: float = 2.0) -> None:
        self._store = store
        self._ping_timeout_s = ping_timeout_s
        self._locks = KeyedLocks()

    # --- the projection consumer ----------------------------------------------------------
    async def handle_event(self, msg: NatsMessage) -> None:
        subject = msg.raw_message.subject
        try:
            event = parse_event(msg.body)
        except ValidationError as exc:
            # Retrying cannot fix a payload: terminate it so it is never redelivered.
            log.error(
                "rejecting unreadable event on %s (%d bytes, delivery %d): %s",
                subject, len(msg.body), delivery_attempt(msg), _validation_summary(exc),
            )
            await msg.reject()
            return

        async def work() -> None:
            async with self._locks.hold(event.video_id):
                applied = await self._store.apply(event)
            if isinstance(applied.outcome, Wait):
                attempt = delivery_attempt(msg)
                if attempt >= 10:
                    log.warning("video %s: %s (delivery %d)", event.video_id,
                                applied.outcome.reason, attempt)
                raise RetryLater(wait_delay(attempt), applied.outcome.reason)
            log.debug("video %s: %s -> %s", event.video_id, event.type,
                      type(applied.outcome).__name__)

        await settle(msg, work, transient=TRANSIENT_DB_ERRORS)

    # --- request/reply ----------------------------------------------------------------------
    async def answer_get(self, body: bytes) -> RpcReply:
        try:
            request = _parse_request(GetVideo, body)
        except ValidationError as exc:
            return _error("invalid_request", _validation_summary(exc))
        video = await self._store.get(request.video_id)
        if video is None:
            return _error("not_found", f"no video {request.video_id}")
        return RpcReply(ok=True, video=video)

    async def answer_list(self, body: bytes) -> RpcReply:
        try:
            request = _parse_request(ListVideos, body)
        except ValidationError as exc:
            return _error("invalid_request", _validation_summary(exc))
        try:
            page = await self._store.list(
                status=request.status, limit=request.limit, cursor=request.cursor
            )
        except InvalidCursor:
            return _error("invalid_cursor", "the cursor is not one this catalog returned")
        return RpcReply(ok=True, page=page)

    async def answer_stats(self, body: bytes) -> RpcReply:
        try:
            _parse_request(GetStats, body)
        except ValidationError as exc:
            return _error("invalid_request", _validation_summary(exc))
        return RpcReply(ok=True, stats=await self._store.stats())

    async def answer_ping(self, body: bytes) -> RpcReply:
        try:
            async with asyncio.timeout(self._ping_timeout_s):
                alive = await self._store.ping()
        except Exception as exc:
            log.warning("catalog database ping failed: %s", type(exc).__name__)
            alive = False
        if not alive:
            return _error("unavailable", "the catalog database does not answer")
        return RpcReply(ok=True)


Answer = Callable[[bytes], Awaitable[RpcReply]]


def _replying(name: str, answer: Answer) -> Callable[[NatsMessage], Awaitable[NatsResponse]]:
    async def reply(msg: NatsMessage) -> NatsResponse:
        try:
            result = await answer(msg.body)
        except TRANSIENT_DB_ERRORS as exc:
            log.warning("catalog %s: database unavailable: %s", name, type(exc).__name__)
            result = _error("unavailable", "the catalog database is unavailable, try again")
        except Exception:
            log.exception("catalog %s failed", name)
            result = _error("internal", "the catalog could not answer")
        return NatsResponse(
            result.model_dump_json().encode(), headers={"content-type": "application/json"}
        )

    reply.__name__ = reply.__qualname__ = f"catalog_{name}"
    return reply


def projection_policy(topology: Topology) -> ConsumerPolicy:
    """The catalog's one durable consumer: every lifecycle event of the namespace.

    ``max_deliver=-1``: the catalog is a projection, a dropped event would leave a row stale
    forever. Payloads that can never succeed are terminated by the handler instead. No backoff
    list: handlers nak with their own delays, a stuck one is redelivered every ``ack_wait``
    (and servers before 2.10 refuse a backoff list with unlimited deliveries).
    """
    return ConsumerPolicy(
        durable=topology.durable("catalog", "projection"),
        filter_subjects=(f"{topology.namespace}.video.>",),
        ack_wait_s=30.0,
        max_deliver=-1,
        backoff_s=(),
    )


def register(
    broker: NatsBroker,
    topology: Topology,
    handlers: CatalogHandlers,
    *,
    max_workers: int,
    rpc_workers: int,
) -> ConsumerPolicy:
    """Subscribe the catalog's handlers on ``broker`` (before it starts)."""
    policy = projection_policy(topology)
    durable_subscriber(broker, topology, policy, max_workers=max_workers, decoder=raw_body)(
        handlers.handle_event
    )
    for name, subject, answer in (
        ("get", topology.rpc_get, handlers.answer_get),
        ("list", topology.rpc_list, handlers.answer_list),
        ("stats", topology.rpc_stats, handlers.answer_stats),
        ("ping", topology.rpc_ping, handlers.answer_ping),
    ):
        broker.subscriber(
            subject, queue=topology.rpc_queue, decoder=raw_body, max_workers=rpc_workers
        )(_replying(name, answer))
    return policy
