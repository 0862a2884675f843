"""The archive handler: a copy waits for its slot, a copy's retry is a ``RetryLater``, a stop
hands waiting copies back at once, a dead letter fails the video."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from reelvault_archiver.copier import Retry, Stored, VideoCopier
from reelvault_archiver.handlers import STOPPING_RETRY_S, ArchiveHandler
from reelvault_archiver.jobs import ArchiveJob
from reelvault_archiver.scheduling import DeadlineScheduler
from reelvault_common.contracts.events import (
    StoredFile,
    VideoCompleted,
    VideoFailed,
    VideoStored,
)
from reelvault_common.messaging.consumer import Delivery
from reelvault_common.messaging.deadletter import DeadLetter
from reelvault_common.messaging.outcomes import RetryLater
from reelvault_common.messaging.publisher import EventPublisher

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def completed(expires_in_min: float = 30) -> VideoCompleted:
    return VideoCompleted.new(
        video_id=uuid.uuid4(), correlation_id="corr-1", provider="openai",
        provider_job_id="video_abc", source_url="http://198.51.100.7/v1/videos/video_abc/content",
        expires_at=NOW + timedelta(minutes=expires_in_min), org="acme", requested_at=NOW,
    )


def stored(job: ArchiveJob) -> Stored:
    video = StoredFile(bucket="videos", key="k", bytes=3, sha256="0" * 64,
                       content_type="video/mp4")
    return Stored(VideoStored.new(video_id=job.video_id, org=job.org,
                                  correlation_id=job.correlation_id,
                                  provider_job_id=job.provider_job_id, video=video,
                                  thumbnail=None))


class FakeCopier:
    def __init__(self, outcome: Any = None, *, hold: asyncio.Event | None = None) -> None:
        self.outcome = outcome
        self.hold = hold
        self.attempts: list[int] = []

    async def archive(self, job: ArchiveJob, *, attempt: int = 1) -> Any:
        self.attempts.append(attempt)
        if self.hold is not None:
            await self.hold.wait()
        return self.outcome if self.outcome is not None else stored(job)


class FakePublisher:
    def __init__(self) -> None:
        self.published: list[Any] = []

    async def publish(self, event: Any) -> None:
        self.published.append(event)


def handler(copier: FakeCopier, publisher: FakePublisher,
            scheduler: DeadlineScheduler | None = None) -> ArchiveHandler:
    return ArchiveHandler(cast(VideoCopier, copier), cast(EventPublisher, publisher),
                          scheduler or DeadlineScheduler(1, gather_s=0))


def delivery(attempt: int = 1) -> Delivery:
    return Delivery(subject="unit.video.completed", attempt=attempt, stream_sequence=7)


async def test_a_copy_publishes_its_outcome_with_the_delivery_attempt() -> None:
    copier, publisher = FakeCopier(), FakePublisher()
    event = completed()
    await handler(copier, publisher).archive(event, delivery(attempt=3))
    assert copier.attempts == [3]
    [outcome] = publisher.published
    assert isinstance(outcome, VideoStored) and outcome.video_id == event.video_id


async def test_a_copy_asking_for_a_retry_raises_retry_later() -> None:
    publisher = FakePublisher()
    with pytest.raises(RetryLater) as raised:
        await handler(FakeCopier(Retry(2.5, "video download: HTTP 503")), publisher).archive(
            completed(), delivery())
    assert raised.value.delay == 2.5
    assert publisher.published == []


async def test_stopping_hands_copies_waiting_for_a_slot_back_at_once() -> None:
    scheduler = DeadlineScheduler(1, gather_s=0)
    hold = asyncio.Event()
    copier, publisher = FakeCopier(hold=hold), FakePublisher()
    archive = handler(copier, publisher, scheduler)
    running = asyncio.create_task(archive.archive(completed(10), delivery()))
    waiting = asyncio.create_task(archive.archive(completed(20), delivery()))
    for _ in range(2000):  # the second one waits for the slot the first holds
        if scheduler.waiting:
            break
        await asyncio.sleep(0.001)
    assert scheduler.waiting == 1
    scheduler.close()
    with pytest.raises(RetryLater) as raised:
        await waiting
    assert raised.value.delay == STOPPING_RETRY_S
    assert not running.done()  # the copy in flight is the runner's to drain
    hold.set()
    await running
    assert len(copier.attempts) == 1 and len(publisher.published) == 1
    with pytest.raises(RetryLater):  # and nothing new starts
        await archive.archive(completed(5), delivery())


async def test_a_dead_letter_fails_the_video_retryably() -> None:
    publisher = FakePublisher()
    event = completed()
    letter = DeadLetter.of(consumer="unit-archiver-completed", subject="unit.video.completed",
                           stream_sequence=7, deliveries=500, payload=b"{}", headers={},
                           error="ValueError: boom", video_id=event.video_id)
    await handler(FakeCopier(), publisher).dead_lettered(event, letter)
    [failed] = publisher.published
    assert isinstance(failed, VideoFailed)
    assert (failed.video_id, failed.stage, failed.code, failed.retryable) == (
        event.video_id, "archive", "dead_lettered", True)
    assert "500 deliveries to unit-archiver-completed" in failed.message
