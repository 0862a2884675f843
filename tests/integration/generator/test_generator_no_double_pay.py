"""One provider job per video, ever: redeliveries, concurrent replicas, restarts, lost create
responses and rate limits must not create a second job (counted on the simulator)."""

from __future__ import annotations

import asyncio
import time

import httpx2
import pytest
from generator_harness import API_KEY, GeneratorFactory, RunningSim, StreamWatch, video_request
from pydantic import SecretStr
from reelvault_common.contracts.events import (
    VideoCompleted,
    VideoGenerationStarted,
)
from reelvault_common.providers.openai_videos import VideosClient
from reelvault_generator.provider import OpenAIVideosProvider

pytestmark = pytest.mark.integration


async def test_duplicate_deliveries_on_two_replicas_create_one_job_each(
    make_generator: GeneratorFactory, watch: StreamWatch, sim: RunningSim
) -> None:
    await make_generator(requests={"workers": 4})
    await make_generator(requests={"workers": 4})
    requests = [video_request(f"twice delivered #{i}") for i in range(6)]
    for request in requests:
        # The same event twice under different message ids: JetStream keeps both, and the two
        # replicas pull them at the same moment.
        await watch.publish(request, msg_id=f"{request.event_id}-a")
        await watch.publish(request, msg_id=f"{request.event_id}-b")

    outcomes = await asyncio.gather(*(watch.outcome(r.video_id, timeout_s=30) for r in requests))

    assert all(isinstance(o, VideoCompleted) for o in outcomes), outcomes
    jobs = await sim.jobs()
    assert jobs["jobs_created"] == len(requests)
    for request, outcome in zip(requests, outcomes, strict=True):
        [job] = await sim.jobs_for(request.prompt)
        assert job["id"] == outcome.provider_job_id
        started = watch.of(request.video_id, VideoGenerationStarted)
        assert {e.provider_job_id for e in started} == {job["id"]}


async def test_stopped_after_create_a_new_instance_resumes_without_creating_again(
    make_generator: GeneratorFactory, watch: StreamWatch, sim: RunningSim
) -> None:
    first = await make_generator(poll_interval_s=0.5, poll_max_interval_s=0.5)
    slow = 4.0
    await sim.push_faults({"kind": "slow_job", "generation_s": slow})
    request = video_request("survives a restart")
    began = time.monotonic()
    await watch.publish(request)
    await watch.wait_for(lambda: watch.of(request.video_id, VideoGenerationStarted),
                         what="Started")
    await first.stop()
    stopped_at = time.monotonic() - began
    assert not watch.of(request.video_id, VideoCompleted)
    [job] = await sim.jobs_for(request.prompt)
    assert job["status"] in ("queued", "in_progress")

    await make_generator()
    outcome = await watch.outcome(request.video_id, timeout_s=30)

    assert isinstance(outcome, VideoCompleted), outcome
    assert outcome.provider_job_id == job["id"]
    assert (await sim.jobs())["create_calls"] == 1
    print(f"stopped at {stopped_at:.2f}s, completed after restart at "
          f"{time.monotonic() - began:.2f}s (generation {slow}s)")


async def test_redelivered_request_after_completion_creates_nothing(
    make_generator: GeneratorFactory, watch: StreamWatch, sim: RunningSim
) -> None:
    service = await make_generator()
    request = video_request("already done")
    await watch.publish(request)
    first = await watch.outcome(request.video_id)
    assert isinstance(first, VideoCompleted)

    # Redelivered long after (outside the duplicate window): the ledger answers, not the provider.
    seq = await watch.publish(request, msg_id=f"{request.event_id}-late")
    await watch.wait_consumed(service.topology.durable("generator", "requests"), seq)

    assert (await sim.jobs())["create_calls"] == 1
    assert {e.provider_job_id for e in watch.of(request.video_id, VideoGenerationStarted)} == {
        first.provider_job_id
    }


