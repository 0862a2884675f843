"""The generator's two durable consumers are explicit and bounded: finite ``max_deliver``
(the poll consumer's derived from the job deadline), no server backoff list (naks carry their
own delays), and a look that keeps failing past its job's deadline is given up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from generator_fakes import Clock, FakeProvider, FakeReferences, MemoryLedger, Sink, request
from reelvault_common.contracts.events import VideoGenerationStarted
from reelvault_common.messaging.consuming import RetryLater
from reelvault_common.messaging.topology import Topology
from reelvault_common.providers.openai_videos import ProviderError
from reelvault_generator.handlers import past_deadline, poll_policy, requests_policy
from reelvault_generator.ledger import ClaimTiming
from reelvault_generator.settings import GeneratorSettings
from reelvault_generator.starting import JobStarter

TOPOLOGY = Topology(namespace="acme")
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def settings(**overrides: Any) -> GeneratorSettings:
    return GeneratorSettings(**overrides)


def test_the_request_consumer_gives_up_after_a_finite_number_of_deliveries() -> None:
    config = requests_policy(settings(requests_max_deliver=40, ack_wait_s=90), TOPOLOGY).to_config()
    assert config.durable_name == "acme-generator-requests"
    assert (config.max_deliver, config.ack_wait, config.backoff) == (40, 90, None)
    assert config.max_ack_pending is not None and config.max_ack_pending > 0


@pytest.mark.parametrize(("deadline_s", "retry_base_s"), [(3600, 1.0), (600, 0.05), (30, 2.0)])
def test_the_poll_consumer_limit_outlasts_the_deadline_at_the_fastest_pace(
    deadline_s: float, retry_base_s: float
) -> None:
    configured = settings(job_deadline_s=deadline_s, poll_retry_base_s=retry_base_s)
    config = poll_policy(configured, TOPOLOGY).to_config()
    assert config.backoff is None
    assert config.max_deliver is not None and config.max_deliver > 0  # finite
    # Looks are never closer than min_poll_gap_s: the deadline always comes first.
    fastest_looks = deadline_s / configured.min_poll_gap_s
    assert fastest_looks < config.max_deliver <= fastest_looks + 100


def started_message(job_created_at: datetime) -> Any:
    event = VideoGenerationStarted.new(
        video_id=request().video_id, correlation_id="c", provider_job_id="video_1",
        provider="openai", model="sora-2", seconds="4", size="720x1280", org="acme",
        requested_at=job_created_at, job_created_at=job_created_at,
    )
    return SimpleNamespace(raw_message=SimpleNamespace(data=event.model_dump_json().encode()))


def test_a_failing_look_is_given_up_only_well_past_the_job_deadline() -> None:
    configured = settings(job_deadline_s=600, poll_max_interval_s=15)
    check = past_deadline(configured, clock=lambda: NOW)
    assert not check(started_message(NOW - timedelta(seconds=100)))
    assert not check(started_message(NOW - timedelta(seconds=600 + 30)))  # the last looks
    assert check(started_message(NOW - timedelta(seconds=600 + 61)))
    garbage = SimpleNamespace(raw_message=SimpleNamespace(data=b"{nope"))
    assert check(garbage)


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
