"""The two durable consumers: decode, call the logic, settle. Nothing else lives here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import TypeVar

import nats.errors
from faststream.nats import NatsBroker, NatsMessage
from pydantic import BaseModel, ValidationError
from reelvault_common.contracts.events import VideoGenerationStarted, VideoRequested
from reelvault_common.messaging.consuming import (
    DeadLetterRoute,
    EventPublisher,
    MessageParam,
    backoff_delay,
    delivery_attempt,
    durable_subscriber,
    raw_body,
    settle,
)
from reelvault_common.messaging.topology import ConsumerPolicy, Topology
from reelvault_common.providers.openai_videos import ProviderError
from reelvault_common.storage import TransientStorageError

from reelvault_generator.polling import deadline_of
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
    """``video.requested``: one provider job per video. Every retry (rate limits, outages, a
    claim another replica holds) is a ``nak`` with a growing delay, so ``requests_max_deliver``
    deliveries span hours; a request still not started then is dead-lettered and its video
    failed (``dead_lettered``), to be replayed once the cause is fixed."""
    return ConsumerPolicy(
        durable=topology.durable("generator", "requests"),
        filter_subjects=(topology.subject_for(VideoRequested),),
        ack_wait_s=settings.ack_wait_s,
        max_deliver=settings.requests_max_deliver,
        backoff_s=NO_BACKOFF,
        max_ack_pending=settings.requests_max_ack_pending,
    )


def poll_policy(settings: GeneratorSettings, topology: Topology) -> ConsumerPolicy:
    """``video.generation.started``: each delivery is one look at the provider's job. A job ends
    by its own outcome or by the handler's deadline check (``job_deadline_s``), so the limit is
    derived from the deadline and the shortest gap between looks (``poll_max_deliver``); a look
    that keeps failing is dead-lettered once the deadline has passed (``past_deadline``)."""
    return ConsumerPolicy(
        durable=topology.durable("generator", "poll"),
        filter_subjects=(topology.subject_for(VideoGenerationStarted),),
        ack_wait_s=settings.ack_wait_s,
        max_deliver=settings.poll_max_deliver,
        backoff_s=NO_BACKOFF,
        max_ack_pending=settings.poll_max_ack_pending,
    )


def past_deadline(
    settings: GeneratorSettings, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> Callable[[NatsMessage], bool]:
    """True once a Started message's job is past its deadline (plus a margin for the last
    look): a look failing then is dead-lettered instead of retried."""
    margin_s = 2 * settings.poll_max_interval_s + 30.0

    def check(msg: NatsMessage) -> bool:
        try:
            started = VideoGenerationStarted.model_validate_json(msg.raw_message.data)
        except ValidationError:
            return True
        deadline = deadline_of(started.job_created_at, settings.job_deadline_s)
        return (clock() - deadline).total_seconds() > margin_s

    return check


def dead_letter_routes(
    settings: GeneratorSettings, topology: Topology, publisher: EventPublisher
) -> tuple[DeadLetterRoute, DeadLetterRoute]:
    """Where a request and a poll that keep failing end (the video fails at generation)."""
    return (
        DeadLetterRoute(requests_policy(settings, topology), topology, publisher, "generation"),
        DeadLetterRoute(poll_policy(settings, topology), topology, publisher, "generation",
                        give_up=past_deadline(settings)),
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
    publisher: EventPublisher | None = None,
) -> None:
    heartbeat_s = max(settings.ack_wait_s / 3, 1.0)
    requests_route = poll_route = None
    if publisher is not None:
        requests_route, poll_route = dead_letter_routes(settings, topology, publisher)

    # A handler that crashed (a bug, not a provider or broker hiccup) looks again after a
    # growing delay instead of waiting out ack_wait; its last delivery is dead-lettered.
    def crash_delay(attempt: int) -> float:
        return backoff_delay(attempt, base=settings.create_retry_base_s,
                             cap=settings.create_retry_max_s)

    def poll_crash_delay(attempt: int) -> float:
        return backoff_delay(attempt, base=settings.poll_retry_base_s,
                             cap=settings.poll_max_interval_s)

    @durable_subscriber(broker, topology, requests_policy(settings, topology),
                        max_workers=settings.requests_max_workers, decoder=raw_body)
    async def on_video_requested(body: bytes, msg: MessageParam) -> None:
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
                dead_letter=requests_route,
                failure_delay=crash_delay,
            )

    @durable_subscriber(broker, topology, poll_policy(settings, topology),
                        max_workers=settings.poll_max_workers, decoder=raw_body)
    async def on_generation_started(body: bytes, msg: MessageParam) -> None:
        started = await _decode(VideoGenerationStarted, body, msg)
        if started is None:
            return
        await settle(
            msg,
            lambda: tracker.poll(started, delivery_attempt(msg)),
            transient=TRANSIENT,
            base_delay=settings.poll_retry_base_s,
            max_delay=settings.poll_max_interval_s,
            dead_letter=poll_route,
            failure_delay=poll_crash_delay,
        )
