"""JobStarter: one provider job per video whatever happens around the create call."""

from __future__ import annotations

from datetime import timedelta

import pytest
from generator_fakes import (
    T0,
    TIMING,
    Clock,
    FakeProvider,
    FakeReferences,
    MemoryLedger,
    Sink,
    job,
    request,
)
from reelvault_common.messaging.outcomes import RetryLater
from reelvault_common.providers.openai_videos import ProviderError
from reelvault_generator.budget import exhausted
from reelvault_generator.ledger import new_claim
from reelvault_generator.provider import PreparedImages
from reelvault_generator.reference_loader import ReferenceProblem
from reelvault_generator.starting import JobStarter


def starter(ledger: MemoryLedger, provider: FakeProvider, sink: Sink, clock: Clock,
            references: FakeReferences | None = None, owner: str = "gen-a") -> JobStarter:
    return JobStarter(ledger=ledger, provider=provider, references=references or FakeReferences(),
                      events=sink, owner=owner, timing=TIMING, retry_base_s=1.0,
                      retry_max_s=60.0, unauthorized_retry_s=45.0, clock=clock)


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def test_creates_once_records_and_publishes_started(clock: Clock) -> None:
    ledger, provider, sink = MemoryLedger(), FakeProvider(create_results=[job()]), Sink()
    req = request()
    await starter(ledger, provider, sink, clock, FakeReferences(frame=b"png")).handle(req)

    assert provider.creates == [("a cat", b"png")]
    entry, _ = ledger.entries[req.video_id]
    assert (entry.state, entry.provider_job_id, entry.job_created_at) == ("created", "video_1", T0)
    assert {key: b.video_id for key, b in ledger.jobs.items()} == {"openai.video_1": req.video_id}
    [started] = sink.events
    assert started.type == "video.generation.started"
    assert (started.provider_job_id, started.job_created_at, started.org) == ("video_1", T0, "acme")
    assert started.requested_at == req.occurred_at


async def test_redelivery_after_create_republishes_without_creating(clock: Clock) -> None:
    ledger, provider, sink = MemoryLedger(), FakeProvider(create_results=[job()]), Sink()
    req = request()
    gen = starter(ledger, provider, sink, clock)
    await gen.handle(req)
    clock.advance(86400)
    await gen.handle(req, attempt=2)

    assert len(provider.creates) == 1
    first, again = sink.events
    assert first.type == again.type == "video.generation.started"
    assert first.event_id == again.event_id  # deduplicated by the stream


async def test_second_replica_waits_while_the_first_is_creating(clock: Clock) -> None:
    ledger, sink = MemoryLedger(), Sink()
    req = request()
    # Replica A claimed and is still inside its create call (simulated by a claim entry).
    await ledger.claim(req.video_id, new_claim(owner="gen-a", now=T0, correlation_id="c",
                                               org="acme", requested_at=T0))
    clock.advance(5)
    provider_b = FakeProvider()
    with pytest.raises(RetryLater) as retry:
        await starter(ledger, provider_b, sink, clock, owner="gen-b").handle(req)

    assert retry.value.delay == pytest.approx(85)
    assert provider_b.creates == []
    assert sink.events == []


async def test_unknown_create_outcome_keeps_the_claim_then_recovery_adopts(clock: Clock) -> None:
    ledger, sink = MemoryLedger(), Sink()
    req = request()
    created_remotely = job("video_lost", created_at=T0 + timedelta(seconds=1))
    provider = FakeProvider(create_results=[ProviderError("read timeout", status=None)])
    provider.listed.append(created_remotely)  # the provider did create it
    gen = starter(ledger, provider, sink, clock)

    with pytest.raises(RetryLater) as retry:
        await gen.handle(req)
    assert retry.value.delay == TIMING.stale_after_s
    assert ledger.entries[req.video_id][0].state == "creating"

    clock.advance(30)  # redelivered too early: still waiting
    with pytest.raises(RetryLater):
        await gen.handle(req, attempt=2)

    clock.advance(61)  # now stale
    await gen.handle(req, attempt=3)

    assert len(provider.creates) == 1
    entry, _ = ledger.entries[req.video_id]
    assert (entry.state, entry.provider_job_id, entry.adopted) == ("created", "video_lost", True)
    assert entry.job_created_at == created_remotely.created_at
    assert sink.types() == ["video.generation.started"]
    [(since, until)] = provider.list_calls
    assert since < T0 < created_remotely.created_at < until


