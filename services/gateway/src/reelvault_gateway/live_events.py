"""Live events: one organization's video events as Server-Sent Events, read straight from the
lifecycle stream.

Each open stream is an ephemeral ordered consumer (no durable state on the server, nothing to
clean up when the client goes) filtered on ``<namespace>.events.<org>.video.>``, so another
organization's events never reach the gateway's side of the connection, let alone the client.
The stream sequence is each event's SSE ``id``: a client that comes back with
``Last-Event-ID: N`` is served from sequence N+1 of its own subjects, which is everything it
has not seen, once. Streams read through a NATS connection of their own, opened on first use,
so a crowd of slow browsers never holds up the gateway's publishes.

A stream ends (and an ``EventSource`` reconnects with its last id) when the gateway shuts down,
when the NATS connection was lost meanwhile (its consumer may be gone with it), or when the
credential that opened it stops working (checked every ``events_recheck_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from fastapi.sse import format_sse_event
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import ConsumerConfig, DeliverPolicy
from pydantic import Field
from pydantic_settings import BaseSettings
from reelvault_common.contracts.events import EVENT_TYPES, event_type_name
from reelvault_common.messaging.nats_client import connect_nats, is_nats_unreachable
from reelvault_common.messaging.topology import Topology
from reelvault_common.runtime.settings import REELVAULT_SETTINGS, ServiceSettings

from reelvault_gateway.broker import TRANSIENT_BROKER_ERRORS, BrokerUnavailable
from reelvault_gateway.errors import ApiError, field_error

log = logging.getLogger(__name__)

# Every video event type a client may ask for (``types=``).
VIDEO_EVENT_TYPES: Final[frozenset[str]] = frozenset(event_type_name(c) for c in EVENT_TYPES)
# A stream sequence is a uint64: at most 20 digits.
MAX_EVENT_ID_DIGITS = 20
# Events waiting between NATS and one client's socket before NATS is asked to wait.
QUEUE_DEPTH = 256


class EventStreamSettings(BaseSettings):
    """``REELVAULT_EVENTS_*``: limits and pacing of ``GET /v1/events``."""

    model_config = REELVAULT_SETTINGS

    # Open streams per organization on one gateway process; more are refused with a 429.
    events_max_streams_per_org: int = Field(default=20, ge=1)
    # A comment line this often keeps proxies from closing a quiet stream.
    events_keepalive_s: float = Field(default=15.0, gt=0)
    # How often an open stream checks that its key (or session) still works.
    events_recheck_s: float = Field(default=5.0, gt=0)
    # What a client is told to wait before reconnecting (the SSE ``retry`` field).
    events_retry_ms: int = Field(default=3000, ge=0)


# --- pure rules --------------------------------------------------------------------------------
def resume_after(last_event_id: str | None) -> int | None:
    """The sequence a client has seen (``Last-Event-ID``; 0: none, replay what the stream
    keeps); None for a fresh client, which starts with the next event."""
    if last_event_id is None or not last_event_id.strip():
        return None
    value = last_event_id.strip()
    if not value.isdigit() or not value.isascii() or len(value) > MAX_EVENT_ID_DIGITS:
        raise ApiError(
            400,
            "invalid_last_event_id",
            "Last-Event-ID must be the id of an event this stream sent (a sequence number).",
        )
    return int(value)


def requested_types(types: str | None) -> frozenset[str]:
    """``types=video.completed,video.failed`` -> those names; empty: every video event."""
    if types is None or not types.strip():
        return frozenset()
    wanted = frozenset(part.strip() for part in types.split(",") if part.strip())
    unknown = sorted(wanted - VIDEO_EVENT_TYPES)
    if unknown:
        raise field_error(
            ("query", "types"),
            f"unknown event type(s) {', '.join(unknown)}; known: "
            f"{', '.join(sorted(VIDEO_EVENT_TYPES))}",
            "invalid_value",
        )
    return wanted


def filter_subjects(topology: Topology, org: str, types: frozenset[str]) -> list[str]:
    """The subjects one organization's stream reads: its video events, or the chosen types."""
    if not types:
        return [topology.subject("video.>", org)]
    return [topology.subject(name, org) for name in sorted(types)]


def event_frame(sequence: int, event_type: str, data: bytes) -> bytes:
    """One SSE event: ``id`` the stream sequence, ``event`` the type, ``data`` the JSON."""
    return format_sse_event(id=str(sequence), event=event_type,
                            data_str=data.decode("utf-8", errors="replace"))


KEEPALIVE_FRAME: Final[bytes] = format_sse_event(comment="keep-alive")


