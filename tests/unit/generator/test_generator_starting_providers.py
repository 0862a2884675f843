"""JobStarter with providers that cannot list their jobs (OpenRouter, Gemini) and with several
providers: a create whose answer was lost is never sent again (its webhook may adopt the job,
else the video fails ``create_outcome_unknown``), a retired model fails ``model_unavailable``,
and each request goes to its model's provider."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

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
from reelvault_common.contracts.events import VideoRequested
from reelvault_common.messaging.outcomes import RetryLater
from reelvault_common.providers.errors import ProviderError
from reelvault_generator.ledger import new_claim
from reelvault_generator.provider import PreparedImages, ProviderJob
from reelvault_generator.registry import ProviderRegistry
from reelvault_generator.starting import CREATE_OUTCOME_UNKNOWN, MODEL_UNAVAILABLE, JobStarter
from reelvault_generator.tracking import FollowedJob

WINDOW_S = 600.0
LOST = ProviderError("ReadTimeout: the answer never came", status=None)


def openrouter(**fields: object) -> FakeProvider:
    values: dict[str, object] = {"name": "openrouter", "lists_jobs": False,
                                 "adopts_by_webhook": True}
    values.update(fields)
    return FakeProvider(**values)  # type: ignore[arg-type]


def starter(ledger: MemoryLedger, provider: FakeProvider | ProviderRegistry, sink: Sink,
            clock: Clock, references: FakeReferences | None = None,
            recorded: list[FollowedJob] | None = None) -> JobStarter:
    return JobStarter(ledger=ledger, provider=provider, references=references or FakeReferences(),
                      events=sink, owner="gen-a", timing=TIMING, clock=clock,
                      adoption_window_s=WINDOW_S,
                      on_recorded=recorded.append if recorded is not None else None)


def veo_request(**fields: Any) -> VideoRequested:
    values: dict[str, Any] = {"model": "google/veo-3.1", "seconds": "8", "size": "1920x1080"}
    values.update(fields)
    return request(**values)


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def lose_the_create(gen: JobStarter, req: VideoRequested) -> None:
    with pytest.raises(RetryLater) as retry:
        await gen.handle(req)
    assert retry.value.delay == TIMING.stale_after_s  # the claim stays until it is stale


# --- a lost create at a provider that cannot list its jobs ----------------------------------
async def test_a_lost_create_waits_for_the_webhook_then_fails_without_creating_again(
    clock: Clock
) -> None:
    ledger, sink = MemoryLedger(), Sink()
    provider = openrouter(create_results=[LOST])
    gen = starter(ledger, provider, sink, clock)
    req = veo_request()
    await lose_the_create(gen, req)

    clock.advance(TIMING.stale_after_s + 10)  # stale: 100 s old
    with pytest.raises(RetryLater) as waiting:
        await gen.handle(req, attempt=2)
    assert waiting.value.delay == pytest.approx(WINDOW_S - 100)
    assert "webhook" in waiting.value.reason

    clock.advance(WINDOW_S - 100 - 1)  # one second before the window closes: still waiting
    with pytest.raises(RetryLater) as still:
        await gen.handle(req, attempt=3)
    assert still.value.delay == pytest.approx(1.0)

    clock.advance(1)
    await gen.handle(req, attempt=4)

    assert len(provider.creates) == 1
    assert provider.list_calls == []  # nothing to list with
    entry, _ = ledger.entries[req.video_id]
    assert (entry.state, entry.failure_code) == ("failed", CREATE_OUTCOME_UNKNOWN)
    [failed] = sink.events
    assert (failed.type, failed.code, failed.video_id) == (
        "video.failed", CREATE_OUTCOME_UNKNOWN, req.video_id)
    assert "not created again" in failed.message

    # Every later delivery republishes the same failure and creates nothing.
    clock.advance(86400)
    await gen.handle(req, attempt=5)
    assert len(provider.creates) == 1
    assert sink.events[1].event_id == failed.event_id


async def test_without_webhook_adoption_a_stale_claim_fails_at_once(clock: Clock) -> None:
    ledger, sink = MemoryLedger(), Sink()
    provider = openrouter(adopts_by_webhook=False, create_results=[LOST])
    gen = starter(ledger, provider, sink, clock)
    req = veo_request()
    await lose_the_create(gen, req)
    clock.advance(TIMING.stale_after_s)
    await gen.handle(req, attempt=2)
    assert len(provider.creates) == 1
    assert sink.types() == ["video.failed"]
    assert sink.events[0].code == CREATE_OUTCOME_UNKNOWN


@pytest.mark.parametrize("error", [ProviderError("bad gateway", status=502),
                                   ProviderError("gateway timeout", status=504), LOST,
                                   # Nobody can look the job up later: a 500 may have made one.
                                   ProviderError("internal", status=500)])
async def test_every_unknown_outcome_keeps_the_claim_and_never_creates_again(
    clock: Clock, error: ProviderError
) -> None:
    ledger, sink = MemoryLedger(), Sink()
    provider = openrouter(adopts_by_webhook=False, create_results=[error, job("second")])
    gen = starter(ledger, provider, sink, clock)
    req = veo_request()
    await lose_the_create(gen, req)
    # Duplicate deliveries while the claim is fresh wait for it.
    for attempt in (2, 3):
        clock.advance(10)
        with pytest.raises(RetryLater):
            await gen.handle(req, attempt=attempt)
    clock.advance(TIMING.stale_after_s)
    await gen.handle(req, attempt=4)
    assert len(provider.creates) == 1
    assert [e.code for e in sink.events] == [CREATE_OUTCOME_UNKNOWN]


async def test_a_claim_left_by_a_generator_killed_mid_create_is_never_created_again(
    clock: Clock
) -> None:
    # Another replica claimed and died inside its create (no answer recorded, no error).
    ledger, sink = MemoryLedger(), Sink()
    req = veo_request()
    await ledger.claim(req.video_id, new_claim(
        owner="gen-dead", now=T0, correlation_id=req.correlation_id, org=req.org,
        requested_at=req.occurred_at, provider="openrouter", model=req.model,
        seconds=req.seconds, size=req.size))
    provider = openrouter(adopts_by_webhook=False, create_results=[job("would-be-second")])
    clock.advance(TIMING.stale_after_s + 1)
    await starter(ledger, provider, sink, clock).handle(req, attempt=2)
    assert provider.creates == []
    assert [e.code for e in sink.events] == [CREATE_OUTCOME_UNKNOWN]


async def test_a_stale_claim_at_a_provider_no_longer_configured_fails(clock: Clock) -> None:
    ledger, sink = MemoryLedger(), Sink()
    req = veo_request()
    await ledger.claim(req.video_id, new_claim(
        owner="gen-old", now=T0, correlation_id=req.correlation_id, org=req.org,
        requested_at=req.occurred_at, provider="gemini"))
    clock.advance(TIMING.stale_after_s + 1)
    registry = ProviderRegistry({"openrouter": openrouter()}, routes={
        "google/veo-3.1": "openrouter"})
    await starter(ledger, registry, sink, clock).handle(req, attempt=2)
    assert [e.code for e in sink.events] == [MODEL_UNAVAILABLE]
    assert "'gemini'" in sink.events[0].message


# --- model_unavailable ----------------------------------------------------------------------
async def test_a_404_on_create_is_model_unavailable(clock: Clock) -> None:
    ledger, sink = MemoryLedger(), Sink()
    provider = openrouter(create_results=[ProviderError("Model not found", status=404)])
    req = veo_request(model="google/veo-2")
    await starter(ledger, provider, sink, clock).handle(req)

    entry, _ = ledger.entries[req.video_id]
    assert (entry.state, entry.failure_code) == ("failed", MODEL_UNAVAILABLE)
    [failed] = sink.events
    assert failed.code == MODEL_UNAVAILABLE
    assert "google/veo-2" in failed.message and "Model not found" in failed.message
    await starter(ledger, provider, sink, clock).handle(req, attempt=2)
    assert len(provider.creates) == 1


async def test_a_model_no_provider_makes_fails_without_any_create(clock: Clock) -> None:
    ledger, sink = MemoryLedger(), Sink()
    provider = openrouter(create_results=[job()])
    refs = FakeReferences(frame=b"png")
    registry = ProviderRegistry({"openrouter": provider}, routes={"google/veo-3.1": "openrouter"})
    req = veo_request(model="kwaivgi/kling")
    await starter(ledger, registry, sink, clock, refs).handle(req)

    assert provider.creates == []
    assert refs.calls == 0  # nothing read for a request that cannot be made
    entry, _ = ledger.entries[req.video_id]
    assert (entry.state, entry.failure_code, entry.provider) == ("failed", MODEL_UNAVAILABLE,
                                                                 None)
    [failed] = sink.events
    assert failed.code == MODEL_UNAVAILABLE and "kwaivgi/kling" in failed.message


# --- adoption by a webhook ------------------------------------------------------------------
async def test_a_webhook_adopts_the_job_of_a_lost_create(clock: Clock) -> None:
    ledger, sink = MemoryLedger(), Sink()
    provider = openrouter(create_results=[LOST])
    gen = starter(ledger, provider, sink, clock)
    req = veo_request(org="acme")
    await lose_the_create(gen, req)
    clock.advance(120)

    followed = await gen.adopt(req.video_id, "openrouter", "or-job-1")

    assert followed == FollowedJob(
        video_id=req.video_id, correlation_id=req.correlation_id, provider_job_id="or-job-1",
        org="acme", requested_at=req.occurred_at, job_created_at=clock.now,
        provider="openrouter")
    entry, _ = ledger.entries[req.video_id]
    assert (entry.state, entry.provider, entry.provider_job_id, entry.adopted) == (
        "created", "openrouter", "or-job-1", True)
    binding = ledger.jobs["openrouter.or-job-1"]
    assert (binding.video_id, binding.org, binding.job_created_at) == (
        req.video_id, "acme", clock.now)
    [started] = sink.events
    assert started.type == "video.generation.started"
    assert (started.video_id, started.provider, started.provider_job_id) == (
        req.video_id, "openrouter", "or-job-1")
    assert (started.model, started.seconds, started.size, started.org) == (
        "google/veo-3.1", "8", "1920x1080", "acme")
    assert started.requested_at == req.occurred_at

    # The request's next delivery follows the adopted job: no create, the same Started.
    clock.advance(3600)
    await gen.handle(req, attempt=2)
    assert len(provider.creates) == 1
    assert [e.event_id for e in sink.events] == [started.event_id] * 2


async def test_a_second_adoption_is_refused(clock: Clock) -> None:
    ledger, sink = MemoryLedger(), Sink()
    gen = starter(ledger, openrouter(create_results=[LOST]), sink, clock)
    req = veo_request()
    await lose_the_create(gen, req)
    assert await gen.adopt(req.video_id, "openrouter", "or-job-1") is not None
    # The same delivery again, or another job named for the same video.
    assert await gen.adopt(req.video_id, "openrouter", "or-job-1") is None
    assert await gen.adopt(req.video_id, "openrouter", "or-job-2") is None
    assert ledger.entries[req.video_id][0].provider_job_id == "or-job-1"
    assert "openrouter.or-job-2" not in ledger.jobs
    assert len(sink.events) == 1


async def test_adoption_after_the_creator_recorded_is_refused(clock: Clock) -> None:
    ledger, sink = MemoryLedger(), Sink()
    gen = starter(ledger, openrouter(create_results=[job("or-job-1")]), sink, clock)
    req = veo_request()
    await gen.handle(req)
    assert await gen.adopt(req.video_id, "openrouter", "or-job-1") is None
    assert await gen.adopt(req.video_id, "openrouter", "or-job-x") is None
    assert sink.types() == ["video.generation.started"]


async def test_only_an_open_claim_of_that_provider_is_adopted(clock: Clock) -> None:
    ledger, sink = MemoryLedger(), Sink()
    gen = starter(ledger, openrouter(create_results=[LOST]), sink, clock)
    req = veo_request()
    assert await gen.adopt(req.video_id, "openrouter", "or-job-1") is None  # no claim at all
    await lose_the_create(gen, req)
    assert await gen.adopt(req.video_id, "gemini", "or-job-1") is None  # another provider
    assert await gen.adopt(uuid.uuid4(), "openrouter", "or-job-1") is None  # another video
    assert ledger.entries[req.video_id][0].state == "creating"
    assert sink.events == []


async def test_a_job_bound_to_another_video_is_not_adopted(clock: Clock) -> None:
    ledger, sink = MemoryLedger(), Sink()
    gen = starter(ledger, openrouter(create_results=[LOST]), sink, clock)
    req = veo_request()
    await lose_the_create(gen, req)
    await ledger.bind_job("openrouter", "or-job-1", uuid.uuid4())
    assert await gen.adopt(req.video_id, "openrouter", "or-job-1") is None
    assert ledger.entries[req.video_id][0].state == "creating"


async def test_a_claim_that_does_not_say_what_was_asked_is_not_adopted(clock: Clock) -> None:
    ledger, sink = MemoryLedger(), Sink()
    req = veo_request()
    await ledger.claim(req.video_id, new_claim(
        owner="gen-old", now=T0, correlation_id=req.correlation_id, org=req.org,
        requested_at=req.occurred_at, provider="openrouter"))
    gen = starter(ledger, openrouter(), sink, clock)
    assert await gen.adopt(req.video_id, "openrouter", "or-job-1") is None
    assert ledger.jobs == {}


async def test_a_canceled_claim_is_not_adopted(clock: Clock) -> None:
    ledger, sink = MemoryLedger(), Sink()
    gen = starter(ledger, openrouter(create_results=[LOST]), sink, clock)
    req = veo_request()
    await lose_the_create(gen, req)
    entry, revision = ledger.entries[req.video_id]
    await ledger.replace(req.video_id, entry.failed(code="canceled", message="canceled"),
                         last=revision)
    assert await gen.adopt(req.video_id, "openrouter", "or-job-1") is None


async def test_adoption_within_the_window_settles_the_waiting_request(clock: Clock) -> None:
    ledger, sink = MemoryLedger(), Sink()
    provider = openrouter(create_results=[LOST])
    gen = starter(ledger, provider, sink, clock)
    req = veo_request()
    await lose_the_create(gen, req)
    clock.advance(TIMING.stale_after_s + 1)
    with pytest.raises(RetryLater):
        await gen.handle(req, attempt=2)  # waiting for the webhook
    await gen.adopt(req.video_id, "openrouter", "or-job-1")
    clock.advance(WINDOW_S)
    await gen.handle(req, attempt=3)
    assert sink.types() == ["video.generation.started"] * 2
    assert len(provider.creates) == 1


@dataclass
class WebhookDuringCreate(FakeProvider):
    """The job's webhook arrives (and adopts) while the create is still being answered."""

    starter: JobStarter | None = None
    adopted: list[FollowedJob | None] = field(default_factory=list)

    async def create(self, request: VideoRequested, images: PreparedImages) -> ProviderJob:
        created = await super().create(request, images)
        assert self.starter is not None
        self.adopted.append(await self.starter.adopt(request.video_id, self.name, created.id))
        return created


