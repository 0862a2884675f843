"""Conformance: the official ``google-genai`` package drives the simulator's Gemini API.

``generate_videos`` and video operation polling exist in the SDK's Gemini Developer API mode
up to google-genai 2.x; 3.x refuses them in that mode before sending anything (Veo moved to
Vertex AI mode there), so those tests need a 2.x SDK and say so when skipped. Model lookup,
file download and webhooks are tested with any version.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator

import av
import httpx
import pytest
from conftest import RunningSim
from google import genai
from google.genai import errors, types
from providersim_helpers import API_KEY, png

MODEL = "veo-3.1-fast-generate-preview"
SDK_MAJOR = int(genai.__version__.split(".")[0])
needs_veo_sdk = pytest.mark.skipif(
    SDK_MAJOR >= 3,
    reason=f"google-genai {genai.__version__} has no generate_videos in Gemini API mode "
    "(it was removed in 3.0); pin google-genai<3 to run this",
)


def sdk(sim: RunningSim, key: str = API_KEY) -> genai.Client:
    return genai.Client(
        api_key=key,
        http_options=types.HttpOptions(base_url=sim.root_url, api_version="v1beta"),
    )


def file_name(uri: str) -> str:
    # The SDK extracts the file id only from https:// URIs; the simulator serves http.
    return "files/" + uri.split("/files/")[1].split(":")[0]


@pytest.fixture
async def finished_uri(sim: RunningSim) -> AsyncIterator[str]:
    """A finished operation's video URI, made over raw HTTP (works with any SDK version)."""
    async with httpx.AsyncClient(base_url=f"{sim.root_url}/v1beta",
                                 headers={"x-goog-api-key": API_KEY}) as http:
        reply = await http.post(f"/models/{MODEL}:predictLongRunning",
                                json={"instances": [{"prompt": "p"}],
                                      "parameters": {"durationSeconds": 4}})
        name = reply.json()["name"]
        deadline = time.monotonic() + 20
        while not (operation := (await http.get(f"/{name}")).json()).get("done"):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        samples = operation["response"]["generateVideoResponse"]["generatedSamples"]
        yield samples[0]["video"]["uri"]


async def test_model_health_check(sim: RunningSim) -> None:
    model = await sdk(sim).aio.models.get(model=MODEL)
    assert model.name == f"models/{MODEL}"
    with pytest.raises(errors.ClientError) as caught:
        await sdk(sim).aio.models.get(model="veo-3.0-generate-preview")
    assert caught.value.code == 404


async def test_files_download(sim: RunningSim, finished_uri: str) -> None:
    data = await sdk(sim).aio.files.download(file=file_name(finished_uri))
    with av.open(io.BytesIO(data)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    with pytest.raises(errors.ClientError) as caught:
        await sdk(sim).aio.files.download(file="files/doesnotexist")
    assert (caught.value.code, caught.value.status) == (404, "NOT_FOUND")
    with pytest.raises(errors.ClientError) as bad_key:
        await sdk(sim, key="wrong").aio.files.download(file=file_name(finished_uri))
    assert bad_key.value.code == 400


@needs_veo_sdk
async def test_generate_videos_poll_download(sim: RunningSim) -> None:
    client = sdk(sim)
    first = types.Image(image_bytes=png((320, 240)), mime_type="image/png")
    operation = await client.aio.models.generate_videos(
        model=MODEL,
        source=types.GenerateVideosSource(prompt="a kite over dunes", image=first),
        config=types.GenerateVideosConfig(
            aspect_ratio="9:16", duration_seconds=4, negative_prompt="blurry",
            person_generation="allow_adult",
            last_frame=types.Image(image_bytes=png((32, 32)), mime_type="image/png"),
        ),
    )
    assert operation.name and operation.name.startswith(f"models/{MODEL}/operations/")
    deadline = time.monotonic() + 20
    while not operation.done:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
        operation = await client.aio.operations.get(operation)
    assert operation.error is None
    assert operation.result is not None and operation.result.generated_videos
    video = operation.result.generated_videos[0].video
    assert video is not None and video.uri is not None
    data = await client.aio.files.download(file=file_name(video.uri))
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (720, 1280)


@needs_veo_sdk
@pytest.mark.parametrize(
    ("model", "config", "status", "needle"),
    [
        ("veo-9-generate", {}, 404, "not found"),
        ("veo-3.0-generate-preview", {}, 404, "no longer available"),
        (MODEL, {"duration_seconds": 5}, 400, "durationSeconds"),
        (MODEL, {"resolution": "1080p", "duration_seconds": 4}, 400, "requires"),
        (MODEL, {"aspect_ratio": "1:1"}, 400, "aspectRatio"),
    ],
)
async def test_bad_input_raises_sdk_errors(
    sim: RunningSim, model: str, config: dict[str, object], status: int, needle: str
) -> None:
    with pytest.raises(errors.ClientError) as caught:
        await sdk(sim).aio.models.generate_videos(
            model=model, source=types.GenerateVideosSource(prompt="p"),
            config=types.GenerateVideosConfig(**config),  # type: ignore[arg-type]
        )
    assert caught.value.code == status
    assert needle in (caught.value.message or "")


@needs_veo_sdk
async def test_reference_image_rules(sim: RunningSim) -> None:
    ref = types.VideoGenerationReferenceImage(
        image=types.Image(image_bytes=png((16, 16)), mime_type="image/png"),
        reference_type=types.VideoGenerationReferenceType.ASSET,
    )
    not_image = types.VideoGenerationReferenceImage(
        image=types.Image(image_bytes=b"not an image at all", mime_type="image/png"),
        reference_type=types.VideoGenerationReferenceType.ASSET,
    )
    client = sdk(sim)
    for refs, needle in (([ref] * 4, "At most 3"), ([not_image], "not a valid image")):
        with pytest.raises(errors.ClientError) as caught:
            await client.aio.models.generate_videos(
                model=MODEL, source=types.GenerateVideosSource(prompt="p"),
                config=types.GenerateVideosConfig(reference_images=refs, duration_seconds=8),
            )
        assert caught.value.code == 400 and needle in (caught.value.message or "")
    jobs = (await sim.admin().get("/_sim/jobs?protocol=gemini")).json()
    assert jobs["jobs_created"] == 0
