"""Conformance: the official ``openrouter`` package drives the simulator's OpenRouter API."""

from __future__ import annotations

import asyncio
import base64
import io
import time

import av
import pytest
from conftest import RunningSim
from openrouter import OpenRouter, errors
from openrouter.components import VideoGenerationResponse
from openrouter.utils import RetryConfig
from providersim_helpers import API_KEY, png


def sdk(sim: RunningSim, key: str = API_KEY) -> OpenRouter:
    # No SDK retries: a retried create would be a second paid job.
    return OpenRouter(api_key=key, server_url=f"{sim.root_url}/api/v1",
                      retry_config=RetryConfig("none", None, False))


def data_url(image: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(image).decode()


async def poll(client: OpenRouter, job_id: str) -> VideoGenerationResponse:
    deadline = time.monotonic() + 20
    while True:
        job = await client.video_generation.get_generation_async(job_id=job_id)
        if job.status not in ("pending", "in_progress"):
            return job
        assert time.monotonic() < deadline, job
        await asyncio.sleep(0.05)


async def test_generate_poll_download(sim: RunningSim) -> None:
    client = sdk(sim)
    created = await client.video_generation.generate_async(
        model="google/veo-3.1", prompt="a paper boat in the rain", duration=4,
        resolution="720p", aspect_ratio="9:16",
    )
    assert created.status == "pending"
    assert created.polling_url == f"{sim.root_url}/api/v1/videos/{created.id}"
    assert len(created.id) == 20 and created.id.isalnum()

    done = await poll(client, created.id)
    assert done.status == "completed"
    assert done.generation_id is not None and done.generation_id.startswith("gen-")
    assert done.unsigned_urls == [f"{sim.root_url}/api/v1/videos/{created.id}/content?index=0"]
    assert done.usage is not None and done.usage.cost == pytest.approx(4 * 0.50)

    reply = await client.video_generation.get_video_content_async(job_id=created.id, index=0)
    assert reply.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(await reply.aread())) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (720, 1280)
        assert float(container.duration or 0) / av.time_base == pytest.approx(4, abs=0.6)


async def test_models_list(sim: RunningSim) -> None:
    listing = await sdk(sim).video_generation.list_videos_models_async()
    by_id = {model.id: model for model in listing.data}
    veo = by_id["google/veo-3.1"]
    assert veo.supported_durations == [4, 6, 8]
    assert veo.supported_resolutions == ["720p", "1080p"]
    assert veo.supported_aspect_ratios == ["16:9", "9:16"]
    assert "1920x1080" in (veo.supported_sizes or [])
    assert veo.supported_frame_images == ["first_frame", "last_frame"]
    assert veo.pricing_skus == {"per-video-second": "0.50", "per-video-second-1080p": "0.75"}
    assert "google/veo-3.0" not in by_id  # retired


async def test_first_and_last_frame(sim: RunningSim) -> None:
    client = sdk(sim)
    created = await client.video_generation.generate_async(
        model="google/veo-3.1-fast", duration=4, size="1280x720",
        frame_images=[
            {"type": "image_url", "image_url": {"url": data_url(png((300, 200)))},
             "frame_type": "first_frame"},
            {"type": "image_url", "image_url": {"url": data_url(png((64, 64), (9, 9, 9)))},
             "frame_type": "last_frame"},
        ],
    )
    assert (await poll(client, created.id)).status == "completed"


@pytest.mark.parametrize(
    ("kwargs", "error_type", "needle"),
    [
        ({"model": "nobody/nothing-1"}, errors.NotFoundResponseError, "not found"),
        ({"model": "google/veo-3.0"}, errors.NotFoundResponseError, "no longer available"),
        ({"model": "google/veo-3.1", "duration": 5}, errors.BadRequestResponseError,
         "Supported durations: 4, 6, 8"),
        ({"model": "google/veo-3.1", "size": "640x640"}, errors.BadRequestResponseError,
         "Supported sizes"),
        ({"model": "google/veo-3.1", "resolution": "4K"}, errors.BadRequestResponseError,
         "Supported resolutions: 720p, 1080p"),
        ({"model": "google/veo-3.1-lite", "input_references": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,"
                                                + base64.b64encode(png((8, 8))).decode()}}]},
         errors.BadRequestResponseError, "at most 0 image references"),
        ({"model": "google/veo-3.1", "input_references": [
            {"type": "image_url", "image_url": {"url": "data:text/plain;base64,aGVsbG8="}}]},
         errors.BadRequestResponseError, "not a supported image"),
    ],
)
async def test_bad_input_raises_sdk_errors(
    sim: RunningSim, kwargs: dict[str, object], error_type: type[Exception], needle: str
) -> None:
    client = sdk(sim)
    with pytest.raises(error_type) as caught:
        await client.video_generation.generate_async(prompt="p", **kwargs)  # type: ignore[arg-type]
    assert needle in str(caught.value)
    jobs = (await sim.admin().get("/_sim/jobs?protocol=openrouter")).json()
    assert jobs["jobs_created"] == 0


async def test_too_many_references(sim: RunningSim) -> None:
    ref = {"type": "image_url", "image_url": {"url": data_url(png((16, 16)))}}
    with pytest.raises(errors.BadRequestResponseError, match="at most 3 image references"):
        await sdk(sim).video_generation.generate_async(
            model="google/veo-3.1", prompt="p", input_references=[ref] * 4)


async def test_wrong_key_and_unknown_job(sim: RunningSim) -> None:
    with pytest.raises(errors.UnauthorizedResponseError):
        await sdk(sim, key="sk-or-v1-wrong").video_generation.get_generation_async(job_id="x")
    with pytest.raises(errors.NotFoundResponseError):
        await sdk(sim).video_generation.get_generation_async(job_id="AAAAAAAAAAAAAAAAAAAA")


async def test_rate_limit_and_credits(sim: RunningSim) -> None:
    async with sim.admin() as admin:
        await admin.post("/_sim/faults", json={"rules": [
            {"kind": "rate_limit", "route": "create", "protocol": "openrouter",
             "retry_after_s": 2},
            {"kind": "quota", "route": "create", "protocol": "openrouter"},
        ]})
    client = sdk(sim)
    with pytest.raises(errors.TooManyRequestsResponseError) as limited:
        await client.video_generation.generate_async(model="google/veo-3.1", prompt="p")
    assert limited.value.headers["retry-after"] == "2"
    with pytest.raises(errors.PaymentRequiredResponseError, match="Insufficient credits"):
        await client.video_generation.generate_async(model="google/veo-3.1", prompt="p")
