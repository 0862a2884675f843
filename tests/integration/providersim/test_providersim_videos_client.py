"""The repo's own client (``VideosClient``, always multipart) against the simulator."""

from __future__ import annotations

import asyncio
import hashlib
import time

import pytest
from conftest import RunningSim
from providersim_helpers import API_KEY, png
from pydantic import SecretStr
from reelvault_common.providers.openai_videos import (
    ProviderError,
    ReferenceUpload,
    VideoJob,
    VideosClient,
)


async def wait_done(client: VideosClient, video_id: str) -> VideoJob:
    deadline = time.monotonic() + 20
    while True:
        job, _ = await client.retrieve(video_id)
        if job.is_terminal:
            return job
        assert time.monotonic() < deadline, job
        await asyncio.sleep(0.05)


@pytest.fixture
async def client(sim: RunningSim) -> VideosClient:
    return VideosClient(sim.base_url, SecretStr(API_KEY))


async def test_full_cycle_and_bytes_match_admin_hash(sim: RunningSim, client: VideosClient) -> None:
    job = await client.create(prompt="fireworks", model="sora-2", seconds="8", size="720x1280")
    assert job.status in ("queued", "in_progress")
    done = await wait_done(client, job.id)
    assert done.status == "completed"
    assert done.completed_at is not None
    assert done.expires_at == done.completed_at + 3600

    for variant in ("video", "thumbnail", "spritesheet"):
        digest = hashlib.sha256()
        async with client.stream_content(job.id, variant, chunk_size=64 * 1024) as (
            headers,
            chunks,
        ):
            async for chunk in chunks:
                digest.update(chunk)
        async with sim.admin() as admin:
            served = (
                await admin.get(f"/_sim/jobs/{job.id}/sha256", params={"variant": variant})
            ).json()
        assert served["sha256"] == digest.hexdigest(), variant
        assert int(headers["content-length"]) == served["size"]

    listing = await client.list(limit=10)
    assert [v.id for v in listing.data] == [job.id]
    await client.delete(job.id)
    with pytest.raises(ProviderError) as gone:
        await client.retrieve(job.id)
    assert gone.value.status == 404


async def test_reference_upload_and_validation(client: VideosClient) -> None:
    ref = ReferenceUpload(filename="ref.png", content=png((1280, 720)), content_type="image/png")
    job = await client.create(
        prompt="from image", model="sora-2", seconds="4", size="1280x720", input_reference=ref
    )
    assert (await wait_done(client, job.id)).status == "completed"

    with pytest.raises(ProviderError) as wrong:
        await client.create(
            prompt="p", model="sora-2", seconds="4", size="720x1280", input_reference=ref
        )
    assert (wrong.value.status, wrong.value.param) == (400, "input_reference")
    assert not wrong.value.transient

    with pytest.raises(ProviderError) as bad:
        await client.create(prompt="p", model="sora-2", seconds="16", size="720x1280")
    assert bad.value.code == "invalid_value"
    assert bad.value.message == "Invalid value: '16'. Supported values are: '4', '8', and '12'."


async def test_wrong_key(sim: RunningSim) -> None:
    client = VideosClient(sim.base_url, SecretStr("sk-nope-nope-nope"))
    with pytest.raises(ProviderError) as denied:
        await client.list()
    assert (denied.value.status, denied.value.code) == (401, "invalid_api_key")
    assert "sk-nope-nope-nope" not in denied.value.message  # the key is masked


async def test_poll_after_header(sim_factory) -> None:  # type: ignore[no-untyped-def]
    async with sim_factory(poll_after_ms=1500) as running:
        client = VideosClient(running.base_url, SecretStr(API_KEY))
        job = await client.create(prompt="p", model="sora-2", seconds="4", size="720x1280")
        _, wait = await client.retrieve(job.id)
        assert wait == 1.5