class StreamSlots:
    """Open streams per organization, at most ``limit`` each (one process's count)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def take(self, org: str) -> bool:
        if self._open.get(org, 0) >= self.limit:
            return False
        self._open[org] = self._open.get(org, 0) + 1
        return True

    def give_back(self, org: str) -> None:
        left = self._open.get(org, 0) - 1
        if left > 0:
            self._open[org] = left
        else:
            self._open.pop(org, None)

    def count(self, org: str) -> int:
        return self._open.get(org, 0)


# --- reading the stream ------------------------------------------------------------------------
@dataclass(eq=False)  # one per client: kept in a set by identity
class EventTail:
    """One client's ordered consumer: events arrive in a bounded queue, in stream order."""

    prefix: str  # ``<namespace>.events.<org>.``: nothing else is ever passed on
    generation: int  # the connection's generation when it opened
    queue: asyncio.Queue[Msg | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_DEPTH))
    subscription: Subscription | None = None
    stopped: bool = False

    async def deliver(self, msg: Msg) -> None:
        # Waiting here when the client reads slowly makes NATS wait too (flow control).
        if not self.stopped:
            await self.queue.put(msg)

    def stop(self) -> None:
        self.stopped = True
        # A reader waiting on an empty queue wakes up; a busy one sees ``stopped`` next.
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)

    async def next(self, timeout_s: float) -> Msg | None:
        """The next event, or None after ``timeout_s`` or once stopped."""
        if self.stopped:
            return None
        try:
            return await asyncio.wait_for(self.queue.get(), timeout_s)
        except TimeoutError:
            return None

    def frame(self, msg: Msg) -> bytes | None:
        """The SSE frame of a message, or None for anything not of this organization."""
        if not msg.subject.startswith(self.prefix):
            return None
        return event_frame(msg.metadata.sequence.stream, msg.subject[len(self.prefix):],
                           msg.data)


class LiveEvents:
    """Opens and ends the gateway's event streams (one per HTTP client)."""

    def __init__(
        self, settings: ServiceSettings, topology: Topology, limits: EventStreamSettings
    ) -> None:
        self._settings = settings
        self._topology = topology
        self.limits = limits
        self.slots = StreamSlots(limits.events_max_streams_per_org)
        self._client: Client | None = None
        self._connecting = asyncio.Lock()
        self._tails: set[EventTail] = set()
        # Bumped whenever the connection drops: streams opened before then end, and their
        # clients resume from their last id on a fresh consumer.
        self.generation = 0
        self.closing = False

    async def _connection(self) -> Client:
        async with self._connecting:
            if self._client is not None and not self._client.is_closed:
                if not self._client.is_connected:
                    raise BrokerUnavailable("the message broker is reconnecting")
                return self._client
            try:
                self._client = await connect_nats(
                    self._settings.nats_servers, name="reelvault-gateway-events",
                    max_reconnect_attempts=-1, reconnect_time_wait=0.5, connect_timeout=5,
                    disconnected_cb=self._on_disconnect,
                )
            except Exception as exc:
                if is_nats_unreachable(exc):
                    raise BrokerUnavailable(f"no NATS server answered: {exc}") from exc
                raise
            return self._client

    async def _on_disconnect(self) -> None:
        self.generation += 1
        for tail in list(self._tails):
            tail.stop()

    async def open(self, org: str, after: int | None, types: frozenset[str]) -> EventTail:
        """An ordered consumer of ``org``'s events after sequence ``after`` (None: the next
        event on)."""
        if self.closing:
            raise BrokerUnavailable("the gateway is shutting down")
        client = await self._connection()
        tail = EventTail(prefix=self._topology.subject("", org), generation=self.generation)
        subjects = filter_subjects(self._topology, org, types)
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.NEW if after is None else DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=None if after is None else after + 1,
            filter_subjects=subjects if len(subjects) > 1 else None,
        )
        try:
            tail.subscription = await client.jetstream().subscribe(
                subjects[0], stream=self._topology.stream, cb=tail.deliver,
                ordered_consumer=True, config=config,
            )
        except TRANSIENT_BROKER_ERRORS as exc:
            raise BrokerUnavailable(f"could not follow the event stream: {exc!r}") from exc
        self._tails.add(tail)
        return tail

    async def end(self, tail: EventTail) -> None:
        tail.stop()
        self._tails.discard(tail)
        if tail.subscription is not None:
            # The server drops an ephemeral consumer once nobody listens; a dead connection
            # has dropped it already.
            with contextlib.suppress(*TRANSIENT_BROKER_ERRORS):
                await tail.subscription.unsubscribe()

    def is_current(self, tail: EventTail) -> bool:
        return not tail.stopped and tail.generation == self.generation and not self.closing

    def shut_down(self) -> None:
        """Every open stream ends now (the gateway is stopping); no new ones open."""
        self.closing = True
        for tail in list(self._tails):
            tail.stop()

    async def close(self) -> None:
        self.shut_down()
        for tail in list(self._tails):
            await self.end(tail)
        if self._client is not None and not self._client.is_closed:
            with contextlib.suppress(*TRANSIENT_BROKER_ERRORS):
                await self._client.close()


async def event_stream(
    live: LiveEvents,
    tail: EventTail,
    org: str,
    still_allowed: Callable[[], Awaitable[bool]],
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[bytes]:
    """The body of one SSE response: the reconnect delay, then events and keep-alives until
    the stream has to end. Always gives the stream and its slot back."""
    limits = live.limits
    try:
        yield format_sse_event(comment="connected", retry=limits.events_retry_ms)
        last_sent = clock()
        next_check = last_sent + limits.events_recheck_s
        while live.is_current(tail):
            wait = min(last_sent + limits.events_keepalive_s, next_check) - clock()
            msg = await tail.next(max(0.0, wait))
            if msg is not None and (frame := tail.frame(msg)) is not None:
                yield frame
                last_sent = clock()
            now = clock()
            if now >= next_check:
                if not await still_allowed():
                    return
                next_check = now + limits.events_recheck_s
            if live.is_current(tail) and now - last_sent >= limits.events_keepalive_s:
                yield KEEPALIVE_FRAME
                last_sent = now
    finally:
        live.slots.give_back(org)
        await live.end(tail)
