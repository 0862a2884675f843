"""Thin message handlers: wait for a copy slot, run the copy, publish the outcome.

Decoding, acks, naks, heartbeats (a copy, or a wait for a slot, longer than ack_wait), dead
letters and the hand-back at shutdown are the consumer runner's (``reelvault_common.messaging.
consumer``); a handler returns once the outcome is published, or raises ``RetryLater``.
"""

from __future__ import annotations

import logging

from reelvault_common.contracts.events import VideoArchiveRequested, VideoCompleted, VideoFailed
from reelvault_common.messaging.consumer import Delivery
from reelvault_common.messaging.deadletter import DeadLetter
from reelvault_common.messaging.outcomes import RetryLater
from reelvault_common.messaging.publisher import EventPublisher

from reelvault_archiver.copier import Retry, VideoCopier
from reelvault_archiver.jobs import ArchiveJob
from reelvault_archiver.scheduling import DeadlineScheduler, SchedulerClosed

log = logging.getLogger(__name__)

ArchiveEvent = VideoCompleted | VideoArchiveRequested

# A copy still waiting for a slot when the archiver stops is handed back this soon (for another
# replica, or this one after a restart).
STOPPING_RETRY_S = 0.5


class ArchiveHandler:
    """One consumer's handler. Copies wait for a slot of the shared ``scheduler``, earliest
    ``expires_at`` first; the ``copier`` paces its download retries like the consumer's
    deliveries."""

    def __init__(
        self, copier: VideoCopier, publisher: EventPublisher, scheduler: DeadlineScheduler
    ) -> None:
        self._copier = copier
        self._publisher = publisher
        self._scheduler = scheduler

    async def archive(self, event: ArchiveEvent, delivery: Delivery) -> None:
        job = ArchiveJob.from_event(event)
        try:
            async with self._scheduler.slot(job.expires_at):
                outcome = await self._copier.archive(job, attempt=delivery.attempt)
        except SchedulerClosed:
            # Stopping: hand the waiting message back at once instead of holding it.
            raise RetryLater(STOPPING_RETRY_S, "the archiver is stopping") from None
        if isinstance(outcome, Retry):
            raise RetryLater(outcome.delay, outcome.reason)
        # A publish that times out is retried (the copy is idempotent: it finds its objects).
        await self._publisher.publish(outcome.event)

    async def dead_lettered(self, event: ArchiveEvent, letter: DeadLetter) -> None:
        """The runner gave the message up (its last delivery still failed): the video failed
        at the archive stage, retryable (the dead letter can be replayed)."""
        failed = VideoFailed.dead_lettered(event, stage="archive", consumer=letter.consumer,
                                           deliveries=letter.deliveries, error=letter.error)
        if failed is not None:
            await self._publisher.publish(failed)