async def test_a_webhook_overtaking_the_create_leaves_one_job(clock: Clock) -> None:
    ledger, sink = MemoryLedger(), Sink()
    provider = WebhookDuringCreate(name="openrouter", lists_jobs=False, adopts_by_webhook=True,
                                   create_results=[job("or-job-1")])
    recorded: list[FollowedJob] = []
    gen = starter(ledger, provider, sink, clock, recorded=recorded)
    provider.starter = gen
    req = veo_request()
    await gen.handle(req)

    assert provider.adopted[0] is not None
    entry, _ = ledger.entries[req.video_id]
    assert (entry.state, entry.provider_job_id) == ("created", "or-job-1")
    assert len(provider.creates) == 1
    assert {e.provider_job_id for e in sink.events} == {"or-job-1"}
    assert len({e.event_id for e in sink.events}) == 1  # republished, deduplicated


# --- several providers ----------------------------------------------------------------------
async def test_each_request_goes_to_its_models_provider(clock: Clock) -> None:
    ledger, sink = MemoryLedger(), Sink()
    openai = FakeProvider(name="openai", create_results=[job("video_1")])
    router = openrouter(create_results=[job("or-job-1")])
    registry = ProviderRegistry({"openai": openai, "openrouter": router},
                                routes={"sora-2": "openai", "google/veo-3.1": "openrouter"})
    recorded: list[FollowedJob] = []
    gen = starter(ledger, registry, sink, clock, recorded=recorded)
    sora, veo = request("a cat"), veo_request(prompt="a dog")
    dated = request("a bird", model="sora-2-2025-10-06")
    openai.create_results.append(job("video_2"))

    for req in (sora, veo, dated):
        await gen.handle(req)

    assert [p for p, _ in openai.creates] == ["a cat", "a bird"]
    assert [p for p, _ in router.creates] == ["a dog"]
    assert {e.video_id: (e.provider, e.provider_job_id) for e in sink.events} == {
        sora.video_id: ("openai", "video_1"), veo.video_id: ("openrouter", "or-job-1"),
        dated.video_id: ("openai", "video_2")}
    assert ledger.entries[veo.video_id][0].provider == "openrouter"
    assert set(ledger.jobs) == {"openai.video_1", "openrouter.or-job-1", "openai.video_2"}
    assert [(f.provider, f.provider_job_id) for f in recorded] == [
        ("openai", "video_1"), ("openrouter", "or-job-1"), ("openai", "video_2")]


