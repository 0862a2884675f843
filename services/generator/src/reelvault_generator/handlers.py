"""The two durable consumers: decode, call the logic, settle. Nothing else lives here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TypeVar

import nats.errors
from faststream.nats import NatsBroker, NatsMessage
from pydantic import BaseModel, ValidationError
from reelvault_common.contracts.events import VideoGenerationStarted, VideoRequested
from reelvault_common.messaging import delivery_attempt, durable_subscriber, raw_body, settle
from reelvault_common.openai_videos import ProviderError
from reelvault_common.storage import TransientStorageError
from reelvault_common.topology import ConsumerPolicy, Topology

from reelvault_generator.settings import GeneratorSettings
from reelvault_generator.starting import JobStarter
from reelvault_generator.tracking import JobTracker

log = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)

# Worth a quick retry with backoff rather than waiting out ack_wait: provider hiccups that
# escaped the logic, storage outages, broker/KV trouble.
TRANSIENT: tuple[type[BaseException], ...] = (
    ProviderError,
    TransientStorageError,
    nats.errors.Error,
    TimeoutError,
)


# Both consumers schedule their next look with nak(delay). A consumer with a BackOff list
# does not honour that (nats-server 2.15: after the second delivery the redelivery follows the
# backoff schedule, e.g. 120 s instead of a 0.4 s poll), so neither sets one: a handler that
# crashed is simply redelivered after ack_wait.
NO_BACKOFF: tuple[float, ...] = ()


def requests_policy(settings: GeneratorSettings, topology: Topology) -> ConsumerPolicy:
    # max_deliver -1: a request waiting out rate limits or an outage must never be dropped.
    return ConsumerPolicy(
        durable=topology.durable("generator", "requests"),
        filter_subjects=(topology.subject_for(VideoRequested),),
        ack_wait_s=settings.ack_wait_s,
        max_deliver=-1,
        backoff_s=NO_BACKOFF,
    )


def poll_policy(settings: GeneratorSettings, topology: Topology) -> ConsumerPolicy:
    # max_deliver -1: a job is followed until it ends or its deadline (checked by the handler).
    return ConsumerPolicy(
        durable=topology.durable("generator", "poll"),
        filter_subjects=(topology.subject_for(VideoGenerationStarted),),
        ack_wait_s=settings.ack_wait_s,
        max_deliver=-1,
        backoff_s=NO_BACKOFF,
        max_ack_pending=settings.poll_max_ack_pending,
    )


@contextlib.asynccontextmanager
async def keep_alive(msg: NatsMessage, every_s: float) -> AsyncIterator[None]:
    """Tell JetStream the message is being worked on, so ack_wait does not run out mid-work."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(every_s)
            with contextlib.suppress(Exception):
                await msg.in_progress()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _decode(model: type[T], body: bytes, msg: NatsMessage) -> T | None:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        # It will never decode: stop redelivering it instead of looping forever.
        log.error("undecodable %s on %s, dropped: %s", model.__name__,
                  msg.raw_message.subject, exc)
        await msg.reject()
        return None


def register(
    broker: NatsBroker,
    topology: Topology,
    settings: GeneratorSettings,
    *,
    starter: JobStarter,
    tracker: JobTracker,
) -> None:
    heartbeat_s = max(settings.ack_wait_s / 3, 1.0)

    @durable_subscriber(broker, topology, requests_policy(settings, topology),
                        max_workers=settings.requests_max_workers, decoder=raw_body)
    async def on_video_requested(body: bytes, msg: NatsMessage) -> None:
        request = await _decode(VideoRequested, body, msg)
        if request is None:
            return
        async with keep_alive(msg, heartbeat_s):
            await settle(
                msg,
                lambda: starter.handle(request, delivery_attempt(msg)),
                transient=TRANSIENT,
                base_delay=settings.create_retry_base_s,
                max_delay=settings.create_retry_max_s,
            )

    @durable_subscriber(broker, topology, poll_policy(settings, topology),
                        max_workers=settings.poll_max_workers, decoder=raw_body)
    async def on_generation_started(body: bytes, msg: NatsMessage) -> None:
        started = await _decode(VideoGenerationStarted, body, msg)
        if started is None:
            return
        await settle(
            msg,
            lambda: tracker.poll(started, delivery_attempt(msg)),
            transient=TRANSIENT,
            base_delay=settings.poll_retry_base_s,
            max_delay=settings.poll_max_interval_s,
        )
