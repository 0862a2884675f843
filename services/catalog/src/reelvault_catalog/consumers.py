"""The catalog's one durable consumer, declared in one place: the projection.

It takes every video lifecycle event of the namespace, of every organization
(``<namespace>.events.*.video.>``), and hands it to ``CatalogHandlers.handle_event``; the
``ConsumerRunner`` does the rest:

- a payload that is no lifecycle event (``parse_event`` fails) is terminated at once;
- an event whose row is not there yet comes back later (``RetryLater``, see ``wait_delay``);
- an event that failed while the database answered (refused, or its own statement timed out)
  is retried with ``nak_delay`` pacing (``retry_base_s`` .. ``retry_max_s``); on its
  ``max_deliver``-th delivery it goes to the dead-letter stream and its video is marked failed
  (``VideoFailed.dead_lettered`` at the event's own stage, see ``failure_stage``). Once the
  cause is fixed, ``reelvault dead-letters replay`` re-drives it;
- deliveries are spent only while the database answers: an outage is held inside the handler
  (the runner's heartbeat keeps the message alive meanwhile).

No backoff list on the server (``ConsumerPolicy.of``): every retry here carries its own nak
delay, which a backoff list would override; a stuck handler is redelivered after ``ack_wait``.
"""

from __future__ import annotations

from reelvault_common.contracts.events import FailureStage, VideoEvent, VideoFailed, parse_event
from reelvault_common.messaging.consumer import Consumer
from reelvault_common.messaging.deadletter import DeadLetter
from reelvault_common.messaging.publisher import EventPublisher
from reelvault_common.messaging.topology import ConsumerPolicy, Topology
from reelvault_common.runtime.settings import ConsumerSettings

from reelvault_catalog.handlers import TRANSIENT_DB_ERRORS, CatalogHandlers


def projection_durable(topology: Topology) -> str:
    return topology.durable("catalog", "projection")


def projection_subjects(topology: Topology) -> tuple[str, ...]:
    """Video events only: the stream also holds organization events (``org.quota.*``), which
    ``parse_event`` does not decode, so taking them here would terminate each one."""
    return (topology.video_events,)


def projection_policy(topology: Topology, settings: ConsumerSettings) -> ConsumerPolicy:
    """The projection's delivery rules (what ``wait_for_nats`` creates or reconciles)."""
    return ConsumerPolicy.of(projection_durable(topology), projection_subjects(topology),
                             settings)


_EVENT_STAGES: dict[str, FailureStage] = {
    "video.requested": "request",
    "video.generation.started": "generation",
    "video.generation.waiting": "generation",
    "video.generation.progress": "generation",
}


def failure_stage(event: VideoEvent) -> FailureStage:
    """The pipeline stage a dead-lettered event belongs to (``VideoFailed.stage``): a refused
    ``video.requested`` fails the request, a failure keeps its own stage, the rest is the
    archive's."""
    if isinstance(event, VideoFailed):
        return event.stage
    return _EVENT_STAGES.get(event.type, "archive")


class FailVideoOnDeadLetter:
    """What a dead letter means for a video here: it failed (``dead_lettered``, replayable) at
    the stage of the event that could not be recorded."""

    def __init__(self, publisher: EventPublisher) -> None:
        self._publisher = publisher

    async def __call__(self, event: VideoEvent, letter: DeadLetter) -> None:
        failed = VideoFailed.dead_lettered(
            event, stage=failure_stage(event), consumer=letter.consumer,
            deliveries=letter.deliveries, error=letter.error,
        )
        if failed is not None:  # None: the event was itself a dead-letter notice
            await self._publisher.publish(failed)


def projection_consumer(
    topology: Topology,
    settings: ConsumerSettings,
    handlers: CatalogHandlers,
    publisher: EventPublisher,
) -> Consumer[VideoEvent]:
    return Consumer.configured(
        settings,
        durable=projection_durable(topology),
        subjects=projection_subjects(topology),
        decode=parse_event,
        handle=handlers.handle_event,
        # An outage confirmed by a failed ping is held, not raised; one of these while the
        # database answers is this event's own hiccup (logged without a traceback).
        transient=TRANSIENT_DB_ERRORS,
        on_dead_letter=FailVideoOnDeadLetter(publisher),
    )