async def test_the_images_are_prepared_for_the_models_spec(clock: Clock) -> None:
    seen: list[object] = []

    @dataclass
    class Recording(FakeReferences):
        async def images_for(self, request: VideoRequested,
                             spec: object = None) -> PreparedImages:
            seen.append(spec)
            return PreparedImages()

    router = openrouter(create_results=[job("or-job-1")])
    registry = ProviderRegistry({"openrouter": router}, routes={"google/veo-3.1": "openrouter"})
    await starter(MemoryLedger(), registry, Sink(), clock, Recording()).handle(veo_request())
    assert seen == [registry.spec("google/veo-3.1")]
    assert seen[0] is not None


async def test_a_listing_provider_still_recovers_by_listing(clock: Clock) -> None:
    # The Sora protocol beside the others keeps its recovery: adopt the listed job.
    ledger, sink = MemoryLedger(), Sink()
    openai = FakeProvider(name="openai", create_results=[LOST])
    openai.listed.append(job("video_lost", created_at=T0 + timedelta(seconds=1)))
    registry = ProviderRegistry({"openai": openai, "openrouter": openrouter()},
                                routes={"sora-2": "openai", "google/veo-3.1": "openrouter"})
    gen = starter(ledger, registry, sink, clock)
    req = request()
    await lose_the_create(gen, req)
    clock.advance(TIMING.stale_after_s + 1)
    await gen.handle(req, attempt=2)
    assert ledger.entries[req.video_id][0].provider_job_id == "video_lost"
    assert len(openai.list_calls) == 1
