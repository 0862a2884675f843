"""VideoRequested -> one provider job -> Started, Progressed, Completed/VideoFailed, against the
real simulator over HTTP and a real JetStream."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import pytest
from generator_harness import GeneratorFactory, RunningSim, StreamWatch, png, video_request
from reelvault_common.contracts.events import (
    ReferenceImage,
    VideoCompleted,
    VideoFailed,
    VideoGenerationProgressed,
    VideoGenerationStarted,
)

pytestmark = pytest.mark.integration

Upload = Callable[..., Awaitable[ReferenceImage]]


async def test_request_runs_to_completed_with_expiry(
    make_generator: GeneratorFactory, watch: StreamWatch, sim: RunningSim
) -> None:
    await make_generator()
    request = video_request("a lighthouse at dusk")
    began = time.monotonic()
    await watch.publish(request)

    outcome = await watch.outcome(request.video_id)
    elapsed = time.monotonic() - began

    assert isinstance(outcome, VideoCompleted), outcome
    [started] = watch.of(request.video_id, VideoGenerationStarted)
    assert started.provider_job_id == outcome.provider_job_id
    assert started.provider == outcome.provider == "openai"
    assert (started.model, started.seconds, started.size) == ("sora-2", "4", "1280x720")
    assert started.requested_at == request.occurred_at
    assert outcome.org == "acme"
    # Every event the generator published is the request's organization's, on its subject.
    for event in watch.of(request.video_id):
        assert event.org == "acme"
        assert watch.subjects[event.event_id] == watch.topology.subject(event.type, "acme")
    assert outcome.correlation_id == request.correlation_id
    assert outcome.requested_at == request.occurred_at
    assert outcome.expires_at is not None
    assert outcome.expires_at > outcome.occurred_at
    assert outcome.source_url == f"{sim.base_url}/videos/{outcome.provider_job_id}/content"
    progress = [e.progress for e in watch.of(request.video_id, VideoGenerationProgressed)]
    assert progress, "no progress was reported"
    assert progress == sorted(progress)
    assert watch.types(request.video_id).index("video.generation.started") < watch.types(
        request.video_id
    ).index("video.completed")
    [job] = await sim.jobs_for(request.prompt)
    assert job["id"] == outcome.provider_job_id
    assert (await sim.jobs())["create_calls"] == 1
    print(f"request -> completed in {elapsed:.2f}s (simulated generation 1.0s)")


@pytest.mark.parametrize(
    ("size", "count"), [("1280x720", 1), ("720x1280", 1), ("1280x720", 2), ("720x1280", 2)]
)
async def test_reference_images_are_fitted_and_accepted(
    make_generator: GeneratorFactory,
    watch: StreamWatch,
    sim: RunningSim,
    upload: Upload,
    size: str,
    count: int,
) -> None:
    # Sizes that match neither orientation: the simulator refuses any frame that is not exact.
    images = [
        await upload(png((333, 517), (200, 10, 10))),
        await upload(png((901, 77), (10, 10, 200))),
    ]
    await make_generator()
    request = video_request(f"reference {size} x{count}", size=size, images=tuple(images[:count]))
    await watch.publish(request)

    outcome = await watch.outcome(request.video_id)

    assert isinstance(outcome, VideoCompleted), outcome
    assert (await sim.jobs())["create_calls"] == 1


async def test_failed_provider_job_reports_its_code_and_message(
    make_generator: GeneratorFactory, watch: StreamWatch, sim: RunningSim
) -> None:
    await sim.push_faults(
        {"kind": "job_failed", "code": "moderation_blocked", "message": "Blocked by moderation."}
    )
    await make_generator()
    request = video_request("something the moderator dislikes")
    await watch.publish(request)

    outcome = await watch.outcome(request.video_id)

    assert isinstance(outcome, VideoFailed), outcome
    assert outcome.stage == "generation"
    assert outcome.code == "moderation_blocked"
    assert outcome.message == "Blocked by moderation."
    [started] = watch.of(request.video_id, VideoGenerationStarted)
    assert outcome.provider_job_id == started.provider_job_id
    assert (await sim.jobs())["create_calls"] == 1


async def test_expired_provider_job_fails_with_its_status(
    make_generator: GeneratorFactory, watch: StreamWatch, sim: RunningSim
) -> None:
    await sim.push_faults({"kind": "job_expired"})
    await make_generator()
    request = video_request("a job that expires")
    await watch.publish(request)

    outcome = await watch.outcome(request.video_id)

    assert isinstance(outcome, VideoFailed), outcome
    assert outcome.stage == "generation"
    assert outcome.code  # the provider's code, or "expired" when it gave none
    assert outcome.provider_job_id is not None


async def test_invalid_request_fails_with_the_providers_code_without_retrying(
    make_generator: GeneratorFactory, watch: StreamWatch, sim: RunningSim
) -> None:
    await make_generator()
    request = video_request("ten seconds, please", seconds="10")
    await watch.publish(request)

    outcome = await watch.outcome(request.video_id)

    assert isinstance(outcome, VideoFailed), outcome
    assert outcome.stage == "generation"
    assert outcome.code == "invalid_value"
    assert "seconds" in outcome.message
    assert not watch.of(request.video_id, VideoGenerationStarted)
    assert await sim.jobs_for(request.prompt) == []


async def test_deadline_is_enforced(
    make_generator: GeneratorFactory, watch: StreamWatch, sim: RunningSim
) -> None:
    await sim.push_faults({"kind": "slow_job", "generation_s": 120})
    await make_generator(job_deadline_s=1.5)
    request = video_request("a job that never ends")
    began = time.monotonic()
    await watch.publish(request)

    outcome = await watch.outcome(request.video_id, timeout_s=15)
    elapsed = time.monotonic() - began

    assert isinstance(outcome, VideoFailed), outcome
    assert outcome.code == "deadline_exceeded"
    assert "1.5" in outcome.message or "2s" in outcome.message or "deadline" in outcome.message
    assert outcome.provider_job_id is not None
    # Not long after the deadline: the last poll is scheduled at it.
    assert elapsed < 1.5 + 2.5, elapsed
    print(f"deadline 1.5s enforced after {elapsed:.2f}s")


async def test_bad_reference_image_fails_without_creating_a_job(
    make_generator: GeneratorFactory, watch: StreamWatch, sim: RunningSim, upload: Upload
) -> None:
    broken = await upload(b"\x89PNG\r\n\x1a\n this is not really a png")
    await make_generator()
    request = video_request("from a broken picture", images=(broken,))
    await watch.publish(request)

    outcome = await watch.outcome(request.video_id)

    assert isinstance(outcome, VideoFailed), outcome
    assert outcome.code == "invalid_reference_image"
    assert outcome.stage == "generation"
    assert (await sim.jobs())["create_calls"] == 0


async def test_unknown_provider_job_fails_as_not_found(
    make_generator: GeneratorFactory, watch: StreamWatch
) -> None:
    from datetime import UTC, datetime

    await make_generator()
    request = video_request("a job the provider never heard of")
    started = VideoGenerationStarted.new(
        video_id=request.video_id,
        correlation_id=request.correlation_id,
        provider_job_id="video_doesnotexist",
        provider="openai",
        model=request.model,
        seconds=request.seconds,
        size=request.size,
        org=request.org,
        requested_at=request.occurred_at,
        job_created_at=datetime.now(UTC),
    )
    await watch.publish(started)

    outcome = await watch.outcome(request.video_id)

    assert isinstance(outcome, VideoFailed), outcome
    assert outcome.code == "provider_job_not_found"
