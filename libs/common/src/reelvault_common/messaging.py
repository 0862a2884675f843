"""Publishing events and settling JetStream messages, the same way in every service."""

from __future__ import annotations

import json
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import nats
from faststream import AckPolicy, StreamMessage
from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub
from nats.js import JetStreamContext
from nats.js.api import PubAck
from pydantic import BaseModel

from reelvault_common.contracts.events import FailureStage, VideoFailed
from reelvault_common.deadletter import DeadLetter, ensure_dead_letter_stream, publish_dead_letter

from reelvault_common.settings import ServiceSettings
from reelvault_common.topology import ConsumerPolicy, Topology, ensure_consumer, ensure_stream

log = logging.getLogger(__name__)


class RetryLater(Exception):  # noqa: N818 - it is an instruction, not an error
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
    options: dict[str, int] = {}
    if not buffer_while_reconnecting:
        # Request/response front-ends (the gateway) must fail a publish made while the
        # connection is down at once: a buffered one would be sent after reconnecting, long
        # after the caller was told it failed.
        options["pending_size"] = 0
    return NatsBroker(
        settings.nats_url,
        name=client_name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        **options,
    )


async def prepare_topology(
    settings: ServiceSettings, topology: Topology, policies: Sequence[ConsumerPolicy] = ()
) -> None:
    """Create or reconcile the stream and this service's durable consumers before consuming."""
    nc = await nats.connect(settings.nats_url, name="reelvault-setup", connect_timeout=5)
    try:
        js = nc.jetstream()
        await ensure_stream(js, topology)
        for policy in policies:
            await ensure_consumer(js, topology.stream, policy)
    finally:
        await nc.drain()


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
    return broker.subscriber(  # type: ignore[no-any-return]
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
    """Where a message goes after its last allowed delivery failed, and who hears of it."""

    policy: ConsumerPolicy
    topology: Topology
    publisher: EventPublisher
    stage: FailureStage

    def exhausted(self, msg: NatsMessage) -> bool:
        limit = self.policy.max_deliver
        return limit > 0 and delivery_attempt(msg) >= limit

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
        if video_id is not None:
            correlation = str((raw.headers or {}).get("correlation_id", video_id))
            await self.publisher.publish(
                VideoFailed.new(
                    video_id=video_id,
                    correlation_id=correlation,
                    stage=self.stage,
                    code="dead_lettered",
                    message=f"gave up after {letter.deliveries} deliveries to "
                    f"{self.policy.durable}: {error}"[:2000],
                    retryable=True,
                )
            )
        log.error("dead-lettered %s seq %s after %s deliveries: %s", raw.subject,
                  letter.stream_sequence, letter.deliveries, error)
        await msg.reject()


def _video_id_of(payload: bytes) -> uuid.UUID | None:
    try:
        value = json.loads(payload).get("video_id")
        return uuid.UUID(str(value)) if value else None
    except (ValueError, AttributeError, TypeError):
        return None


async def settle(
    msg: NatsMessage,
    work: Callable[[], Awaitable[None]],
    *,
    transient: tuple[type[BaseException], ...] = (),
    base_delay: float = 1.0,
    max_delay: float = 60.0,
    dead_letter: DeadLetterRoute | None = None,
) -> None:
    """Run ``work``; ack after it succeeded, nak with a delay when it asked for a retry or hit a
    transient error. Anything else propagates unacked: JetStream redelivers after ``ack_wait``
    (with the consumer's backoff). With a ``dead_letter`` route, a retry or failure on the last
    allowed delivery buries the message there instead of letting JetStream drop it silently."""
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
        log.warning("transient error on %s, retry in %.1fs: %r", msg.raw_message.subject, delay, exc)
        await msg.nack(delay=delay)
        return
    except Exception as exc:
        if dead_letter is not None and dead_letter.exhausted(msg):
            await dead_letter.bury(msg, f"{type(exc).__name__}: {exc}")
            return
        raise
    await msg.ack()


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
