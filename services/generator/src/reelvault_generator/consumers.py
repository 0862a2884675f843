"""The generator's two durable consumers, declared in one place: names, subjects, delivery
rules (``settings.requests`` / ``settings.poll``), decoding, the thin handlers and what a dead
letter means. The ``ConsumerRunner`` settles every message; the logic lives in ``starting`` and
``tracking``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import nats.errors
from reelvault_common.contracts.events import (
    VideoCancelRequested,
    VideoFailed,
    VideoGenerationStarted,
    VideoRequested,
)
from reelvault_common.messaging.consumer import Consumer, DeadLetterHook, Delivery
from reelvault_common.messaging.deadletter import DeadLetter
from reelvault_common.messaging.publisher import EventPublisher
from reelvault_common.messaging.topology import ConsumerPolicy, Topology
from reelvault_common.providers.openai_videos import ProviderError
from reelvault_common.storage import TransientStorageError

from reelvault_generator.canceling import JobCanceler
from reelvault_generator.polling import deadline_of
from reelvault_generator.settings import GeneratorSettings
from reelvault_generator.starting import JobStarter
from reelvault_generator.tracking import JobTracker

SERVICE = "generator"

# Expected hiccups (logged without a traceback) that escaped the logic: provider errors,
# storage outages, broker/KV trouble. Like any failure they are retried with the consumer's
# retry pacing until its last delivery.
TRANSIENT: tuple[type[BaseException], ...] = (
    ProviderError,
    TransientStorageError,
    nats.errors.Error,
    TimeoutError,
)


# --- video.requested: one provider job per video -------------------------------------------
def requests_names(topology: Topology) -> tuple[str, tuple[str, ...]]:
    """The durable and subjects of the request consumer."""
    return topology.durable(SERVICE, "requests"), (topology.subject_for(VideoRequested),)


def requests_policy(settings: GeneratorSettings, topology: Topology) -> ConsumerPolicy:
    """``video.requested``: one provider job per video (the ledger claims it). Every retry
    (rate limits, outages, a claim another replica holds) is a ``nak`` with a growing delay
    (``requests.retry_base_s`` .. ``requests.retry_max_s``), so ``requests.max_deliver``
    deliveries span hours; a request still not started then is dead-lettered and its video
    failed (``dead_lettered``), to be replayed once the cause is fixed."""
    return ConsumerPolicy.of(*requests_names(topology), settings.requests)


def requests_consumer(
    settings: GeneratorSettings,
    topology: Topology,
    starter: JobStarter,
    on_dead_letter: DeadLetterHook[VideoRequested],
) -> Consumer[VideoRequested]:
    async def start_job(request: VideoRequested, delivery: Delivery) -> None:
        await starter.handle(request, delivery.attempt)

    durable, subjects = requests_names(topology)
    return Consumer.configured(
        settings.requests, durable=durable, subjects=subjects,
        decode=VideoRequested.model_validate_json, handle=start_job,
        transient=TRANSIENT, on_dead_letter=on_dead_letter,
    )


# --- video.generation.started: one look at the provider's job per delivery -----------------
def poll_names(topology: Topology) -> tuple[str, tuple[str, ...]]:
    """The durable and subjects of the poll consumer."""
    return topology.durable(SERVICE, "poll"), (topology.subject_for(VideoGenerationStarted),)


def poll_policy(settings: GeneratorSettings, topology: Topology) -> ConsumerPolicy:
    """``video.generation.started``: each delivery is one look at the provider's job. A job
    ends by its own outcome or by the handler's deadline check (``job_deadline_s``), so
    ``poll.max_deliver`` is derived from the deadline and the shortest gap between looks
    (``settings.poll_max_deliver``, unless set); a look that keeps failing is dead-lettered
    once the job is past its deadline (``past_deadline``)."""
    return ConsumerPolicy.of(*poll_names(topology), settings.poll)


def past_deadline(
    settings: GeneratorSettings, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> Callable[[VideoGenerationStarted], bool]:
    """True once a Started event's job is past its deadline (plus a margin for the last
    look): a look failing then is dead-lettered instead of retried."""
    margin_s = 2 * settings.poll_max_interval_s + 30.0

    def check(started: VideoGenerationStarted) -> bool:
        deadline = deadline_of(started.job_created_at, settings.job_deadline_s)
        return (clock() - deadline).total_seconds() > margin_s

    return check


def poll_consumer(
    settings: GeneratorSettings,
    topology: Topology,
    tracker: JobTracker,
    on_dead_letter: DeadLetterHook[VideoGenerationStarted],
) -> Consumer[VideoGenerationStarted]:
    async def look(started: VideoGenerationStarted, delivery: Delivery) -> None:
        await tracker.poll(started, delivery.attempt)

    durable, subjects = poll_names(topology)
    return Consumer.configured(
        settings.poll, durable=durable, subjects=subjects,
        decode=VideoGenerationStarted.model_validate_json, handle=look,
        transient=TRANSIENT, on_dead_letter=on_dead_letter, give_up=past_deadline(settings),
    )


# --- video.cancel.requested: stop following a video's job ------------------------------------
def cancel_names(topology: Topology) -> tuple[str, tuple[str, ...]]:
    return topology.durable(SERVICE, "cancel"), (topology.subject_for(VideoCancelRequested),)


def cancel_policy(settings: GeneratorSettings, topology: Topology) -> ConsumerPolicy:
    """``video.cancel.requested``: one ledger write and one event per request."""
    return ConsumerPolicy.of(*cancel_names(topology), settings.cancel)


def cancel_consumer(
    settings: GeneratorSettings, topology: Topology, canceler: JobCanceler
) -> Consumer[VideoCancelRequested]:
    async def cancel(request: VideoCancelRequested, delivery: Delivery) -> None:
        await canceler.handle(request)

    durable, subjects = cancel_names(topology)
    return Consumer.configured(
        settings.cancel, durable=durable, subjects=subjects,
        decode=VideoCancelRequested.model_validate_json, handle=cancel, transient=TRANSIENT,
    )


# --- all -------------------------------------------------------------------------------------
def policies(settings: GeneratorSettings, topology: Topology) -> list[ConsumerPolicy]:
    """The durable consumers to create or reconcile at start-up."""
    return [requests_policy(settings, topology), poll_policy(settings, topology),
            cancel_policy(settings, topology)]


def fail_video(
    publisher: EventPublisher,
) -> DeadLetterHook[VideoRequested | VideoGenerationStarted]:
    """A request or look that ended in the dead-letter stream fails its video at generation
    (``dead_lettered``, retryable: a replay starts it again)."""

    async def announce(event: VideoRequested | VideoGenerationStarted,
                       letter: DeadLetter) -> None:
        failed = VideoFailed.dead_lettered(event, stage="generation", consumer=letter.consumer,
                                           deliveries=letter.deliveries, error=letter.error)
        if failed is not None:
            await publisher.publish(failed)

    return announce


def consumers(
    settings: GeneratorSettings,
    topology: Topology,
    *,
    starter: JobStarter,
    tracker: JobTracker,
    canceler: JobCanceler,
    publisher: EventPublisher,
) -> list[Consumer[Any]]:
    on_dead_letter = fail_video(publisher)
    return [
        requests_consumer(settings, topology, starter, on_dead_letter),
        poll_consumer(settings, topology, tracker, on_dead_letter),
        cancel_consumer(settings, topology, canceler),
    ]
