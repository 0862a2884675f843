"""Conformance: the official ``openai`` package drives the simulator."""

from __future__ import annotations

import asyncio
import io
import time

import av
import openai
import pytest
from conftest import RunningSim, SimFactory
from PIL import Image
from providersim_helpers import API_KEY, png

pytestmark = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")


def sdk(sim: RunningSim, key: str = API_KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sim.base_url, api_key=key, max_retries=0)


async def poll_done(client: openai.AsyncOpenAI, video_id: str) -> openai.types.Video:
    deadline = time.monotonic() + 20
    while True:
        video = await client.videos.retrieve(video_id)
        if video.status in ("completed", "failed"):
            return video
        assert time.monotonic() < deadline, video
        await asyncio.sleep(0.05)


async def test_create_retrieve_download_delete(sim: RunningSim) -> None:
    client = sdk(sim)
    created = await client.videos.create(prompt="a red kite", seconds="4", size="1280x720")
    assert created.id.startswith("video_")
    assert created.object == "video"
    assert created.status in ("queued", "in_progress")
    assert created.model == "sora-2"
    assert created.seconds == "4"
    assert created.size == "1280x720"
    assert created.completed_at is None
    assert created.expires_at is None

    done = await poll_done(client, created.id)
    assert done.status == "completed"
    assert done.progress == 100
    assert done.completed_at is not None
    assert done.expires_at == done.completed_at + 3600

    video = await client.videos.download_content(created.id)
    assert video.response.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(video.content)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (1280, 720)
        assert stream.codec_context.name == "h264"

    thumb = await client.videos.download_content(created.id, variant="thumbnail")
    assert thumb.response.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(thumb.content)).format == "WEBP"
    sheet = await client.videos.download_content(created.id, variant="spritesheet")
    assert sheet.response.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(sheet.content)).format == "JPEG"

    deleted = await client.videos.delete(created.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (created.id, "video.deleted", True)
    with pytest.raises(openai.NotFoundError):
        await client.videos.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        await client.videos.download_content(created.id)


async def test_create_and_poll_helper(sim_factory: SimFactory) -> None:
    # The SDK's own poll loop honours openai-poll-after-ms; a tiny value keeps it quick.
    async with sim_factory(poll_after_ms=20) as running:
        client = sdk(running)
        video = await client.videos.create_and_poll(prompt="waves", size="720x1280")
        assert video.status == "completed"


async def test_list_paging(sim: RunningSim) -> None:
    client = sdk(sim)
    ids = [(await client.videos.create(prompt=f"clip {i}")).id for i in range(5)]

    first = await client.videos.list(limit=2, order="asc")
    assert [v.id for v in first.data] == ids[:2]
    assert first.has_more
    seen = [v.id async for v in client.videos.list(limit=2, order="asc")]
    assert seen == ids
    newest_first = [v.id async for v in client.videos.list(limit=3)]
    assert newest_first == ids[::-1]


async def test_remix(sim: RunningSim) -> None:
    client = sdk(sim)
    source = await client.videos.create(prompt="a boat", size="1280x720")
    await poll_done(client, source.id)
    remix = await client.videos.remix(source.id, prompt="a boat at night")
    assert remix.remixed_from_video_id == source.id
    assert (remix.size, remix.seconds, remix.model) == ("1280x720", "4", "sora-2")
    done = await poll_done(client, remix.id)
    assert done.status == "completed"


async def test_reference_upload(sim: RunningSim) -> None:
    client = sdk(sim)
    image = ("ref.png", png((720, 1280)), "image/png")
    video = await client.videos.create(prompt="start here", input_reference=image)
    assert (await poll_done(client, video.id)).status == "completed"
    with pytest.raises(openai.BadRequestError) as caught:
        await client.videos.create(
            prompt="wrong size",
            size="1280x720",
            input_reference=("ref.png", png((720, 1280)), "image/png"),
        )
    assert caught.value.body["message"] == "Inpaint image must match the requested width and height"  # type: ignore[index]


async def test_errors_map_to_sdk_exceptions(sim: RunningSim) -> None:
    client = sdk(sim)
    with pytest.raises(openai.BadRequestError) as bad_seconds:
        await client.videos.create(prompt="p", seconds="10")  # type: ignore[arg-type]
    assert bad_seconds.value.param == "seconds"
    assert bad_seconds.value.code == "invalid_value"
    assert "Supported values are: '4', '8', and '12'." in bad_seconds.value.message

    with pytest.raises(openai.BadRequestError) as bad_size:
        await client.videos.create(prompt="p", size="1920x1080")  # type: ignore[arg-type]
    assert bad_size.value.param == "size"

    with pytest.raises(openai.AuthenticationError) as bad_key:
        await sdk(sim, key="sk-wrong-key-000000").videos.retrieve("video_x")
    assert bad_key.value.code == "invalid_api_key"
    assert bad_key.value.status_code == 401

    with pytest.raises(openai.NotFoundError):
        await client.videos.retrieve("video_" + "0" * 32)


async def test_content_through_redirect(sim_factory: SimFactory) -> None:
    async with sim_factory(content_redirect=True) as running:
        client = sdk(running)
        video = await client.videos.create(prompt="cdn", size="1280x720")
        await poll_done(client, video.id)
        content = await client.videos.download_content(video.id)
        assert content.response.url.path.startswith("/cdn/")
        assert content.content[4:8] == b"ftyp"
