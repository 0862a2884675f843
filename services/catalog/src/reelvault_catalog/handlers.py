"""Thin broker handlers: decode, call the repository, settle or reply.

- the projection consumer: one durable pull consumer on ``<namespace>.video.>``; every event is
  applied idempotently, an event that cannot be parsed is rejected (terminated) at once. One
  that parses but cannot be applied (the database refuses it: a NUL byte in a text, a violated
  constraint) is retried with growing delays and, on its ``max_deliver``-th delivery, goes to
  the dead-letter stream while its video is marked failed (``dead_lettered``). While the
  database itself is down, events are held (no delivery is spent on an outage);
- request/reply on core NATS (queue group: replicas share the load): get, list, stats, ping.
  Every reply is an ``RpcReply``; bad requests get ``invalid_request``, never silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
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
from reelvault_common.contracts.events import FailureStage, VideoEvent, parse_event
from reelvault_common.messaging.consuming import (
    DeadLetterRoute,
    MessageParam,
    RetryLater,
    backoff_delay,
    delivery_attempt,
    durable_subscriber,
    raw_body,
    settle,
)
from reelvault_common.messaging.topology import ConsumerPolicy, Topology
from reelvault_common.runtime.startup import causes
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from reelvault_catalog.batching import Batcher, BatchFailed
from reelvault_catalog.cursor import InvalidCursor
from reelvault_catalog.projection import Insert, Wait
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
    async def get(self, video_id: uuid.UUID) -> VideoRecord | None: ...
    async def list(
        self, *, status: VideoStatus | None = ..., limit: int = ..., cursor: str | None = ...
    ) -> VideoPage: ...
    async def stats(self) -> CatalogStats: ...
    async def ping(self) -> bool: ...


def wait_delay(attempt: int) -> float:
    """How long an event whose row is not there yet waits: 1 s, then a little longer each time
    (with the default 20 deliveries an orphan event waits about 3 minutes before it is
    dead-lettered; its ``video.requested`` normally arrives within a second)."""
    return min(float(max(attempt, 1)), 15.0)


@dataclass(frozen=True)
class ProjectionRetry:
    """Pacing of the projection's retries (see ``CatalogSettings``)."""

    base_s: float = 1.0
    max_s: float = 30.0
    outage_poll_s: float = 5.0

    def failure_delay(self, attempt: int) -> float:
        return backoff_delay(attempt, base=self.base_s, cap=self.max_s)


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
    def __init__(
        self,
        store: CatalogStore,
        *,
        ping_timeout_s: float = 2.0,
        dead_letter: DeadLetterRoute | None = None,
        retry: ProjectionRetry | None = None,
        batch_size: int = 1,
        on_recorded: Callable[[uuid.UUID], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        # Told about every new row once it is committed (the gateway waits for it).
        self._on_recorded = on_recorded
        self._ping_timeout_s = ping_timeout_s
        self._dead_letter = dead_letter
        self._retry = retry or ProjectionRetry()
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
    async def handle_event(self, msg: MessageParam) -> None:
        event = await self._parse_or_reject(msg)
        if event is not None:
            await self._settle_one(msg, event)

    async def _parse_or_reject(self, msg: NatsMessage) -> VideoEvent | None:
        try:
            return parse_event(msg.body)
        except ValidationError as exc:
            # Retrying cannot fix a payload: terminate it so it is never redelivered.
            log.error(
                "rejecting unreadable event on %s (%d bytes, delivery %d): %s",
                msg.raw_message.subject, len(msg.body), delivery_attempt(msg),
                _validation_summary(exc),
            )
            await msg.reject()
            return None

    async def _settle_one(self, msg: NatsMessage, event: VideoEvent) -> None:
        async def work() -> None:
            applied = await self._apply_through_outages(event, msg)
            await self._announce(event, applied)
            self._check_applied(msg, event, applied)

        await self._settle(msg, work)

    async def _settle(self, msg: NatsMessage, work: Callable[[], Awaitable[None]]) -> None:
        retry = self._retry
        await settle(msg, work, transient=TRANSIENT_DB_ERRORS, base_delay=retry.base_s,
                     max_delay=retry.max_s, dead_letter=self._dead_letter,
                     failure_delay=retry.failure_delay)

    async def _announce(self, event: VideoEvent, applied: Applied) -> None:
        if self._on_recorded is not None and isinstance(applied.outcome, Insert):
            try:
                await self._on_recorded(event.video_id)
            except Exception as exc:  # only a hint: a reader polls if it never comes
                log.debug("could not announce %s: %r", event.video_id, exc)

    @staticmethod
    def _check_applied(msg: NatsMessage, event: VideoEvent, applied: Applied) -> None:
        if isinstance(applied.outcome, Wait):
            attempt = delivery_attempt(msg)
            if attempt >= 10:
                log.warning("video %s: %s (delivery %d)", event.video_id,
                            applied.outcome.reason, attempt)
            raise RetryLater(wait_delay(attempt), applied.outcome.reason)
        log.debug("video %s: %s -> %s", event.video_id, event.type,
                  type(applied.outcome).__name__)

    async def _apply_through_outages(self, event: VideoEvent, msg: NatsMessage) -> Applied:
        """Apply ``event``; while the database is down, hold the message and look again.

        An outage is not the event's fault: handing the message back would spend one of its
        deliveries per retry, and a long outage would dead-letter healthy events. A transient
        error while the database answers a ping is this event's own problem (a statement that
        times out, say): it propagates and costs a delivery like any other failure. A refusal
        (a value or constraint the database rejects) becomes ``DatabaseRefused``."""
        if self._batcher is not None:
            with contextlib.suppress(BatchFailed):
                return await self._batcher.apply(event)
            # The batch failed (a refused event, or an outage): this event alone now.
        pause = min(self._retry.base_s, self._retry.outage_poll_s)
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
                with contextlib.suppress(Exception):
                    await msg.in_progress()  # keep ack_wait from running out while we wait
                await asyncio.sleep(pause)
                pause = min(pause * 2, self._retry.outage_poll_s)
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
    async def reply(msg: MessageParam) -> NatsResponse:
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


def projection_policy(
    topology: Topology,
    *,
    ack_wait_s: float = 30.0,
    max_deliver: int = 20,
    max_ack_pending: int = 1000,
) -> ConsumerPolicy:
    """The catalog's one durable consumer: every lifecycle event of the namespace.

    ``max_deliver`` is finite: an event the database keeps refusing ends in the dead-letter
    stream (its video failed, ``reelvault dead-letters replay`` re-drives it once fixed)
    instead of being retried forever. Payloads that cannot even be parsed are terminated at
    once. Deliveries are only spent while the database answers (outages are held, see
    ``CatalogHandlers``). No backoff list: nats-server lets a backoff list override
    ``nak(delay)``, and every retry here carries its own delay; a stuck handler is redelivered
    after ``ack_wait``.
    """
    return ConsumerPolicy(
        durable=topology.durable("catalog", "projection"),
        filter_subjects=(f"{topology.namespace}.video.>",),
        ack_wait_s=ack_wait_s,
        max_deliver=max_deliver,
        backoff_s=(),
        max_ack_pending=max_ack_pending,
    )


_SUBJECT_STAGES: dict[str, FailureStage] = {
    "video.requested": "request",
    "video.generation.started": "generation",
    "video.generation.progress": "generation",
}


def failure_stage(msg: NatsMessage) -> FailureStage:
    """The pipeline stage a dead-lettered event belongs to (``VideoFailed.stage``)."""
    subject = msg.raw_message.subject
    event_type = subject.split(".", 1)[1] if "." in subject else subject
    if event_type == "video.failed":
        with contextlib.suppress(ValueError, AttributeError):
            stage = json.loads(msg.raw_message.data).get("stage")
            if stage in ("request", "generation", "archive"):
                return stage  # type: ignore[no-any-return]
    return _SUBJECT_STAGES.get(event_type, "archive")


def register(
    broker: NatsBroker,
    topology: Topology,
    handlers: CatalogHandlers,
    *,
    max_workers: int,
    rpc_workers: int,
    policy: ConsumerPolicy | None = None,
) -> ConsumerPolicy:
    """Subscribe the catalog's handlers on ``broker`` (before it starts)."""
    policy = policy or projection_policy(topology)
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