class LoseFirstCreateResponse(httpx2.AsyncBaseTransport):
    """Forwards every request; the first create reaches the provider (the job exists) but its
    response is lost, as if the connection dropped after the request was sent."""

    def __init__(self) -> None:
        self._inner = httpx2.AsyncHTTPTransport()
        self.lost = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        if request.method == "POST" and request.url.path.endswith("/videos") and not self.lost:
            await response.aread()
            await response.aclose()
            self.lost += 1
            raise httpx2.ReadTimeout("response lost on purpose", request=request)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_create_with_lost_response_is_recovered_by_adopting_the_job(
    make_generator: GeneratorFactory, watch: StreamWatch, sim: RunningSim
) -> None:
    transport = LoseFirstCreateResponse()
    provider = OpenAIVideosProvider(
        VideosClient(sim.base_url, SecretStr(API_KEY), transport=transport),
        create_timeout_s=1.0,
    )
    try:
        await make_generator(provider=provider, create_timeout_s=1.0, claim_margin_s=0.5)
        request = video_request("response lost in transit")
        began = time.monotonic()
        await watch.publish(request)

        outcome = await watch.outcome(request.video_id, timeout_s=30)
    finally:
        await provider.aclose()

    assert transport.lost == 1
    assert isinstance(outcome, VideoCompleted), outcome
    [job] = await sim.jobs_for(request.prompt)
    assert outcome.provider_job_id == job["id"]
    assert (await sim.jobs())["create_calls"] == 1
    print(f"recovered a lost create response in {time.monotonic() - began:.2f}s "
          "(claim stale after 1.5s)")


async def test_recovery_never_adopts_another_videos_job(
    make_generator: GeneratorFactory, watch: StreamWatch, sim: RunningSim
) -> None:
    # Two videos with the same prompt: the first completes normally; the second loses its
    # create response. Its recovery lists two matching jobs, oldest (the first video's) first,
    # and must take its own.
    plain = await make_generator()
    first = video_request("identical prompt")
    await watch.publish(first)
    first_outcome = await watch.outcome(first.video_id)
    assert isinstance(first_outcome, VideoCompleted)
    await plain.stop()

    transport = LoseFirstCreateResponse()
    provider = OpenAIVideosProvider(
        VideosClient(sim.base_url, SecretStr(API_KEY), transport=transport), create_timeout_s=1.0
    )
    try:
        await make_generator(provider=provider, create_timeout_s=1.0, claim_margin_s=0.5,
                             recovery_margin_s=60.0)
        second = video_request("identical prompt")
        await watch.publish(second)
        second_outcome = await watch.outcome(second.video_id, timeout_s=30)
    finally:
        await provider.aclose()

    assert transport.lost == 1
    assert isinstance(second_outcome, VideoCompleted), second_outcome
    assert second_outcome.provider_job_id != first_outcome.provider_job_id
    assert len(await sim.jobs_for("identical prompt")) == 2


async def test_rate_limited_create_waits_and_creates_once(
    make_generator: GeneratorFactory, watch: StreamWatch, sim: RunningSim
) -> None:
    await sim.push_faults({"kind": "rate_limit", "route": "create", "times": 2,
                           "retry_after_s": 0.5})
    await make_generator()
    request = video_request("patience")
    began = time.monotonic()
    await watch.publish(request)

    outcome = await watch.outcome(request.video_id, timeout_s=30)
    elapsed = time.monotonic() - began

    assert isinstance(outcome, VideoCompleted), outcome
    jobs = await sim.jobs()
    assert len(await sim.jobs_for(request.prompt)) == 1
    assert jobs["create_calls"] == 3  # two refused with 429, one that created the job
    assert (await sim.admin("GET", "/faults"))["injected"].get("rate_limit") == 2
    # Each 429 was waited out as told (retry-after 0.5 s) before trying again.
    assert elapsed >= 1.0


async def test_server_errors_on_create_are_retried_without_duplicates(
    make_generator: GeneratorFactory, watch: StreamWatch, sim: RunningSim
) -> None:
    await sim.push_faults({"kind": "server_error", "route": "create", "times": 2, "status": 500})
    await make_generator()
    request = video_request("after two 500s")
    await watch.publish(request)

    outcome = await watch.outcome(request.video_id, timeout_s=30)

    assert isinstance(outcome, VideoCompleted), outcome
    assert len(await sim.jobs_for(request.prompt)) == 1
    assert (await sim.jobs())["create_calls"] == 3