async def test_recovery_without_a_job_creates_again(clock: Clock) -> None:
    ledger, sink = MemoryLedger(), Sink()
    req = request()
    provider = FakeProvider(create_results=[ProviderError("timeout", status=None), job("video_2")])
    gen = starter(ledger, provider, sink, clock)
    with pytest.raises(RetryLater):
        await gen.handle(req)
    clock.advance(TIMING.stale_after_s + 1)
    await gen.handle(req, attempt=2)

    assert len(provider.creates) == 2
    entry, _ = ledger.entries[req.video_id]
    assert (entry.provider_job_id, entry.attempts, entry.adopted) == ("video_2", 2, False)


async def test_recovery_skips_jobs_owned_by_other_videos(clock: Clock) -> None:
    ledger, sink = MemoryLedger(), Sink()
    other, mine = request("same"), request("same")
    provider = FakeProvider(create_results=[job("video_other", prompt="same"),
                                            ProviderError("timeout", status=None)])
    gen = starter(ledger, provider, sink, clock)
    await gen.handle(other)
    with pytest.raises(RetryLater):
        await gen.handle(mine)
    clock.advance(TIMING.stale_after_s + 1)
    provider.create_results.append(job("video_mine", prompt="same", created_at=clock.now))
    await gen.handle(mine, attempt=2)

    assert ledger.entries[mine.video_id][0].provider_job_id == "video_mine"
    assert ledger.entries[other.video_id][0].provider_job_id == "video_other"


@pytest.mark.parametrize(("status", "retry_after", "expected"), [
    (429, 7.5, 7.5), (500, None, None), (503, 2.0, 2.0), (408, None, None)])
async def test_definite_refusal_for_now_releases_the_claim(
    clock: Clock, status: int, retry_after: float | None, expected: float | None
) -> None:
    ledger, sink = MemoryLedger(), Sink()
    req = request()
    provider = FakeProvider(create_results=[
        ProviderError("busy", status=status, retry_after_s=retry_after), job()])
    gen = starter(ledger, provider, sink, clock)
    with pytest.raises(RetryLater) as retry:
        await gen.handle(req, attempt=1)

    assert req.video_id not in ledger.entries
    if expected is not None:
        assert retry.value.delay == expected
    else:
        assert 0.5 <= retry.value.delay <= 1.0  # backoff, attempt 1
    await gen.handle(req, attempt=2)  # the retry creates at once: no stale claim to wait out
    assert len(provider.creates) == 2
    assert ledger.entries[req.video_id][0].state == "created"


async def test_a_create_held_back_by_the_budget_announces_its_estimated_start(
    clock: Clock,
) -> None:
    ledger, sink = MemoryLedger(), Sink()
    req = request()
    provider = FakeProvider(create_results=[
        exhausted(300.0, 10, 60.0, position=41),
        exhausted(290.0, 10, 60.0, position=40),  # 10 s later, the same estimate
        exhausted(500.0, 10, 60.0, position=40),  # the rate was lowered: it moved
        job()])
    gen = starter(ledger, provider, sink, clock)
    with pytest.raises(RetryLater) as retry:
        await gen.handle(req, attempt=1)
    assert retry.value.delay == 300.0
    clock.advance(10)
    with pytest.raises(RetryLater):
        await gen.handle(req, attempt=2)
    with pytest.raises(RetryLater):
        await gen.handle(req, attempt=3)
    await gen.handle(req, attempt=4)

    assert sink.types() == ["video.generation.waiting", "video.generation.waiting",
                            "video.generation.started"]
    first, moved = sink.events[:2]
    assert (first.estimated_start_at, first.position, first.provider, first.org) == (
        T0 + timedelta(seconds=300), 41, "openai", "acme")
    assert (moved.estimated_start_at, moved.position) == (T0 + timedelta(seconds=510), 40)
    assert first.event_id != moved.event_id


async def test_bad_key_releases_and_waits_long(clock: Clock) -> None:
    ledger, sink = MemoryLedger(), Sink()
    req = request()
    provider = FakeProvider(create_results=[ProviderError("Incorrect API key", status=401,
                                                          code="invalid_api_key")])
    with pytest.raises(RetryLater) as retry:
        await starter(ledger, provider, sink, clock).handle(req)
    assert retry.value.delay == 45.0
    assert req.video_id not in ledger.entries
    assert sink.events == []


