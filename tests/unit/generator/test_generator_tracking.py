"""JobTracker: one look per delivery; terminal states, progress, retries and the deadline."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from generator_fakes import T0, Clock, FakeProvider, Sink, job
from reelvault_common.contracts.events import VideoGenerationStarted
from reelvault_common.messaging.outcomes import RetryLater
from reelvault_common.providers.openai_videos import ProviderError
from reelvault_generator.polling import PollSchedule
from reelvault_generator.tracking import FollowedJob, JobTracker

SCHEDULE = PollSchedule(interval_s=2.0, max_interval_s=15.0, backoff_factor=1.5, jitter=0.0)


def started(job_created_at: datetime = T0) -> VideoGenerationStarted:
    return VideoGenerationStarted.new(
        video_id=uuid.uuid4(), correlation_id="corr", provider_job_id="video_1",
        provider="openai", model="sora-2", seconds="4", size="1280x720", org="acme",
        requested_at=T0 - timedelta(seconds=5), job_created_at=job_created_at)


def tracker(provider: FakeProvider, sink: Sink, clock: Clock,
            deadline_s: float = 3600) -> JobTracker:
    return JobTracker(provider=provider, events=sink, schedule=SCHEDULE, deadline_s=deadline_s,
                      retry_base_s=1.0, clock=clock, rng=random.Random(1))


async def test_running_job_reports_progress_once_and_polls_again() -> None:
    clock, sink = Clock(T0 + timedelta(seconds=10)), Sink()
    provider = FakeProvider(retrieve_results=[
        (job(status="in_progress", progress=30), None),
        (job(status="in_progress", progress=30), None),
        (job(status="in_progress", progress=60), None),
    ])
    t, event = tracker(provider, sink, clock), started()
    delays = []
    for attempt in (1, 2, 3):
        with pytest.raises(RetryLater) as retry:
            await t.poll(event, attempt)
        delays.append(retry.value.delay)

    assert [e.progress for e in sink.events] == [30, 60]
    assert {e.org for e in sink.events} == {"acme"}  # the Started event's organization
    assert delays == [2.0, 3.0, 4.5]


async def test_server_poll_after_is_honoured() -> None:
    clock, sink = Clock(), Sink()
    provider = FakeProvider(retrieve_results=[(job(status="queued"), 0.75)])
    with pytest.raises(RetryLater) as retry:
        await tracker(provider, sink, clock).poll(started(), 9)
    assert retry.value.delay == 0.75


async def test_completed_job_publishes_completed() -> None:
    clock, sink = Clock(), Sink()
    expires = T0 + timedelta(hours=1)
    provider = FakeProvider(retrieve_results=[
        (job(phase="completed", status="completed", progress=100, expires_at=expires), None)])
    event = started()
    await tracker(provider, sink, clock).poll(event)

    [completed] = sink.events
    assert completed.type == "video.completed"
    assert completed.expires_at == expires
    assert completed.source_url == "http://provider/v1/videos/video_1/content"
    assert (completed.org, completed.requested_at) == ("acme", event.requested_at)
    assert completed.correlation_id == "corr"


async def test_failed_job_publishes_the_providers_error() -> None:
    clock, sink = Clock(), Sink()
    provider = FakeProvider(retrieve_results=[(job(
        phase="failed", status="failed", error_code="moderation_blocked",
        error_message="Blocked."), None)])
    await tracker(provider, sink, clock).poll(started())
    [failed] = sink.events
    assert (failed.stage, failed.code, failed.message) == (
        "generation", "moderation_blocked", "Blocked.")
    assert failed.provider_job_id == "video_1"
    assert failed.org == "acme"


async def test_past_the_deadline_the_job_fails_clearly() -> None:
    clock, sink = Clock(T0 + timedelta(seconds=61)), Sink()
    provider = FakeProvider(retrieve_results=[(job(status="in_progress", progress=40), None)])
    await tracker(provider, sink, clock, deadline_s=60).poll(started())
    [failed] = sink.events
    assert failed.code == "deadline_exceeded"
    assert "60s" in failed.message
    assert "in_progress" in failed.message


async def test_a_finished_job_wins_over_a_passed_deadline() -> None:
    clock, sink = Clock(T0 + timedelta(hours=2)), Sink()
    provider = FakeProvider(retrieve_results=[
        (job(phase="completed", status="completed", progress=100), None)])
    await tracker(provider, sink, clock, deadline_s=60).poll(started())
    assert sink.types() == ["video.completed"]


async def test_next_poll_is_scheduled_at_the_deadline_not_after() -> None:
    clock, sink = Clock(T0 + timedelta(seconds=59)), Sink()
    provider = FakeProvider(retrieve_results=[(job(status="in_progress", progress=40), None)])
    with pytest.raises(RetryLater) as retry:
        await tracker(provider, sink, clock, deadline_s=60).poll(started(), attempt=20)
    assert retry.value.delay == pytest.approx(1.05)


async def test_unknown_job_fails_as_not_found() -> None:
    clock, sink = Clock(), Sink()
    provider = FakeProvider(retrieve_results=[ProviderError("no such video", status=404)])
    await tracker(provider, sink, clock).poll(started())
    [failed] = sink.events
    assert failed.code == "provider_job_not_found"


async def test_rate_limited_retrieve_waits_as_told() -> None:
    clock, sink = Clock(), Sink()
    provider = FakeProvider(retrieve_results=[ProviderError("slow down", status=429,
                                                            retry_after_s=12.0)])
    with pytest.raises(RetryLater) as retry:
        await tracker(provider, sink, clock).poll(started())
    assert retry.value.delay == 12.0
    assert sink.events == []


async def test_transient_errors_back_off_until_the_deadline_then_fail() -> None:
    clock, sink = Clock(), Sink()
    provider = FakeProvider(retrieve_results=[ProviderError("oops", status=502),
                                              ProviderError("down", status=None)])
    t = tracker(provider, sink, clock, deadline_s=60)
    with pytest.raises(RetryLater) as retry:
        await t.poll(started(), attempt=3)
    assert 2.0 <= retry.value.delay <= 4.0
    clock.now = datetime(2026, 5, 1, 12, 5, tzinfo=UTC)
    await t.poll(started(), attempt=4)
    assert [e.code for e in sink.events] == ["deadline_exceeded"]


async def test_a_poll_after_the_job_was_finished_here_asks_nothing() -> None:
    # The webhook (or an earlier look) already published the end: the next look is free.
    clock, sink = Clock(), Sink()
    provider = FakeProvider(retrieve_results=[
        (job(phase="completed", status="completed", progress=100), None)])
    t, event = tracker(provider, sink, clock), started()
    await t.poll(event)
    await t.poll(event, 2)
    assert provider.retrieves == 1
    assert [e.type for e in sink.events] == ["video.completed"]


# --- with webhooks: the first look waits (the webhook normally ends the job first) ---------
def hooked_tracker(provider: FakeProvider, sink: Sink, clock: Clock,
                   first_look_after_s: float = 30.0) -> JobTracker:
    return JobTracker(provider=provider, events=sink, schedule=SCHEDULE, deadline_s=3600,
                      retry_base_s=1.0, clock=clock, rng=random.Random(1),
                      first_look_after_s=first_look_after_s)


async def test_with_webhooks_the_first_look_waits_without_asking_the_provider() -> None:
    clock, sink = Clock(T0 + timedelta(seconds=2)), Sink()
    provider = FakeProvider()
    with pytest.raises(RetryLater) as retry:
        await hooked_tracker(provider, sink, clock).poll(started(), 1)
    # Counted from the job's creation, not from this delivery.
    assert retry.value.delay == pytest.approx(28.0)
    assert provider.retrieves == 0
    assert sink.events == []


async def test_with_webhooks_the_first_delivery_reserves_the_looks_budget_slot() -> None:
    # The poll queue is long: the budget's slot for the look is 95 s away. One delivery
    # reserves it (no provider call) and the message comes back at that slot, not at 30 s.
    clock, sink = Clock(T0 + timedelta(seconds=2)), Sink()
    provider = FakeProvider(reserved_wait_s=95.0)
    with pytest.raises(RetryLater) as retry:
        await hooked_tracker(provider, sink, clock).poll(started(), 1)
    assert retry.value.delay == pytest.approx(95.0)
    assert provider.reserved == [("video_1", (T0 + timedelta(seconds=30)).timestamp())]
    assert provider.retrieves == 0


async def test_with_webhooks_the_delayed_look_polls_as_usual() -> None:
    # No webhook came: the redelivery (attempt 2) looks, and the job ends by polling.
    clock, sink = Clock(T0 + timedelta(seconds=1)), Sink()
    provider = FakeProvider(retrieve_results=[
        (job(phase="completed", status="completed", progress=100), None)])
    t, event = hooked_tracker(provider, sink, clock), started()
    with pytest.raises(RetryLater):
        await t.poll(event, 1)
    clock.advance(30)
    await t.poll(event, 2)
    assert provider.retrieves == 1
    assert [e.type for e in sink.events] == ["video.completed"]


async def test_with_webhooks_a_started_event_seen_late_is_looked_at_at_once() -> None:
    # A backlog (or a restart) delivered the Started event after the first-look time.
    clock, sink = Clock(T0 + timedelta(seconds=45)), Sink()
    provider = FakeProvider(retrieve_results=[(job(status="in_progress", progress=50), None)])
    with pytest.raises(RetryLater) as retry:
        await hooked_tracker(provider, sink, clock).poll(started(), 1)
    assert provider.retrieves == 1
    assert retry.value.delay == 2.0  # the normal schedule from here
    assert [e.progress for e in sink.events] == [50]


async def test_with_webhooks_a_job_the_webhook_ended_is_acked_on_first_look() -> None:
    clock, sink = Clock(T0 + timedelta(seconds=1)), Sink()
    provider = FakeProvider(retrieve_results=[
        (job(phase="completed", status="completed", progress=100), None)])
    t, event = hooked_tracker(provider, sink, clock), started()
    followed = FollowedJob.from_started(event)
    await t.settle_job(followed, (await provider.retrieve("video_1"))[0])  # the webhook
    await t.poll(event, 1)  # returns: nothing to wait for
    assert provider.retrieves == 1


async def test_with_webhooks_the_first_look_never_waits_past_the_deadline() -> None:
    clock, sink = Clock(T0 + timedelta(seconds=1)), Sink()
    t = JobTracker(provider=FakeProvider(), events=sink, schedule=SCHEDULE, deadline_s=10,
                   clock=clock, first_look_after_s=30.0)
    with pytest.raises(RetryLater) as retry:
        await t.poll(started(), 1)
    assert retry.value.delay == pytest.approx(9.05)  # the deadline, plus its slack


def test_recorded_jobs_are_remembered_until_they_end() -> None:
    t = hooked_tracker(FakeProvider(), Sink(), Clock())
    followed = FollowedJob.from_started(started())
    assert t.followed("video_1") is None
    t.follow(followed)
    assert t.followed("video_1") == followed
