"""The gateway on a real JetStream (no catalog's read side: a double answers only key lookups
and quota reservations): uploads into filesystem storage, requests acknowledged by the stream
before the 202, bad input and an unreachable broker leaving the stream untouched."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_harness import (
    RunningGateway,
    StreamProbe,
    gateway_settings,
    probe_stream,
    publish_models,
    run_gateway,
)
from reelvault_common.contracts.events import VideoRequested
from reelvault_common.messaging.topology import Topology
from reelvault_gateway.settings import GatewaySettings

from reelvault.embedded import NatsServer, free_port
from tests.support.gateway_fakes import (
    KEYS_AND_QUOTAS,
    CatalogDouble,
    image_bytes,
    noisy_image_bytes,
    serve_catalog_double,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def double_rpcs() -> Collection[str] | None:
    return KEYS_AND_QUOTAS


async def upload(client: httpx.AsyncClient, data: bytes, name: str = "img.png") -> httpx.Response:
    return await client.post("/v1/uploads", files={"file": (name, data, "image/png")})


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error
    return dict(error)


# --- uploads --------------------------------------------------------------------------------------
async def test_upload_is_stored_content_addressed_and_served(gateway: RunningGateway) -> None:
    client = gateway.client
    data = image_bytes("JPEG", 64, 48)
    first = await upload(client, data, "photo.jpg")
    assert first.status_code == 201, first.text
    body = first.json()
    sha = hashlib.sha256(data).hexdigest()
    assert body["sha256"] == sha
    assert body["bytes"] == len(data)
    assert body["key"] == f"default/uploads/{sha[:2]}/{sha}.jpg"
    assert (body["content_type"], body["width"], body["height"]) == ("image/jpeg", 64, 48)
    assert body["bucket"] == "hug-images"
    assert body["url"] == f"http://testserver/files/hug-images/{body['key']}"

    again = await upload(client, data, "other-name.png")
    assert again.status_code == 201
    assert again.json()["key"] == body["key"]

    served = await client.get(body["url"])  # the public images bucket needs no signature
    assert served.status_code == 200
    assert served.content == data
    assert served.headers["content-type"] == "image/jpeg"
    on_disk = gateway.settings.storage_dir / "hug-images" / body["key"]
    assert on_disk.read_bytes() == data


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"just some text, definitely not an image", 415, "unsupported_media_type"),
        (image_bytes("GIF"), 415, "unsupported_media_type"),
        (noisy_image_bytes("PNG")[:3000], 400, "corrupt_image"),
        (noisy_image_bytes("JPEG")[:2000], 400, "corrupt_image"),
        (b"", 400, "empty_file"),
    ],
)
async def test_bad_uploads_are_refused_and_not_stored(
    gateway: RunningGateway, data: bytes, status: int, code: str
) -> None:
    assert_error(await upload(gateway.client, data), status, code)
    images = gateway.settings.storage_dir / "hug-images"
    assert [p for p in images.rglob("*") if p.is_file()] == []


async def test_too_large_upload_is_413(gateway: RunningGateway) -> None:
    limit = gateway.settings.max_upload_bytes
    noise = bytes(range(256)) * (limit // 256 + 2)  # incompressible: a PNG of it is > limit
    big = image_bytes("PNG", 8, 8) + noise
    assert len(big) > limit
    assert_error(await upload(gateway.client, big), 413, "payload_too_large")
    # Far beyond the limit: refused from Content-Length, before the body is read.
    huge = b"\x89PNG\r\n\x1a\n" + b"0" * (limit * 3)
    assert_error(await upload(gateway.client, huge), 413, "payload_too_large")


# --- requests -------------------------------------------------------------------------------------
async def test_create_answers_202_after_the_event_is_on_the_stream(
    gateway: RunningGateway, stream: StreamProbe
) -> None:
    client = gateway.client
    keys = [
        (await upload(client, image_bytes(fmt, 50, 40))).json()["key"] for fmt in ("PNG", "WEBP")
    ]
    response = await client.post(
        "/v1/videos",
        json={
            "prompt": "two friends hug",
            "seconds": 8,
            "size": "1280x720",
            "reference_images": keys,
        },
        headers={"X-Request-ID": "req-create-1"},
    )
    assert response.status_code == 202, response.text
    video = response.json()
    assert video["status"] == "queued"
    assert response.headers["location"] == f"/v1/videos/{video['id']}"

    event, headers = await stream.last("video.requested")
    assert isinstance(event, VideoRequested)
    assert str(event.video_id) == video["id"]
    assert headers["Nats-Msg-Id"] == str(event.event_id)
    assert (event.prompt, event.model, event.seconds, event.size) == (
        "two friends hug",
        "sora-2",
        "8",
        "1280x720",
    )
    assert event.correlation_id == "req-create-1"
    assert event.org == "default"
    assert [(i.bucket, i.key) for i in event.reference_images] == [("hug-images", k) for k in keys]
    assert [i.content_type for i in event.reference_images] == ["image/png", "image/webp"]
    assert event.reference_images[0].url == f"http://testserver/files/hug-images/{keys[0]}"
    assert await stream.count() == 1
    assert video["reference_image_keys"] == keys


@pytest.mark.usefixtures("served")
async def test_slow_catalog_does_not_fail_the_request(
    nats_url: str, namespace: str, tmp_path: Path, stream: StreamProbe, key: str
) -> None:
    settings = gateway_settings(nats_url, namespace, tmp_path, create_visibility_timeout_s=0.5)
    async with run_gateway(settings, key) as gateway:
        started = time.monotonic()
        response = await gateway.client.post("/v1/videos", json={"prompt": "p"})
        elapsed = time.monotonic() - started
    assert response.status_code == 202, response.text
    assert 0.5 <= elapsed < 5  # it waited for the (absent) catalog, then answered anyway
    assert await stream.count() == 1


async def test_bad_requests_are_4xx_and_publish_nothing(
    gateway: RunningGateway, stream: StreamProbe
) -> None:
    client = gateway.client
    key = (await upload(client, image_bytes("PNG"))).json()["key"]
    before = await stream.count()
    # Before any generator published the models, an unknown model cannot be judged: 503.
    unknown = await client.post("/v1/videos", json={"prompt": "p", "model": "sora-9"})
    assert_error(unknown, 503, "models_not_known_yet")
    await publish_models(gateway)
    cases: list[tuple[str, dict[str, Any], int, str, list[Any]]] = [
        (
            "/v1/videos",
            {"prompt": "p", "reference_images": ["default/uploads/no/such.png"]},
            422,
            "unknown_upload",
            ["body", "reference_images", 0],
        ),
        (
            "/v1/videos",
            {"prompt": "p", "reference_images": [key, "../../secret"]},
            422,
            "unknown_upload",
            ["body", "reference_images", 1],
        ),
        (
            "/v1/videos",
            {"prompt": "p", "reference_images": [key, key, key]},
            422,
            "validation_error",
            ["body", "reference_images"],
        ),
        (
            "/v1/videos",
            {"prompt": "p", "size": "999x999"},
            422,
            "validation_error",
            ["body", "size"],
        ),
        (
            "/v1/videos",
            {"prompt": "p", "seconds": "7"},
            422,
            "validation_error",
            ["body", "seconds"],
        ),
        (
            "/v1/videos",
            {"prompt": "p", "seconds": 4.5},
            422,
            "validation_error",
            ["body", "seconds"],
        ),
        (
            "/v1/videos",
            {"prompt": "p", "model": "sora-9"},
            422,
            "validation_error",
            ["body", "model"],
        ),
        ("/v1/videos", {"model": "sora-2"}, 422, "validation_error", ["body", "prompt"]),
        ("/v1/videos", {"prompt": ""}, 422, "validation_error", ["body", "prompt"]),
        (
            "/api/create-video",
            {"prompt": "p", "image1_url": "https://elsewhere.example/a.png"},
            422,
            "unknown_upload",
            ["body", "image1_url"],
        ),
        ("/api/create-video", {"image1_url": "x"}, 422, "validation_error", ["body", "prompt"]),
    ]
    for path, payload, status, code, loc in cases:
        error = assert_error(await client.post(path, json=payload), status, code)
        assert loc in [detail["loc"] for detail in error["details"]], (payload, error)
    assert await stream.count() == before


async def test_broker_unreachable_at_start_gives_503_and_not_ready(
    nats_url: str, namespace: str, tmp_path: Path, stream: StreamProbe, key: str
) -> None:
    closed = f"nats://127.0.0.1:{free_port()}"
    settings = gateway_settings(closed, namespace, tmp_path, broker_connect_wait_s=0.2)
    async with run_gateway(settings, key) as gateway:
        client = gateway.client
        assert (await client.get("/healthz")).status_code == 200
        ready = assert_error(await client.get("/readyz"), 503, "not_ready")
        assert ready["details"]["checks"]["broker"] == "disconnected"
        started = time.monotonic()
        # The key cannot be checked without the catalog: refused (fail closed), not let in.
        assert_error(
            await client.post("/v1/videos", json={"prompt": "p"}), 503, "catalog_unavailable"
        )
        assert time.monotonic() - started < 1.0  # fails fast, no waiting on a dead broker
        assert_error(await client.get("/v1/videos"), 503, "catalog_unavailable")
    assert await stream.count() == 0


async def broker_state(client: httpx.AsyncClient) -> str:
    """The broker check of /readyz (the catalog is not running here, so it is always a 503)."""
    error = assert_error(await client.get("/readyz"), 503, "not_ready")
    return str(error["details"]["checks"]["broker"])


async def wait_broker_state(client: httpx.AsyncClient, wanted: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while (state := await broker_state(client)) != wanted:
        assert time.monotonic() < deadline, f"broker still {state}, wanted {wanted}"
        await asyncio.sleep(0.05)


async def create_when_back(client: httpx.AsyncClient, prompt: str,
                           timeout_s: float = 20) -> None:
    """Create once the catalog double is reconnected too (until then: 503, nothing sent)."""
    deadline = time.monotonic() + timeout_s
    while (answer := await client.post("/v1/videos", json={"prompt": prompt})).status_code != 202:
        assert answer.status_code == 503, answer.text
        assert time.monotonic() < deadline, answer.text
        await asyncio.sleep(0.1)


async def test_broker_lost_mid_life_fails_the_request_and_nothing_arrives_later(
    namespace: str, tmp_path: Path, double: CatalogDouble, key: str
) -> None:
    """A request made while the broker is down is answered 503 and is NOT delivered after the
    connection comes back (no client-side buffering of a publish reported as failed)."""
    port = free_port()
    server = NatsServer(tmp_path / "nats", port=port).start()
    try:
        settings = gateway_settings(server.url, namespace, tmp_path, publish_timeout_s=1.0)
        topology = Topology.from_settings(settings)
        async with (serve_catalog_double(server.url, namespace, double, KEYS_AND_QUOTAS),
                    run_gateway(settings, key) as gateway):
            client = gateway.client
            assert (await client.post("/v1/videos", json={"prompt": "one"})).status_code == 202
            server.stop()
            await wait_broker_state(client, "disconnected")
            error = assert_error(await client.post("/v1/videos", json={"prompt": "two"}), 503)
            assert error["code"] in ("broker_unavailable", "catalog_unavailable")
            server = NatsServer(tmp_path / "nats", port=port).start()
            await wait_broker_state(client, "ok")
            await create_when_back(client, "three")
        async with probe_stream(server.url, topology) as probe:
            prompts = [event["prompt"] for event in await probe.all()]
        assert prompts == ["one", "three"]
    finally:
        server.stop()


async def test_readyz_is_503_while_the_catalog_is_not_running(gateway: RunningGateway) -> None:
    error = assert_error(await gateway.client.get("/readyz"), 503, "not_ready")
    assert error["details"]["checks"] == {"broker": "ok", "catalog": "unavailable"}
    assert_error(await gateway.client.get("/v1/videos"), 503, "catalog_unavailable")


async def test_settings_default_upload_limit_is_the_images_bucket_limit() -> None:
    assert GatewaySettings().max_upload_bytes == 10 * 1024 * 1024
