"""VideoCancelRequested -> the video's job is no longer followed and the video fails
``canceled``.

The ledger entry records it (``failed``, code ``canceled``), so whatever comes later sees it: a
VideoRequested not yet started is never created, a create in flight finds its claim gone (its
job, if any, is not followed), and the poll of a running job stops at its next look. None of
the providers spoken here has a cancel call, so the provider's job itself runs on (and may be
charged) where it was already created.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from reelvault_common.contracts.events import CANCELED, VideoCancelRequested
from reelvault_common.messaging.outcomes import RetryLater

from reelvault_generator.events import EventSink, generation_failed
from reelvault_generator.ledger import new_claim
from reelvault_generator.ledger_store import LedgerStore

log = logging.getLogger(__name__)

CANCELED_MESSAGE = "canceled by its client"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class JobCanceler:
    MAX_ROUNDS = 3

    def __init__(self, *, ledger: LedgerStore, events: EventSink, owner: str,
                 clock: Callable[[], datetime] = _utcnow) -> None:
        self._ledger = ledger
        self._events = events
        self._owner = owner
        self._clock = clock

    async def canceled(self, video_id: uuid.UUID) -> bool:
        """Has the video been canceled? (Asked by the poll before each look.)"""
        current = await self._ledger.read(video_id)
        return current is not None and current[0].failure_code == CANCELED

    async def handle(self, request: VideoCancelRequested) -> None:
        for _ in range(self.MAX_ROUNDS):
            current = await self._ledger.read(request.video_id)
            if current is None:
                # Not started yet (or never will be): the claim itself says canceled.
                entry = new_claim(owner=self._owner, now=self._clock(),
                                  correlation_id=request.correlation_id, org=request.org,
                                  requested_at=request.occurred_at)
                done = await self._ledger.claim(
                    request.video_id, entry.failed(code=CANCELED, message=CANCELED_MESSAGE))
            else:
                entry, revision = current
                if entry.state == "failed":
                    if entry.failure_code == CANCELED:
                        await self._announce(request, entry.provider_job_id)
                    return  # it ended before the cancel came: nothing to cancel
                done = await self._ledger.replace(
                    request.video_id, entry.failed(code=CANCELED, message=CANCELED_MESSAGE),
                    last=revision)
                if done is not None:
                    log.info("video %s canceled (%s, job %s)", request.video_id, entry.state,
                             entry.provider_job_id)
            if done is not None:
                current = await self._ledger.read(request.video_id)
                job_id = current[0].provider_job_id if current is not None else None
                await self._announce(request, job_id)
                return
        raise RetryLater(1.0, f"ledger entry of {request.video_id} kept changing")

    async def _announce(self, request: VideoCancelRequested, job_id: str | None) -> None:
        await self._events.publish(generation_failed(
            video_id=request.video_id, org=request.org, correlation_id=request.correlation_id,
            code=CANCELED, message=CANCELED_MESSAGE, provider_job_id=job_id))
