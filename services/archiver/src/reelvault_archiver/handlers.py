"""Thin message handlers: decode, run the copy, publish the outcome, settle the message."""

from __future__ import annotations

import logging

from faststream.nats import NatsMessage
from pydantic import ValidationError
from reelvault_common.contracts.events import VideoArchiveRequested, VideoCompleted, parse_event
from reelvault_common.messaging.consuming import (
    DeadLetterRoute,
    EventPublisher,
    RetryLater,
    delivery_attempt,
    settle,
)

from reelvault_archiver.copier import Retry, VideoCopier
from reelvault_archiver.heartbeat import keep_alive
from reelvault_archiver.jobs import ArchiveJob
from reelvault_archiver.scheduling import DeadlineScheduler, SchedulerClosed

log = logging.getLogger(__name__)


class ArchiveHandlers:
    """Both inputs lead to the same copy; each has its own durable (and dead-letter route).
    With a ``scheduler``, copies wait for a slot, earliest ``expires_at`` first (heartbeated
    while they wait)."""

    def __init__(
        self,
        copier: VideoCopier,
        publisher: EventPublisher,
        *,
        heartbeat_interval_s: float,
        completed_dead_letter: DeadLetterRoute | None = None,
        rearchive_dead_letter: DeadLetterRoute | None = None,
        scheduler: DeadlineScheduler,
    ) -> None:
        self._copier = copier
        self._publisher = publisher
        self._heartbeat_interval_s = heartbeat_interval_s
        self._completed_dead_letter = completed_dead_letter
        self._rearchive_dead_letter = rearchive_dead_letter
        self._scheduler = scheduler

    async def on_completed(self, body: bytes, msg: NatsMessage) -> None:
        await self._handle(body, msg, VideoCompleted, self._completed_dead_letter)

    async def on_archive_requested(self, body: bytes, msg: NatsMessage) -> None:
        await self._handle(body, msg, VideoArchiveRequested, self._rearchive_dead_letter)

    async def _handle(
        self,
        body: bytes,
        msg: NatsMessage,
        expected: type[VideoCompleted] | type[VideoArchiveRequested],
        dead_letter: DeadLetterRoute | None,
    ) -> None:
        try:
            event = parse_event(body)
        except ValidationError as exc:
            # Redelivering a payload nobody can read helps no one.
            log.error("dropping undecodable message on %s: %s", msg.raw_message.subject, exc)
            await msg.reject()
            return
        if not isinstance(event, expected):
            log.error("dropping %s on %s: expected %s", event.type, msg.raw_message.subject,
                      expected.__name__)
            await msg.reject()
            return
        job = ArchiveJob.from_event(event)

        async def work() -> None:
            async with keep_alive(msg.in_progress, self._heartbeat_interval_s):
                try:
                    async with self._scheduler.slot(job.expires_at):
                        outcome = await self._copier.archive(job, attempt=delivery_attempt(msg))
                except SchedulerClosed:
                    # Stopping: hand the waiting message back for another replica (or us later).
                    raise RetryLater(0.5, "the archiver is stopping") from None
            if isinstance(outcome, Retry):
                raise RetryLater(outcome.delay, outcome.reason)
            await self._publisher.publish(outcome.event)

        # A publish that timed out is retried soon; anything unknown is redelivered after
        # ack_wait (the copy is idempotent either way).
        await settle(msg, work, transient=(TimeoutError,), dead_letter=dead_letter)

