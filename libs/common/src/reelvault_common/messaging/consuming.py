"""Publishing events and settling JetStream messages, the same way in every service."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from faststream import AckPolicy, StreamMessage

# The class behind ``faststream.Context(...)`` (that one is a factory function).
from faststream._internal.context import Context
from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub
from faststream.nats.message import NatsMessage as _NatsMessageClass
from nats.js import JetStreamContext
from nats.js.api import PubAck
from pydantic import BaseModel

from reelvault_common.contracts.events import FailureStage, VideoFailed
from reelvault_common.messaging.deadletter import (
    DeadLetter,
    ensure_dead_letter_stream,
    publish_dead_letter,
)
from reelvault_common.messaging.nats_client import connect_nats, is_nats_unreachable
from reelvault_common.messaging.topology import (
    ConsumerPolicy,
    Topology,
    ensure_consumer,
    ensure_stream,
)
from reelvault_common.runtime.settings import ServiceSettings
from reelvault_common.runtime.startup import Startup

log = logging.getLogger(__name__)


class _AsyncContext(Context):
    """FastStream's ``Context``, resolved on the event loop. FastDepends runs a custom field's
    synchronous ``use`` in a worker thread -- a thread hop for every message a handler with a
    ``NatsMessage`` parameter gets (measured: a tenth of a busy consumer's CPU). An async
    ``use`` is awaited in place."""

    async def use(self, /, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        return super().use(**kwargs)


# Annotate a handler's message parameter with this instead of ``faststream.nats.NatsMessage``
# (which is itself ``Annotated`` with the thread-hopping ``Context``).
MessageParam = Annotated[_NatsMessageClass, _AsyncContext("message")]


class RetryLater(Exception):  # an instruction, not an error
    """Raised by a handler: hand the message back and see it again after ``delay`` seconds."""

    def __init__(self, delay: float, reason: str = "") -> None:
        super().__init__(reason or f"retry in {delay:.1f}s")
        self.delay = delay
        self.reason = reason


def backoff_delay(
    attempt: int, *, base: float = 1.0, cap: float = 60.0, rng: random.Random | None = None
) -> float:
    """Exponential backoff with full jitter; ``attempt`` counts from 1."""
    ceiling = min(cap, base * (2 ** max(attempt - 1, 0)))
    return (rng or random).uniform(ceiling / 2, ceiling)


def make_broker(
    settings: ServiceSettings, client_name: str, *, buffer_while_reconnecting: bool = True
) -> NatsBroker:
    # Reconnect forever: a broker restart must not end the service.
    options: dict[str, Any] = {}
    if not buffer_while_reconnecting:
        # Request/response front-ends (the gateway) must fail a publish made while the
        # connection is down at once: a buffered one would be sent after reconnecting, long
        # after the caller was told it failed.
        options["pending_size"] = 0
    return NatsBroker(
        # Every server of NATS_URL: nats-py shuffles them and fails over between them.
        settings.nats_server_urls,
        name=client_name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,  # type: ignore[arg-type]  # nats-py takes float seconds
        connect_timeout=5,
        # On stop, in-flight handlers get this long to finish; then they are cancelled and
        # ``settle`` hands their messages back (see ``stop_consuming``).
        graceful_timeout=settings.shutdown_grace_s,
        # FastStream's per-message "Received"/"Processed" lines: DEBUG, not INFO (at load they
        # cost more CPU than many handlers; configure_logging shows them only at DEBUG).
        log_level=logging.DEBUG,
        **options,
    )


async def prepare_topology(
    settings: ServiceSettings, topology: Topology, policies: Sequence[ConsumerPolicy] = ()
) -> None:
    """Create or reconcile the stream and this service's durable consumers before consuming.

    Connects once (``NatsUnreachable`` when no server answers): at start-up, run it under
    ``Startup.wait_for`` (see ``wait_for_nats``)."""
    nc = await connect_nats(
        # Short-lived: a cut connection fails the set-up (retried at start-up) instead of
        # reconnecting for long (nats-py reads 0 as "forever").
        settings.nats_servers, name="reelvault-setup", connect_timeout=5,
        max_reconnect_attempts=1, reconnect_time_wait=0.5,
    )
    try:
        js = nc.jetstream()
        await ensure_stream(js, topology)
        for policy in policies:
            await ensure_consumer(js, topology.stream, policy)
    finally:
        await nc.drain()


async def wait_for_nats(
    startup: Startup,
    settings: ServiceSettings,
    topology: Topology,
    policies: Sequence[ConsumerPolicy] = (),
) -> None:
    """``prepare_topology`` at start-up: retried (one log line per attempt) while no server of
    ``NATS_URL`` answers or JetStream is not ready, until the start-up deadline."""
    await startup.wait_for(
        "NATS", settings.nats_url_for_logs,
        lambda: prepare_topology(settings, topology, policies),
        retryable=is_nats_unreachable,
    )


async def raw_body(msg: StreamMessage[Any]) -> bytes:
    """A FastStream decoder that leaves the body as bytes.

    FastStream's default decoder ``json.loads`` every body sent as ``application/json`` BEFORE
    the handler runs: a malformed payload then fails outside the handler, is never settled and
    is redelivered until ``max_deliver``. With this decoder the handler sees every message and
    can reject what it cannot parse (``msg.body`` holds the bytes).
    """
    return bytes(msg.body)


def durable_subscriber(
    broker: NatsBroker,
    topology: Topology,
    policy: ConsumerPolicy,
    *,
    max_workers: int = 1,
    decoder: Callable[..., Any] | None = None,
) -> Callable[[Callable[..., Awaitable[None]]], object]:
    """A durable pull subscriber on the lifecycle stream; handlers settle messages themselves.

    Pass ``decoder=raw_body`` to parse (and reject) payloads in the handler yourself.
    """
    return broker.subscriber(
        policy.filter_subjects[0],
        # declare=False: the stream belongs to ``prepare_topology``. A declaring JStream makes
        # FastStream "update" it on start with its own defaults, which silently reset the
        # duplicate window (600 s -> 120 s) and max_age (-> unlimited).
        stream=JStream(topology.stream, declare=False),
        durable=policy.durable,
        config=policy.to_config(),
        pull_sub=PullSub(batch_size=max(1, max_workers), timeout=1.0),
        max_workers=max_workers,
        ack_policy=AckPolicy.MANUAL,
        decoder=decoder,
    )


def delivery_attempt(msg: NatsMessage) -> int:
    """How many times this message has been delivered, this time included."""
    metadata = msg.raw_message.metadata
    return int(metadata.num_delivered) if metadata and metadata.num_delivered else 1


@dataclass(frozen=True)
class DeadLetterRoute:
    """Where a message goes after its last allowed delivery failed, and who hears of it.

    ``stage_of`` picks the failure stage per message (a consumer of several subjects, e.g. the
    catalog); ``give_up`` ends a message before ``max_deliver`` when it says so (e.g. a poll
    consumer past its job's deadline: a look that keeps failing then stops there)."""

    policy: ConsumerPolicy
    topology: Topology
    publisher: EventPublisher
    stage: FailureStage
    stage_of: Callable[[NatsMessage], FailureStage] | None = None
    give_up: Callable[[NatsMessage], bool] | None = None

    def exhausted(self, msg: NatsMessage) -> bool:
        limit = self.policy.max_deliver
        if limit > 0 and delivery_attempt(msg) >= limit:
            return True
        return self.give_up is not None and self.give_up(msg)

    async def bury(self, msg: NatsMessage, error: str) -> None:
        """Copy the message to the dead-letter stream, fail the video, terminate the original."""
        raw = msg.raw_message
        video_id = _video_id_of(raw.data)
        letter = DeadLetter.of(
            consumer=self.policy.durable,
            subject=raw.subject,
            stream_sequence=int(raw.metadata.sequence.stream) if raw.metadata else 0,
            deliveries=delivery_attempt(msg),
            payload=raw.data,
            headers=dict(raw.headers or {}),
            error=error,
            video_id=video_id,
        )
        js = self.publisher.jetstream()
        await ensure_dead_letter_stream(js, self.topology)
        await publish_dead_letter(js, self.topology, letter)
        # A failure about a failure is not announced again: the dead letter is the record (an
        # announced "dead_lettered" failure that itself cannot be handled would loop forever).
        if video_id is not None and not _is_dead_letter_notice(raw.data):
            correlation = str((raw.headers or {}).get("correlation_id", video_id))
            stage = self.stage_of(msg) if self.stage_of is not None else self.stage
            await self.publisher.publish(
                VideoFailed.new(
                    video_id=video_id,
                    correlation_id=correlation,
                    stage=stage,
                    code=DEAD_LETTERED,
                    message=f"gave up after {letter.deliveries} deliveries to "
                    f"{self.policy.durable}: {error}"[:2000],
                    retryable=True,
                )
            )
        log.error("dead-lettered %s seq %s after %s deliveries: %s", raw.subject,
                  letter.stream_sequence, letter.deliveries, error)
        await msg.reject()


DEAD_LETTERED = "dead_lettered"


def _is_dead_letter_notice(payload: bytes) -> bool:
    try:
        body = json.loads(payload)
    except ValueError:
        return False
    return (
        isinstance(body, dict)
        and body.get("type") == "video.failed"
        and body.get("code") == DEAD_LETTERED
    )


def _video_id_of(payload: bytes) -> uuid.UUID | None:
    try:
        value = json.loads(payload).get("video_id")
        return uuid.UUID(str(value)) if value else None
    except (ValueError, AttributeError, TypeError):
        return None


# Messages being handled right now (task -> its NATS client), so a stop can wait until the
# handlers cancelled at the end of the grace period have handed their messages back.
_IN_FLIGHT: dict[asyncio.Task[Any], object] = {}


@contextlib.contextmanager
def in_flight(client: object) -> Iterator[None]:
    """Marks the current task as handling a message of ``client`` (``settle`` does), so
    ``stop_consuming`` waits for it to hand the message back when it is cancelled."""
    task = asyncio.current_task()
    if task is None or task in _IN_FLIGHT:
        yield
        return
    _IN_FLIGHT[task] = client
    try:
        yield
    finally:
        _IN_FLIGHT.pop(task, None)


async def hand_back(msg: NatsMessage, delay: float | None = None) -> None:
    """Give the message back to JetStream now (a nak), even from a cancelled task: another
    replica gets it at once instead of after ``ack_wait``."""
    with anyio.move_on_after(2.0, shield=True):
        try:
            await msg.nack(delay=delay)
        except Exception as exc:  # the connection may be gone: ack_wait redelivers it then
            log.warning("could not hand back %s: %r", msg.raw_message.subject, exc)


async def settle(
    msg: NatsMessage,
    work: Callable[[], Awaitable[None]],
    *,
    transient: tuple[type[BaseException], ...] = (),
    base_delay: float = 1.0,
    max_delay: float = 60.0,
    dead_letter: DeadLetterRoute | None = None,
    failure_delay: Callable[[int], float] | None = None,
) -> None:
    """Run ``work``; ack after it succeeded, nak with a delay when it asked for a retry or hit a
    transient error. Anything else propagates unacked: JetStream redelivers after ``ack_wait``
    -- or, with ``failure_delay`` (delivery attempt -> seconds), it is logged and nak'd with that
    delay. With a ``dead_letter`` route, a retry or failure on the last allowed delivery buries
    the message there instead of letting JetStream drop it silently.

    Cancelled (a shutdown whose grace period ran out): the message is handed back at once."""
    with in_flight(getattr(msg.raw_message, "_client", None)):
        try:
            await _settle(msg, work, transient=transient, base_delay=base_delay,
                          max_delay=max_delay, dead_letter=dead_letter,
                          failure_delay=failure_delay)
        except asyncio.CancelledError:
            log.warning("handing back %s: stopped before it was done", msg.raw_message.subject)
            await hand_back(msg)
            raise


async def _settle(
    msg: NatsMessage,
    work: Callable[[], Awaitable[None]],
    *,
    transient: tuple[type[BaseException], ...],
    base_delay: float,
    max_delay: float,
    dead_letter: DeadLetterRoute | None,
    failure_delay: Callable[[int], float] | None,
) -> None:
    try:
        await work()
    except RetryLater as retry:
        if dead_letter is not None and dead_letter.exhausted(msg):
            await dead_letter.bury(msg, f"still retrying: {retry.reason or retry}")
            return
        log.info("retrying %s in %.1fs: %s", msg.raw_message.subject, retry.delay, retry.reason)
        await msg.nack(delay=retry.delay)
        return
    except transient as exc:
        if dead_letter is not None and dead_letter.exhausted(msg):
            await dead_letter.bury(msg, f"transient error persisted: {exc!r}")
            return
        delay = backoff_delay(delivery_attempt(msg), base=base_delay, cap=max_delay)
        log.warning("transient error on %s, retry in %.1fs: %r", msg.raw_message.subject,
                    delay, exc)
        await msg.nack(delay=delay)
        return
    except Exception as exc:
        if dead_letter is not None and dead_letter.exhausted(msg):
            await dead_letter.bury(msg, f"{type(exc).__name__}: {exc}")
            return
        if failure_delay is None:
            raise
        delay = failure_delay(delivery_attempt(msg))
        log.exception("failed on %s (delivery %d), retry in %.1fs", msg.raw_message.subject,
                      delivery_attempt(msg), delay)
        await msg.nack(delay=delay)
        return
    await msg.ack()


# What each broker's pull subscriptions fetched (``track_fetched``), by id(broker).
_FETCHED: dict[int, weakref.WeakValueDictionary[int, Any]] = {}


def track_fetched(broker: NatsBroker) -> None:
    """Call right after ``broker.start()``: remember every message its pull consumers fetch,
    so ``stop_consuming`` can hand back at once the ones no handler had started (FastStream
    drops them silently when it stops; JetStream would redeliver them only after ack_wait)."""
    # Keyed by id (nats-py messages are unhashable); an entry goes when its message does.
    fetched = _FETCHED.setdefault(id(broker), weakref.WeakValueDictionary())
    for subscriber in broker.subscribers:
        pull = getattr(subscriber, "subscription", None)
        fetch = getattr(pull, "fetch", None)
        if fetch is None or getattr(fetch, "_tracked", False):
            continue

        async def fetch_and_remember(*args: Any, _fetch: Any = fetch, **kwargs: Any) -> Any:
            messages = await _fetch(*args, **kwargs)
            for message in messages:
                fetched[id(message)] = message
            return messages

        fetch_and_remember._tracked = True  # type: ignore[attr-defined]
        pull.fetch = fetch_and_remember  # type: ignore[union-attr]


async def stop_consuming(broker: NatsBroker, *, settle_timeout_s: float = 3.0) -> None:
    """Stop a broker gracefully (SIGTERM): no new messages; handlers in flight get the broker's
    ``graceful_timeout`` (``shutdown_grace_s``) to finish; the ones still running then are
    cancelled and hand their messages back (``settle``); messages fetched but never started
    are handed back too (with ``track_fetched``); then the connection closes."""
    subscribers = list(broker.subscribers)
    async with anyio.create_task_group() as group:
        for subscriber in subscribers:
            group.start_soon(subscriber.stop)  # waits up to graceful_timeout, then cancels
    try:
        client: object = broker.connection
    except Exception:
        client = None
    handing_back = [task for task, owner in list(_IN_FLIGHT.items()) if owner is client]
    if handing_back:
        await asyncio.wait(handing_back, timeout=settle_timeout_s)
    remembered = _FETCHED.pop(id(broker), None)
    unstarted = [msg for msg in (remembered or {}).values() if not msg._ackd]
    if unstarted:
        with anyio.move_on_after(settle_timeout_s):
            for msg in unstarted:
                with contextlib.suppress(Exception):
                    await msg.nak()
        log.info("handed back %d fetched message(s) no handler had started", len(unstarted))
    await broker.stop()


class EventPublisher:
    """Publishes lifecycle events to JetStream and waits for the stream's ack.

    ``Nats-Msg-Id`` is the event id, so a republish inside the duplicate window is dropped.
    """

    def __init__(self, broker: NatsBroker, topology: Topology, timeout_s: float = 5.0) -> None:
        self._broker = broker
        self._topology = topology
        self._timeout_s = timeout_s

    def jetstream(self) -> JetStreamContext:
        """The broker connection's JetStream context (for dead letters and admin calls)."""
        connection = self._broker.connection
        if connection is None:
            raise RuntimeError("broker is not connected")
        return connection.jetstream()

    async def publish(self, event: BaseModel) -> PubAck:
        event_id = str(getattr(event, "event_id"))  # noqa: B009 - every event has one
        correlation_id = str(getattr(event, "correlation_id"))  # noqa: B009
        ack = await self._broker.publish(
            event.model_dump_json().encode(),
            self._topology.subject(str(getattr(event, "type"))),  # noqa: B009
            headers={"Nats-Msg-Id": event_id, "content-type": "application/json"},
            correlation_id=correlation_id,
            stream=self._topology.stream,
            timeout=self._timeout_s,
        )
        return ack
