"""Publishing events and settling JetStream messages, the same way in every service."""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Sequence

import nats
from faststream import AckPolicy
from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub
from nats.js.api import PubAck
from pydantic import BaseModel

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


def make_broker(settings: ServiceSettings, client_name: str) -> NatsBroker:
    # Reconnect forever: a broker restart must not end the service.
    return NatsBroker(
        settings.nats_url,
        name=client_name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
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


def durable_subscriber(
    broker: NatsBroker, topology: Topology, policy: ConsumerPolicy, *, max_workers: int = 1
) -> Callable[[Callable[..., Awaitable[None]]], object]:
    """A durable pull subscriber on the lifecycle stream; handlers settle messages themselves."""
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
    )


def delivery_attempt(msg: NatsMessage) -> int:
    """How many times this message has been delivered, this time included."""
    metadata = msg.raw_message.metadata
    return int(metadata.num_delivered) if metadata and metadata.num_delivered else 1


async def settle(
    msg: NatsMessage,
    work: Callable[[], Awaitable[None]],
    *,
    transient: tuple[type[BaseException], ...] = (),
    base_delay: float = 1.0,
    max_delay: float = 60.0,
) -> None:
    """Run ``work``; ack after it succeeded, nak with a delay when it asked for a retry or hit a
    transient error. Anything else propagates unacked: JetStream redelivers after ``ack_wait``
    (with the consumer's backoff) until ``max_deliver``."""
    try:
        await work()
    except RetryLater as retry:
        log.info("retrying %s in %.1fs: %s", msg.raw_message.subject, retry.delay, retry.reason)
        await msg.nack(delay=retry.delay)
        return
    except transient as exc:
        delay = backoff_delay(delivery_attempt(msg), base=base_delay, cap=max_delay)
        log.warning("transient error on %s, retry in %.1fs: %r", msg.raw_message.subject, delay, exc)
        await msg.nack(delay=delay)
        return
    await msg.ack()


class EventPublisher:
    """Publishes lifecycle events to JetStream and waits for the stream's ack.

    ``Nats-Msg-Id`` is the event id, so a republish inside the duplicate window is dropped.
    """

    def __init__(self, broker: NatsBroker, topology: Topology, timeout_s: float = 5.0) -> None:
        self._broker = broker
        self._topology = topology
        self._timeout_s = timeout_s

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
