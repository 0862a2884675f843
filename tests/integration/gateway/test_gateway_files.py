"""``/files``: public buckets served as they are, private ones only with a valid, unexpired
signature, nothing outside a bucket, byte ranges answered."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from gateway_harness import RunningGateway, storage_of
from reelvault_common.storage.filesystem import sign_path

pytestmark = pytest.mark.integration

VIDEO = bytes(range(256)) * 64
KEY = "default/2026/01/abc/video.mp4"


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
def secret(gateway: RunningGateway) -> bytes:
    assert gateway.settings.storage_signing_key is not None
    return gateway.settings.storage_signing_key.get_secret_value().encode()


@pytest.fixture
async def stored_video(gateway: RunningGateway) -> str:
    await storage_of(gateway.settings).put("videos", KEY, _once(VIDEO), "video/mp4")
    return KEY


async def test_signed_link_serves_the_private_file_with_ranges(
    gateway: RunningGateway, stored_video: str
) -> None:
    url = await storage_of(gateway.settings).signed_url("videos", stored_video, 60)
    whole = await gateway.client.get(url)
    assert whole.status_code == 200
    assert whole.content == VIDEO
    assert whole.headers["content-type"] == "video/mp4"
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["cache-control"] == "private, no-store"
    part = await gateway.client.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.content == VIDEO[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(VIDEO)}"
    beyond = await gateway.client.get(url, headers={"Range": f"bytes={len(VIDEO) + 10}-"})
    assert beyond.status_code == 416


async def test_private_file_without_a_valid_signature_is_403(
    gateway: RunningGateway, stored_video: str, secret: bytes
) -> None:
    path = f"/files/videos/{stored_video}"
    past = int(time.time()) - 5
    future = int(time.time()) + 60
    denied = [
        {},
        {"expires": future},
        {"expires": past, "token": sign_path(secret, "videos", stored_video, past)},  # expired
        {"expires": future, "token": sign_path(b"another key", "videos", stored_video, future)},
        {"expires": future, "token": sign_path(secret, "videos", "other/key.mp4", future)},
        {"expires": future, "token": "0" * 64},
    ]
    for params in denied:
        response = await gateway.client.get(path, params=params)
        assert response.status_code == 403, params
        assert response.json()["error"]["code"] == "forbidden"
    ok = await gateway.client.get(
        path, params={"expires": future, "token": sign_path(secret, "videos", stored_video, future)}
    )
    assert ok.status_code == 200
    assert ok.content == VIDEO


@pytest.mark.parametrize(
    "path",
    [
        "/files/videos/default/2026/01/abc/missing.mp4",
        "/files/no-such-bucket/x.png",
        "/files/hug-images/../videos/" + KEY,
        "/files/hug-images/%2e%2e/videos/" + KEY,
        "/files/hug-images/..%2Fvideos%2F" + KEY.replace("/", "%2F"),
        "/files/.buckets/videos.json",
        "/files/.meta/videos/" + KEY + ".json",
        "/files/hug-images/%2Fetc%2Fpasswd",
        "/files/hug-images/default/..%2F..%2F.buckets%2Fvideos.json",
    ],
)
async def test_nothing_outside_a_bucket_is_served(
    gateway: RunningGateway, stored_video: str, path: str
) -> None:
    response = await gateway.client.get(path)
    assert response.status_code in (403, 404), (path, response.status_code)
    assert response.json()["error"]["code"] in ("not_found", "forbidden")
    assert VIDEO[:64] not in response.content


async def test_public_bucket_needs_no_signature(gateway: RunningGateway) -> None:
    storage = storage_of(gateway.settings)
    stored = await storage.put(
        "thumbnails", "default/t.webp", _once(b"RIFF0000WEBPVP8 "), "image/webp"
    )
    assert stored.url == "http://testserver/files/thumbnails/default/t.webp"
    response = await gateway.client.get(stored.url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/webp"
    assert response.headers["cache-control"].startswith("public")