async def test_invalid_request_is_a_permanent_failure_recorded_in_the_ledger(clock: Clock) -> None:
    ledger, sink = MemoryLedger(), Sink()
    req = request(seconds="10", org="globex")
    provider = FakeProvider(create_results=[ProviderError(
        "Invalid value: '10'. Supported values are: '4', '8', and '12'.", status=400,
        type="invalid_request_error", code="invalid_value", param="seconds")])
    gen = starter(ledger, provider, sink, clock)
    await gen.handle(req)
    await gen.handle(req, attempt=2)  # redelivered: re-published, not re-sent

    assert len(provider.creates) == 1
    assert ledger.entries[req.video_id][0].state == "failed"
    first, second = sink.events
    assert first.type == "video.failed"
    assert (first.stage, first.code, first.org) == ("generation", "invalid_value", "globex")
    assert "seconds" in first.message
    assert first.event_id == second.event_id


async def test_unusable_reference_fails_without_claiming_a_create(clock: Clock) -> None:
    ledger, sink, provider = MemoryLedger(), Sink(), FakeProvider()
    refs = FakeReferences(problem=ReferenceProblem("invalid_reference_image", "cannot decode"))
    req = request()
    await starter(ledger, provider, sink, clock, refs).handle(req)

    assert provider.creates == []
    [failed] = sink.events
    assert (failed.code, failed.message) == ("invalid_reference_image", "cannot decode")
    assert ledger.entries[req.video_id][0].state == "failed"


async def test_storage_outage_leaves_no_claim_behind(clock: Clock) -> None:
    from reelvault_common.storage import TransientStorageError

    class Flaky(FakeReferences):
        async def images_for(self, request: object, spec: object = None) -> PreparedImages:
            raise TransientStorageError("storage down")

    ledger, sink, provider = MemoryLedger(), Sink(), FakeProvider()
    req = request()
    with pytest.raises(TransientStorageError):
        await starter(ledger, provider, sink, clock, Flaky()).handle(req)
    assert ledger.entries == {}


# --- what a webhook about the new job will need ------------------------------------------
class CreatingProbe(FakeProvider):
    """Records whether the starter said "creating" while the create was under way."""

    seen_creating: list[bool] = []

    async def create(self, request, images):  # type: ignore[no-untyped-def]
        self.seen_creating.append(self.starter.creating)
        return await super().create(request, images)


async def test_the_job_binding_carries_what_finishing_the_video_needs(clock: Clock) -> None:
    ledger, provider, sink = MemoryLedger(), FakeProvider(create_results=[job()]), Sink()
    recorded = []
    req = request()
    gen = JobStarter(ledger=ledger, provider=provider, references=FakeReferences(), events=sink,
                     owner="gen-a", timing=TIMING, clock=clock, on_recorded=recorded.append)
    await gen.handle(req)

    binding = ledger.jobs["openai.video_1"]
    assert binding.complete
    assert (binding.video_id, binding.correlation_id, binding.org) == (
        req.video_id, req.correlation_id, req.org)
    assert (binding.requested_at, binding.job_created_at) == (req.occurred_at, T0)
    [followed] = recorded
    assert (followed.video_id, followed.provider_job_id, followed.job_created_at) == (
        req.video_id, "video_1", T0)
    assert followed.org == req.org and followed.requested_at == req.occurred_at


async def test_creating_is_true_only_while_a_create_is_being_recorded(clock: Clock) -> None:
    ledger, sink = MemoryLedger(), Sink()
    provider = CreatingProbe(create_results=[job()])
    gen = starter(ledger, provider, sink, clock)
    provider.starter = gen  # type: ignore[attr-defined]
    assert not gen.creating
    await gen.handle(request())
    assert provider.seen_creating == [True]
    assert not gen.creating


async def test_an_adopted_job_is_recorded_with_the_providers_creation_time(clock: Clock) -> None:
    ledger, sink = MemoryLedger(), Sink()
    req = request()
    created_remotely = job("video_lost", created_at=T0 + timedelta(seconds=1))
    provider = FakeProvider(create_results=[ProviderError("read timeout", status=None)])
    provider.listed.append(created_remotely)
    recorded = []
    gen = JobStarter(ledger=ledger, provider=provider, references=FakeReferences(), events=sink,
                     owner="gen-a", timing=TIMING, clock=clock, on_recorded=recorded.append)
    with pytest.raises(RetryLater):
        await gen.handle(req)
    assert recorded == [] and not gen.creating  # the outcome is unknown: nothing recorded
    clock.advance(TIMING.stale_after_s + 1)
    await gen.handle(req, attempt=2)
    assert ledger.jobs["openai.video_lost"].job_created_at == created_remotely.created_at
    assert [r.provider_job_id for r in recorded] == ["video_lost"]
