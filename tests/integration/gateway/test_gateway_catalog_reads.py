"""The gateway with the real catalog service (Postgres) on a real JetStream: a video is readable
right after the 202, lists page newest first, the content link redirects to a signed URL that
works (and a tampered one does not), and the seed app's /api routes behave as in the seed. The
gateway authenticates with a key the catalog made; another organization's key sees nothing."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from gateway_harness import RunningGateway, StreamProbe, storage_of
from reelvault_catalog.app import CatalogService
from reelvault_common.contracts.events import (
    StoredFile,
    VideoArchiveRequested,
    VideoCompleted,
    VideoGenerationStarted,
    VideoRequested,
    VideoStored,
)
from reelvault_common.storage.layout import thumbnail_key, video_key

from tests.support.gateway_fakes import image_bytes
from tests.support.tenancy import create_key, create_org

pytestmark = pytest.mark.integration


@pytest.fixture
def gateway(catalog_gateway: RunningGateway) -> RunningGateway:
    return catalog_gateway

VIDEO_BYTES = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40  # stands in for an MP4


async def _once(data: bytes) -> Any:
    yield data


async def upload(
    client: httpx.AsyncClient, path: str, color: tuple[int, int, int]
) -> dict[str, Any]:
    response = await client.post(
        path, files={"file": ("p.png", image_bytes("PNG", 40, 30, color), "image/png")}
    )
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


async def wait_for(
    client: httpx.AsyncClient, video_id: str, predicate: Any, timeout_s: float = 20
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        response = await client.get(f"/v1/videos/{video_id}")
        if response.status_code == 200 and predicate(response.json()):
            return dict(response.json())
        assert time.monotonic() < deadline, response.text
        await asyncio.sleep(0.05)


class Provider:
    """Plays the generator and the archiver: publishes their events for one video."""

    def __init__(self, gateway: RunningGateway, stream: StreamProbe, video_id: str) -> None:
        self.gateway = gateway
        self.stream = stream
        self.video_id = uuid.UUID(video_id)
        self.job_id = f"video_{self.video_id.hex[:12]}"
        self.requested_at = datetime.now(UTC)

    async def load_request(self) -> None:
        raw = await self.stream.js.get_last_msg(
            self.stream.topology.stream,
            self.stream.topology.subject("video.requested", "default"),
        )
        event = VideoRequested.model_validate_json(raw.data or b"")
        assert event.video_id == self.video_id
        self.requested_at = event.occurred_at

    async def started_and_completed(self, expires_in_s: float = 3600) -> None:
        common = {
            "video_id": self.video_id,
            "correlation_id": "test",
            "provider_job_id": self.job_id,
        }
        await self.stream.publish(
            VideoGenerationStarted.new(
                **common,
                provider="openai",
                model="sora-2",
                seconds="4",
                size="720x1280",
                org="default",
                requested_at=self.requested_at,
                job_created_at=datetime.now(UTC),
            )
        )
        await self.stream.publish(
            VideoCompleted.new(
                **common,
                provider="openai",
                source_url=f"http://provider.test/v1/videos/{self.job_id}/content",
                expires_at=datetime.now(UTC) + timedelta(seconds=expires_in_s),
                org="default",
                requested_at=self.requested_at,
            )
        )

    async def stored(self) -> tuple[StoredFile, StoredFile]:
        storage = storage_of(self.gateway.settings)
        video = await storage.put(
            "videos",
            video_key("default", self.requested_at, self.video_id),
            _once(VIDEO_BYTES),
            "video/mp4",
        )
        thumb_bytes = image_bytes("WEBP", 72, 128)
        thumb = await storage.put(
            "thumbnails",
            thumbnail_key("default", self.requested_at, self.video_id),
            _once(thumb_bytes),
            "image/webp",
        )
        await self.stream.publish(
            VideoStored.new(
                video_id=self.video_id,
                org="default",
                correlation_id="test",
                video=video,
                provider_job_id=self.job_id,
                thumbnail=thumb,
            )
        )
        return video, thumb


@pytest.mark.usefixtures("catalog")
async def test_get_right_after_create_finds_the_video(gateway: RunningGateway) -> None:
    client = gateway.client
    image = await upload(client, "/v1/uploads", (200, 20, 20))
    created = await client.post(
        "/v1/videos", json={"prompt": "a hug", "seconds": "8", "reference_images": [image["key"]]}
    )
    assert created.status_code == 202, created.text
    video_id = created.json()["id"]

    got = await client.get(f"/v1/videos/{video_id}")  # no polling: visible at once
    assert got.status_code == 200, got.text
    video = got.json()
    assert (video["id"], video["status"], video["prompt"], video["seconds"]) == (
        video_id,
        "queued",
        "a hug",
        "8",
    )
    assert video["image1_url"] == image["url"]
    assert video["reference_image_keys"] == [image["key"]]
    assert video["video_url"] is None

    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"broker": "ok", "catalog": "ok"}
    missing = await client.get(f"/v1/videos/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


@pytest.mark.usefixtures("catalog")
async def test_list_newest_first_with_cursor_and_status(gateway: RunningGateway) -> None:
    client = gateway.client
    ids = []
    for n in range(3):
        created = await client.post("/v1/videos", json={"prompt": f"video {n}"})
        assert created.status_code == 202
        ids.append(created.json()["id"])

    first = await client.get("/v1/videos", params={"limit": 2})
    assert first.status_code == 200, first.text
    assert [v["id"] for v in first.json()["data"]] == [ids[2], ids[1]]
    cursor = first.json()["next_cursor"]
    assert cursor
    second = await client.get("/v1/videos", params={"limit": 2, "cursor": cursor})
    assert [v["id"] for v in second.json()["data"]] == [ids[0]]
    assert second.json()["next_cursor"] is None

    queued = await client.get("/v1/videos", params={"status": "queued"})
    assert {v["id"] for v in queued.json()["data"]} == set(ids)
    assert (await client.get("/v1/videos", params={"status": "completed"})).json()["data"] == []

    bad = await client.get("/v1/videos", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 400, bad.text
    assert bad.json()["error"]["code"] == "invalid_cursor"
    bad_status = await client.get("/v1/videos", params={"status": "done"})
    assert bad_status.status_code == 422

    everything = (await client.get("/api/list-videos")).json()
    assert [v["id"] for v in everything["videos"]] == [ids[2], ids[1], ids[0]]
    assert everything["truncated"] is False


@pytest.mark.usefixtures("catalog")
async def test_content_redirects_to_a_working_signed_url(
    gateway: RunningGateway, stream: StreamProbe
) -> None:
    client = gateway.client
    created = await client.post("/v1/videos", json={"prompt": "content"})
    video_id = created.json()["id"]
    not_ready = await client.get(f"/v1/videos/{video_id}/content")
    assert not_ready.status_code == 409
    assert not_ready.json()["error"]["code"] == "video_not_ready"

    provider = Provider(gateway, stream, video_id)
    await provider.load_request()
    await provider.started_and_completed()
    stored_video, stored_thumb = await provider.stored()
    video = await wait_for(client, video_id, lambda v: v["status"] == "completed")
    assert video["video_url"] == f"http://testserver/v1/videos/{video_id}/content"
    assert video["sha256"] == hashlib.sha256(VIDEO_BYTES).hexdigest()

    redirect = await client.get(f"/v1/videos/{video_id}/content")
    assert redirect.status_code == 307, redirect.text
    assert redirect.headers["cache-control"] == "no-store"
    location = redirect.headers["location"]
    parts = urlsplit(location)
    assert parts.path == f"/files/videos/{stored_video.key}"
    served = await client.get(location)
    assert served.status_code == 200
    assert served.content == VIDEO_BYTES
    assert served.headers["content-type"] == "video/mp4"

    ranged = await client.get(location, headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206
    assert ranged.content == VIDEO_BYTES[:10]

    # A second request gets a freshly signed link to the same file.
    assert (
        (await client.get(f"/v1/videos/{video_id}/content"))
        .headers["location"]
        .startswith(f"http://testserver/files/videos/{stored_video.key}?")
    )

    query = parse_qs(parts.query)
    token, expires = query["token"][0], int(query["expires"][0])
    tampered_token = ("0" if token[0] != "0" else "1") + token[1:]
    for params in (
        {"expires": expires, "token": tampered_token},
        {"expires": expires + 1, "token": token},  # a longer life than was signed
        {"token": token},
        {},
    ):
        url = f"{parts.path}?{urlencode(params)}" if params else parts.path
        denied = await client.get(url)
        assert denied.status_code == 403, (params, denied.text)
        assert denied.json()["error"]["code"] == "forbidden"

    thumb = await client.get(f"/v1/videos/{video_id}/content", params={"variant": "thumbnail"})
    assert thumb.status_code == 307
    assert thumb.headers["location"] == f"http://testserver/files/thumbnails/{stored_thumb.key}"
    thumb_served = await client.get(thumb.headers["location"])
    assert thumb_served.status_code == 200
    assert thumb_served.headers["content-type"] == "image/webp"

    assert (await client.get(f"/v1/videos/{uuid.uuid4()}/content")).status_code == 404


@pytest.mark.usefixtures("catalog")
async def test_seed_api_routes(gateway: RunningGateway, stream: StreamProbe) -> None:
    client = gateway.client
    first = await upload(client, "/api/upload", (10, 200, 10))
    second = await upload(client, "/api/upload", (200, 200, 10))
    assert first["url"].startswith("http://testserver/files/hug-images/")

    created = await client.post(
        "/api/create-video",
        json={
            "prompt": "a hug",
            "image1_url": first["url"],
            "image2_url": second["key"],
            "seconds": 4,
        },
    )
    assert created.status_code == 200, created.text
    assert created.json()["status"] == "queued"
    video_id = created.json()["id"]
    event, _ = await stream.last("video.requested")
    assert isinstance(event, VideoRequested)
    assert [i.key for i in event.reference_images] == [first["key"], second["key"]]

    check = await client.post("/api/check-video", json={"id": video_id})
    assert check.status_code == 200, check.text
    assert (check.json()["status"], check.json()["video_url"], check.json()["error"]) == (
        "queued",
        None,
        None,
    )

    async def download() -> httpx.Response:
        return await client.post("/api/download-and-store-video", json={"id": video_id})

    early = await download()
    assert early.status_code == 409, early.text
    assert early.json()["error"]["code"] == "video_not_ready"

    provider = Provider(gateway, stream, video_id)
    await provider.load_request()
    await provider.started_and_completed()
    await wait_for(client, video_id, lambda v: v["openai_url"] is not None)
    before = await stream.count()
    queued = await download()
    assert queued.status_code == 202, queued.text
    assert queued.json()["archive"] == "requested"
    assert await stream.count() == before + 1
    archive, _ = await stream.last("video.archive.requested")
    assert isinstance(archive, VideoArchiveRequested)
    assert (str(archive.video_id), archive.provider_job_id, archive.provider) == (
        video_id,
        provider.job_id,
        "openai",
    )
    assert archive.expires_at is not None

    await provider.stored()
    await wait_for(client, video_id, lambda v: v["status"] == "completed")
    stored = await download()
    assert stored.status_code == 200, stored.text
    assert stored.json()["video_url"] == f"http://testserver/v1/videos/{video_id}/content"
    done = (await client.post("/api/check-video", json={"id": video_id})).json()
    assert done["status"] == "completed"
    assert done["video_url"] == stored.json()["video_url"]
    assert done["video_id"] == provider.job_id

    listed = (await client.get("/api/list-videos")).json()["videos"]
    assert listed[0]["id"] == video_id
    assert (listed[0]["image1_url"], listed[0]["image2_url"]) == (first["url"], second["url"])

    unknown = await client.post("/api/check-video", json={"id": str(uuid.uuid4())})
    assert unknown.status_code == 404
    assert (
        await client.post("/api/download-and-store-video", json={"id": str(uuid.uuid4())})
    ).status_code == 404


@pytest.mark.usefixtures("catalog")
async def test_seed_download_of_expired_provider_copy_is_410(
    gateway: RunningGateway, stream: StreamProbe
) -> None:
    client = gateway.client
    video_id = (await client.post("/api/create-video", json={"prompt": "late"})).json()["id"]
    provider = Provider(gateway, stream, video_id)
    await provider.load_request()
    await provider.started_and_completed(expires_in_s=-60)
    await wait_for(client, video_id, lambda v: v["openai_url"] is not None)
    before = await stream.count()
    gone = await client.post("/api/download-and-store-video", json={"id": video_id})
    assert gone.status_code == 410, gone.text
    assert gone.json()["error"]["code"] == "source_expired"
    assert await stream.count() == before


async def test_catalog_service_stopping_makes_reads_503(
    gateway: RunningGateway, catalog: CatalogService
) -> None:
    client = gateway.client
    assert (await client.get("/readyz")).status_code == 200
    await catalog.stop()
    response = await client.get(f"/v1/videos/{uuid.uuid4()}")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "catalog_unavailable"
    not_ready = await client.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json()["error"]["details"]["checks"]["catalog"] == "unavailable"


async def test_another_organization_sees_none_of_it(
    gateway: RunningGateway, nats_url: str, namespace: str
) -> None:
    client = gateway.client
    image = await upload(client, "/v1/uploads", (30, 30, 200))
    created = await client.post("/v1/videos", json={"prompt": "default's own"})
    assert created.status_code == 202, created.text
    video_id = created.json()["id"]
    await create_org(nats_url, namespace, "acme")
    async with gateway.client_for(await create_key(nats_url, namespace, "acme")) as acme:
        for answer in (
            await acme.get(f"/v1/videos/{video_id}"),
            await acme.get(f"/v1/videos/{video_id}/content"),
            await acme.post("/api/check-video", json={"id": video_id}),
            await acme.post("/api/download-and-store-video", json={"id": video_id}),
        ):
            assert answer.status_code == 404, answer.text
            assert answer.json()["error"]["code"] == "not_found"
        listed = await acme.get("/v1/videos")
        assert listed.status_code == 200 and listed.json()["data"] == []
        assert (await acme.get("/api/list-videos")).json()["videos"] == []
        borrowed = await acme.post("/v1/videos", json={"prompt": "p",
                                                      "reference_images": [image["key"]]})
        assert borrowed.status_code == 422, borrowed.text
        assert borrowed.json()["error"]["code"] == "unknown_upload"
        own = await acme.post("/v1/videos", json={"prompt": "acme's own"})
        assert own.status_code == 202, own.text
        mine = (await acme.get("/v1/videos")).json()["data"]
        assert [v["id"] for v in mine] == [own.json()["id"]]
    assert [v["id"] for v in (await client.get("/v1/videos")).json()["data"]] == [video_id]
