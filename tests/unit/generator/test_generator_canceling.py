"""JobCanceler: a cancel is recorded in the ledger (failed, ``canceled``) so whatever comes
later sees it: a request not started is never created, a followed job is no longer polled,
and the video fails once with code ``canceled``."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta
from typing import Any

import pytest
from generator_fakes import T0, TIMING, Clock, FakeProvider, FakeReferences, MemoryLedger, Sink, job
from generator_fakes import request as video_request
from reelvault_common.contracts.events import (
    CANCELED,
    VideoCancelRequested,
    VideoGenerationStarted,
    VideoRequested,
)
from reelvault_common.messaging.outcomes import RetryLater
from reelvault_generator.canceling import CANCELED_MESSAGE, JobCanceler
from reelvault_generator.ledger import JobBinding, new_claim
from reelvault_generator.polling import PollSchedule
from reelvault_generator.starting import JobStarter
from reelvault_generator.tracking import FollowedJob, JobTracker
from reelvault_generator.webhooks import WebhookReceiver
from test_generator_webhook_receiver import NOW, SECRET, MemorySeen, delivery


def cancel_of(req: VideoRequested) -> VideoCancelRequested:
    return VideoCancelRequested.new(video_id=req.video_id, org=req.org,
                                    correlation_id=req.correlation_id, requested_by="key_1")


def canceler(ledger: MemoryLedger, sink: Sink, clock: Clock | None = None) -> JobCanceler:
    return JobCanceler(ledger=ledger, events=sink, owner="gen-c", clock=clock or Clock())


def starter(ledger: MemoryLedger, provider: FakeProvider, sink: Sink,
            clock: Clock) -> JobStarter:
    return JobStarter(ledger=ledger, provider=provider, references=FakeReferences(),
                      events=sink, owner="gen-a", timing=TIMING, clock=clock)


def started_of(req: VideoRequested, job_id: str = "video_1") -> VideoGenerationStarted:
    return VideoGenerationStarted.new(
        video_id=req.video_id, org=req.org, correlation_id=req.correlation_id,
        provider_job_id=job_id, provider="openai", model=req.model, seconds=req.seconds,
        size=req.size, requested_at=req.occurred_at, job_created_at=T0)


async def test_a_cancel_before_any_claim_blocks_the_later_create() -> None:
    ledger, sink, clock = MemoryLedger(), Sink(), Clock()
    req = video_request()
    await canceler(ledger, sink, clock).handle(cancel_of(req))

    entry, _ = ledger.entries[req.video_id]
    assert (entry.state, entry.failure_code, entry.failure_message) == (
        "failed", CANCELED, CANCELED_MESSAGE)
    assert (entry.org, entry.correlation_id) == (req.org, req.correlation_id)
    [failed] = sink.events
    assert (failed.type, failed.code, failed.stage, failed.provider_job_id) == (
        "video.failed", CANCELED, "generation", None)
    assert failed.retryable is False

    # The request arrives afterwards (or is redelivered): no job is ever created.
    provider = FakeProvider(create_results=[job()])
    await starter(ledger, provider, sink, clock).handle(req)
    assert provider.creates == []
    assert [e.code for e in sink.events] == [CANCELED, CANCELED]
    assert sink.events[1].event_id == failed.event_id  # one fact, deduplicated


async def test_a_cancel_of_a_created_job_fails_the_video_naming_the_job() -> None:
    ledger, sink, clock = MemoryLedger(), Sink(), Clock()
    req = video_request()
    await starter(ledger, FakeProvider(create_results=[job("video_9")]), sink, clock).handle(req)
    sink.events.clear()

    await canceler(ledger, sink, clock).handle(cancel_of(req))

    entry, _ = ledger.entries[req.video_id]
    assert (entry.state, entry.failure_code, entry.provider_job_id) == (
        "failed", CANCELED, "video_9")
    [failed] = sink.events
    assert (failed.code, failed.provider_job_id, failed.video_id) == (
        CANCELED, "video_9", req.video_id)


async def test_a_cancel_during_the_create_leaves_the_video_canceled() -> None:
    # The claim is replaced while the create is in flight: the job the create returns is not
    # recorded, and the request's delivery republishes the cancel.
    ledger, sink, clock = MemoryLedger(), Sink(), Clock()
    req = video_request()
    cancels = canceler(ledger, sink, clock)

    class CanceledMidCreate(FakeProvider):
        async def create(self, request: VideoRequested, images: Any) -> Any:
            await cancels.handle(cancel_of(request))
            return await super().create(request, images)

    provider = CanceledMidCreate(create_results=[job("video_orphan")])
    await starter(ledger, provider, sink, clock).handle(req)

    entry, _ = ledger.entries[req.video_id]
    assert (entry.state, entry.failure_code) == ("failed", CANCELED)
    assert sink.types() == ["video.failed", "video.failed"]
    assert len({e.event_id for e in sink.events}) == 1
    assert len(provider.creates) == 1


async def test_a_cancel_after_the_video_failed_otherwise_does_nothing() -> None:
    ledger, sink = MemoryLedger(), Sink()
    req = video_request()
    claim = new_claim(owner="g", now=T0, correlation_id=req.correlation_id, org=req.org,
                      requested_at=T0)
    await ledger.claim(req.video_id, claim.failed(code="moderation_blocked", message="no"))
    before = ledger.entries[req.video_id]

    await canceler(ledger, sink).handle(cancel_of(req))

    assert ledger.entries[req.video_id] == before
    assert sink.events == []


async def test_a_repeated_cancel_publishes_the_same_event() -> None:
    ledger, sink = MemoryLedger(), Sink()
    req = video_request()
    await starter(ledger, FakeProvider(create_results=[job("video_9")]), sink,
                  Clock()).handle(req)
    sink.events.clear()
    cancels = canceler(ledger, sink)
    await cancels.handle(cancel_of(req))
    revision = ledger.entries[req.video_id][1]
    await cancels.handle(cancel_of(req))

    first, again = sink.events
    assert first.event_id == again.event_id
    assert again.provider_job_id == "video_9"
    assert ledger.entries[req.video_id][1] == revision  # nothing written the second time


async def test_canceled_says_whether_the_video_was_canceled() -> None:
    ledger, sink = MemoryLedger(), Sink()
    cancels = canceler(ledger, sink)
    req, other, failed = video_request(), video_request(), video_request()
    claim = new_claim(owner="g", now=T0, correlation_id="c", org="acme", requested_at=T0)
    await ledger.claim(other.video_id, claim)
    await ledger.claim(failed.video_id, claim.failed(code="invalid_size", message="no"))
    await cancels.handle(cancel_of(req))

    assert await cancels.canceled(req.video_id)
    assert not await cancels.canceled(other.video_id)
    assert not await cancels.canceled(failed.video_id)
    assert not await cancels.canceled(uuid.uuid4())


async def test_a_ledger_fought_over_is_retried_later() -> None:
    class Busy(MemoryLedger):
        async def replace(self, video_id: uuid.UUID, entry: Any, *, last: int) -> int | None:
            return None  # someone else always wrote first

    ledger, sink = Busy(), Sink()
    req = video_request()
    claim = new_claim(owner="g", now=T0, correlation_id="c", org="acme", requested_at=T0)
    await ledger.claim(req.video_id, claim)
    with pytest.raises(RetryLater):
        await canceler(ledger, sink).handle(cancel_of(req))
    assert sink.events == []


# --- the tracker stops following a canceled video -------------------------------------------
def tracker(provider: FakeProvider, sink: Sink, cancels: JobCanceler) -> JobTracker:
    return JobTracker(provider=provider, events=sink, schedule=PollSchedule(), deadline_s=3600,
                      clock=Clock(T0 + timedelta(seconds=10)), rng=random.Random(0),
                      canceled=cancels.canceled)


async def test_the_poll_of_a_canceled_video_stops_without_asking_the_provider() -> None:
    ledger, sink = MemoryLedger(), Sink()
    req = video_request()
    await starter(ledger, FakeProvider(create_results=[job("video_1")]), sink,
                  Clock()).handle(req)
    cancels = canceler(ledger, sink)
    await cancels.handle(cancel_of(req))
    sink.events.clear()
    provider = FakeProvider(retrieve_results=[(job(status="in_progress", progress=50), None)])
    follow = tracker(provider, sink, cancels)

    await follow.poll(started_of(req), attempt=3)  # returns: no further look

    assert provider.retrieves == 0
    assert sink.events == []
    assert follow.finished("video_1")


async def test_the_poll_of_a_video_not_canceled_goes_on() -> None:
    ledger, sink = MemoryLedger(), Sink()
    req = video_request()
    await starter(ledger, FakeProvider(create_results=[job("video_1")]), sink,
                  Clock()).handle(req)
    sink.events.clear()
    provider = FakeProvider(retrieve_results=[(job(status="in_progress", progress=50), None)])
    with pytest.raises(RetryLater):
        await tracker(provider, sink, canceler(ledger, sink)).poll(started_of(req))
    assert provider.retrieves == 1
    assert sink.types() == ["video.generation.progress"]


async def test_a_webhook_for_a_canceled_video_does_not_complete_it() -> None:
    ledger, sink = MemoryLedger(), Sink()
    req = video_request()
    await starter(ledger, FakeProvider(create_results=[job("video_1")]), sink,
                  Clock()).handle(req)
    await ledger.bind_job("openai", "video_1", req.video_id, binding=JobBinding(
        video_id=req.video_id, correlation_id=req.correlation_id, org=req.org,
        requested_at=req.occurred_at, job_created_at=T0))
    cancels = canceler(ledger, sink)
    await cancels.handle(cancel_of(req))
    sink.events.clear()
    provider = FakeProvider(retrieve_results=[
        (job("video_1", phase="completed", status="completed", progress=100), None)])
    follow = tracker(provider, sink, cancels)
    follow.follow(FollowedJob(video_id=req.video_id, correlation_id=req.correlation_id,
                              provider_job_id="video_1", org=req.org,
                              requested_at=req.occurred_at, job_created_at=T0))
    receiver = WebhookReceiver(secret=SECRET, seen=MemorySeen(), ledger=ledger,
                               provider=provider, tracker=follow, clock=lambda: NOW)
    status, body = await receiver.handle(*delivery("video_1"))

    assert (status, body) == (200, {"status": "canceled"})
    assert provider.retrieves == 0
    assert sink.events == []
