"""The generator's two durable consumers are explicit and bounded: finite ``max_deliver``
(the poll consumer's derived from the job deadline), no server backoff list (naks carry their
own delays), their delivery rules set per consumer (``REELVAULT_REQUESTS__*``,
``REELVAULT_POLL__*``), thin handlers, a dead letter fails its video, and a look that keeps
failing past its job's deadline is given up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from generator_fakes import Clock, FakeProvider, FakeReferences, MemoryLedger, Sink, request
from pydantic import ValidationError
from reelvault_common.contracts.events import (
    VideoCancelRequested,
    VideoFailed,
    VideoGenerationStarted,
)
from reelvault_common.messaging.consumer import Delivery
from reelvault_common.messaging.deadletter import DeadLetter
from reelvault_common.messaging.outcomes import RetryLater
from reelvault_common.messaging.topology import Topology
from reelvault_common.providers.openai_videos import ProviderError
from reelvault_common.runtime.settings import ConsumerSettings
from reelvault_generator.consumers import (
    TRANSIENT,
    consumers,
    fail_video,
    past_deadline,
    policies,
    poll_policy,
    requests_policy,
)
from reelvault_generator.ledger import ClaimTiming
from reelvault_generator.settings import GeneratorSettings
from reelvault_generator.starting import JobStarter

TOPOLOGY = Topology(namespace="acme")
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def settings(**overrides: Any) -> GeneratorSettings:
    return GeneratorSettings(**overrides)


def test_the_request_consumer_gives_up_after_a_finite_number_of_deliveries() -> None:
    configured = settings(requests={"max_deliver": 40, "ack_wait_s": 90})
    config = requests_policy(configured, TOPOLOGY).to_config()
    assert config.durable_name == "acme-generator-requests"
    assert config.filter_subject == "acme.events.*.video.requested"
    assert (config.max_deliver, config.ack_wait, config.backoff) == (40, 90, None)
    assert config.max_ack_pending is not None and config.max_ack_pending > 0


@pytest.mark.parametrize(("deadline_s", "retry_base_s"), [(3600, 1.0), (600, 0.05), (30, 2.0)])
def test_the_poll_consumer_limit_outlasts_the_deadline_at_the_fastest_pace(
    deadline_s: float, retry_base_s: float
) -> None:
    configured = settings(job_deadline_s=deadline_s, poll={"retry_base_s": retry_base_s})
    config = poll_policy(configured, TOPOLOGY).to_config()
    assert config.durable_name == "acme-generator-poll"
    assert config.filter_subject == "acme.events.*.video.generation.started"
    assert config.backoff is None
    assert config.max_deliver is not None and config.max_deliver > 0  # finite
    # Looks are never closer than min_poll_gap_s: the deadline always comes first.
    fastest_looks = deadline_s / configured.min_poll_gap_s
    assert fastest_looks < config.max_deliver <= fastest_looks + 100


def test_consumer_defaults_are_todays_and_one_variable_keeps_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    defaults = settings()
    assert defaults.requests == ConsumerSettings(
        ack_wait_s=120, max_deliver=150, max_ack_pending=10000, workers=16, retry_base_s=1.0,
        retry_max_s=60.0)
    assert (defaults.poll.ack_wait_s, defaults.poll.max_ack_pending, defaults.poll.workers,
            defaults.poll.retry_base_s) == (120, 10000, 16, 1.0)
    # Derived: the poll retry cap is the longest gap between looks.
    assert defaults.poll.retry_max_s == defaults.poll_max_interval_s == 15.0

    monkeypatch.setenv("REELVAULT_REQUESTS__WORKERS", "32")
    monkeypatch.setenv("REELVAULT_POLL__ACK_WAIT_S", "20")
    from_env = settings()
    assert from_env.requests.workers == 32
    assert from_env.requests.max_deliver == 150  # not ConsumerSettings' generic 20
    assert from_env.poll.ack_wait_s == 20
    assert from_env.poll.workers == 16
    assert from_env.poll.max_deliver == defaults.poll.max_deliver  # still derived


def test_poll_derivations_follow_their_sources_unless_set() -> None:
    shorter = settings(job_deadline_s=600, poll_max_interval_s=30)
    assert shorter.poll.max_deliver < settings().poll.max_deliver
    assert shorter.poll.retry_max_s == 30
    explicit = settings(poll={"max_deliver": 7, "retry_max_s": 5})
    assert (explicit.poll.max_deliver, explicit.poll.retry_max_s) == (7, 5)
    with pytest.raises(ValidationError):
        settings(requests={"retry_base_s": 10, "retry_max_s": 5})


class RecordingStarter:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, int]] = []

    async def handle(self, event: Any, attempt: int = 1) -> None:
        self.calls.append((event, attempt))


class RecordingTracker(RecordingStarter):
    async def poll(self, event: Any, attempt: int = 1) -> None:
        self.calls.append((event, attempt))


def started_event(job_created_at: datetime) -> VideoGenerationStarted:
    return VideoGenerationStarted.new(
        video_id=request().video_id, correlation_id="c", provider_job_id="video_1",
        provider="openai", model="sora-2", seconds="4", size="720x1280", org="acme",
        requested_at=job_created_at, job_created_at=job_created_at,
    )


class RecordingCanceler:
    def __init__(self) -> None:
        self.calls: list[VideoCancelRequested] = []

    async def handle(self, request: VideoCancelRequested) -> None:
        self.calls.append(request)


async def test_the_consumers_are_wired_to_their_policies_and_thin_handlers() -> None:
    configured = settings(requests={"workers": 3, "retry_base_s": 0.5, "retry_max_s": 9},
                          poll={"workers": 5})
    starter, tracker, canceler = RecordingStarter(), RecordingTracker(), RecordingCanceler()
    built = consumers(configured, TOPOLOGY, starter=starter, tracker=tracker,  # type: ignore[arg-type]
                      canceler=canceler, publisher=Sink())  # type: ignore[arg-type]
    requests, poll, cancel = built
    assert [c.policy for c in built] == policies(configured, TOPOLOGY)
    assert (requests.workers, requests.retry.base_s, requests.retry.max_s) == (3, 0.5, 9)
    assert (poll.workers, poll.retry.max_s) == (5, configured.poll_max_interval_s)
    assert requests.transient == poll.transient == TRANSIENT
    assert requests.give_up is None and poll.give_up is not None
    assert requests.on_dead_letter is not None and poll.on_dead_letter is not None

    wanted = request()
    await requests.handle(requests.decode(wanted.model_dump_json().encode()),
                          Delivery(subject="s", attempt=4, stream_sequence=9))
    assert starter.calls == [(wanted, 4)]
    started = started_event(NOW)
    await poll.handle(poll.decode(started.model_dump_json().encode()),
                      Delivery(subject="s", attempt=2, stream_sequence=10))
    assert tracker.calls == [(started, 2)]
    stop = VideoCancelRequested.new(video_id=wanted.video_id, org="acme", correlation_id="c")
    await cancel.handle(cancel.decode(stop.model_dump_json().encode()),
                        Delivery(subject="s", attempt=1, stream_sequence=11))
    assert canceler.calls == [stop]
    # A payload that is not the consumer's event does not decode (the runner terminates it).
    with pytest.raises(ValidationError):
        requests.decode(b"{nope")
    with pytest.raises(ValidationError):
        poll.decode(wanted.model_dump_json().encode())


async def test_a_dead_letter_fails_the_video_at_generation() -> None:
    sink = Sink()
    wanted = request()
    letter = DeadLetter.of(consumer="acme-generator-requests", subject="acme.video.requested",
                           stream_sequence=3, deliveries=150, payload=b"{}", headers={},
                           error="still retrying: create refused for now", video_id=None)
    await fail_video(sink)(wanted, letter)  # type: ignore[arg-type]
    [failed] = sink.events
    assert isinstance(failed, VideoFailed)
    assert (failed.video_id, failed.correlation_id) == (wanted.video_id, wanted.correlation_id)
    assert (failed.stage, failed.code, failed.retryable) == ("generation", "dead_lettered", True)
    assert "gave up after 150 deliveries to acme-generator-requests" in failed.message


def test_a_failing_look_is_given_up_only_well_past_the_job_deadline() -> None:
    configured = settings(job_deadline_s=600, poll_max_interval_s=15)
    check = past_deadline(configured, clock=lambda: NOW)
    assert not check(started_event(NOW - timedelta(seconds=100)))
    assert not check(started_event(NOW - timedelta(seconds=600 + 30)))  # the last looks
    assert check(started_event(NOW - timedelta(seconds=600 + 61)))


async def test_a_create_refused_again_and_again_backs_off_beyond_a_short_retry_after() -> None:
    # A 429 saying "retry after 0.5 s" on the 6th try still waits the backoff (16..32 s): a
    # request refused for hours spends its deliveries slowly, not in minutes.
    provider = FakeProvider(create_results=[ProviderError("busy", status=429, retry_after_s=0.5)])
    gen = JobStarter(ledger=MemoryLedger(), provider=provider, references=FakeReferences(),
                     events=Sink(), owner="gen-a",
                     timing=ClaimTiming(create_timeout_s=60, claim_margin_s=30,
                                        recovery_margin_s=120),
                     retry_base_s=1.0, retry_max_s=60.0, clock=Clock())
    with pytest.raises(RetryLater) as retry:
        await gen.handle(request(), attempt=6)
    assert 16.0 <= retry.value.delay <= 32.0
