"""The whole system on the Supabase storage backend: ``reelvault up`` (every service its own
process) against the Supabase-Storage-compatible test server running as its own loopback process
(``python -m tests.support.supabase_storage``), driven only over HTTP, as the filesystem e2e
test does: upload two images, request a video, poll, follow the content redirect to a signed
URL of the storage server whose bytes are the provider's playable MP4, find the thumbnail in the
public thumbnails bucket. Plus what the Supabase backend adds: signed links with a short,
configured lifetime, the catalog keeping object keys (never signed URLs), bucket rules refusing
oversize or wrong-type files with clear errors (through the gateway and directly), and videos
above the streaming threshold uploaded while they download, straight to their key.

Each test runs twice: against the test server, and against a real Supabase Storage server when
one is at hand (``REELVAULT_TEST_SUPABASE_STORAGE_URL`` and ``REELVAULT_TEST_SUPABASE_SERVICE_KEY``,
or the ``supabase/storage-api`` image when a Docker engine answers; skipped with the reason
otherwise)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from PIL import Image
from reelvault_common.runtime.settings import StorageSettings
from reelvault_common.storage import MimeTypeNotAllowed, PayloadTooLarge
from reelvault_common.storage.layout import MB, Buckets, thumbnail_key, video_key
from reelvault_common.storage.supabase import SupabaseStorage
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.media import png_bytes, probe_mp4
from tests.support.supabase_storage import external_storage, make_jwt
from tests.support.system import (
    RunningSystem,
    reelvault_up,
    served_by_simulator,
    stop_cleanly,
    system_env,
    wait_for_seed_check,
    wait_for_status,
)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
JWT_SECRET = "e2e-supabase-jwt-secret-" + uuid.uuid4().hex
SIGNED_URL_TTL_S = 5
# Above the 6 MB threshold: the archiver's copy streams straight to the key (no spool file).
PADDED_VIDEO_BYTES = 7 * MB


@dataclass
class StorageServer:
    url: str  # the bare storage server (no /storage/v1 prefix)
    service_key: str

    def admin(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.service_key}", "apikey": self.service_key}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture(params=["double", "real"])
def storage_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorageServer]:
    if request.param == "real":
        with external_storage() as real:
            if isinstance(real, str):
                pytest.skip(real)
            real.empty_buckets([spec.name for spec in Buckets.from_settings(
                StorageSettings()).all()])
            yield StorageServer(real.url, real.service_key)
        return
    port_file = tmp_path / "storage.port"
    log = tmp_path / "storage-server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.supabase_storage", "--root",
             str(tmp_path / "supabase"), "--jwt-secret", JWT_SECRET, "--port-file", str(port_file)],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the storage test server did not start"
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port_file.read_text().strip()}/"
        yield StorageServer(url, make_jwt(JWT_SECRET, "service_role", 3 * 3600))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def system(
    tmp_path: Path, nats_url: str, database_url: str, namespace: str, storage_server: StorageServer
) -> Iterator[RunningSystem]:
    env = system_env(
        nats_url, database_url, namespace,
        PROVIDER_SIM_PAD_VIDEO_TO_BYTES=str(PADDED_VIDEO_BYTES),
        REELVAULT_STORAGE_BACKEND="supabase",
        SUPABASE_STORAGE_URL=storage_server.url,
        SUPABASE_SERVICE_ROLE_KEY=storage_server.service_key,
        REELVAULT_SIGNED_URL_TTL_S=str(SIGNED_URL_TTL_S),
    )
    # (SUPABASE_STORAGE_URL wins over a SUPABASE_URL the environment might carry.)
    with reelvault_up(tmp_path / "data", env) as running:
        yield running
        stop_cleanly(running)


def upload_image(client: httpx.Client, route: str, color: tuple[int, int, int],
                 size: tuple[int, int]) -> dict[str, Any]:
    image = png_bytes(*size, color)
    response = client.post(route, files={"file": ("person.png", image, "image/png")})
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


async def catalog_row(database_url: str, video_id: str) -> dict[str, Any]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            result = await connection.execute(
                text("SELECT * FROM videos WHERE id = :id"), {"id": uuid.UUID(video_id)}
            )
            row = result.mappings().one()
            return dict(row)
    finally:
        await engine.dispose()


def test_v1_flow_stores_into_supabase_with_signed_links(
    system: RunningSystem, storage_server: StorageServer, database_url: str
) -> None:
    with system.client() as client:
        keys = []
        for color, size in (((200, 30, 30), (640, 480)), ((30, 30, 200), (480, 640))):
            upload = upload_image(client, "/v1/uploads", color, size)
            # The images bucket is public: the URL is the storage server's public route.
            assert upload["url"].startswith(f"{storage_server.url}object/public/hug-images/")
            image = httpx.get(upload["url"], timeout=10)
            assert image.status_code == 200 and image.headers["content-type"] == "image/png"
            keys.append(upload["key"])

        created = client.post("/v1/videos", json={
            "prompt": "two friends hug on a beach", "model": "sora-2", "seconds": "4",
            "size": "1280x720", "reference_images": keys,
        })
        assert created.status_code == 202, created.text
        video_id = created.json()["id"]

        video = wait_for_status(client, video_id, {"completed", "failed"}, timeout_s=120)
        assert video["status"] == "completed", (video, system.logs())
        served_sha, served_size = served_by_simulator(system, video["provider_job_id"])
        assert served_size >= PADDED_VIDEO_BYTES
        assert (video["sha256"], video["bytes"]) == (served_sha, served_size)
        # Above the threshold: the archiver uploaded it while downloading, as one standard
        # upload straight to its key (no spool file, no TUS, no copy into place).
        archiver_log = (system.data_dir / "logs" / "archiver.log").read_text(errors="replace")
        assert "(streamed)" in archiver_log, archiver_log[-2000:]
        assert "TUS put videos/" not in archiver_log, archiver_log[-2000:]

        # GET /v1/videos/{id}/content -> a fresh signed URL of the storage server.
        redirect = client.get(f"/v1/videos/{video_id}/content", follow_redirects=False)
        assert redirect.status_code in (302, 307), redirect.text
        location = redirect.headers["location"]
        assert location.startswith(f"{storage_server.url}object/sign/videos/"), location
        token = parse_qs(urlsplit(location).query)["token"][0]
        # The server's own token (a real server signs it with its own secret; whether it is
        # valid, the server says below by serving the link): its lifetime is the configured one.
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == SIGNED_URL_TTL_S
        assert storage_server.service_key not in location
        stored = httpx.get(location, timeout=30)
        assert stored.status_code == 200, stored.text
        assert stored.headers["content-type"].startswith("video/mp4")
        content = stored.content
        assert hashlib.sha256(content).hexdigest() == served_sha
        facts = probe_mp4(content)
        assert (facts.width, facts.height) == (1280, 720)
        assert facts.duration_s == pytest.approx(4.0, abs=0.5)
        assert facts.frames > 1

        # The thumbnail lives in the public thumbnails bucket: a permanent URL, no token.
        thumb_url = video["thumbnail_url"]
        assert thumb_url.startswith(f"{storage_server.url}object/public/thumbnails/"), thumb_url
        thumb = httpx.get(thumb_url, timeout=10)
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
        assert Image.open(io.BytesIO(thumb.content)).format == "WEBP"
        assert hashlib.sha256(thumb.content).hexdigest() == served_by_simulator(
            system, video["provider_job_id"], "thumbnail")[0]
        variant = client.get(f"/v1/videos/{video_id}/content", params={"variant": "thumbnail"},
                             follow_redirects=False)
        assert variant.headers["location"] == thumb_url

        # The catalog keeps the permanent object keys; links are made fresh on each request.
        row = asyncio.run(catalog_row(database_url, video_id))
        requested_at = row["requested_at"]
        assert row["video_bucket"] == "videos"
        assert row["video_key"] == video_key("default", requested_at, uuid.UUID(video_id))
        assert row["thumbnail_key"] == thumbnail_key("default", requested_at, uuid.UUID(video_id))
        assert row["video_url"] == f"{system.gateway}/v1/videos/{video_id}/content"
        assert all("token=" not in str(value) for value in row.values()), row
        assert "token=" not in client.get(f"/v1/videos/{video_id}").text

        # What the storage server holds, asked directly: the key, size and type (the bytes were
        # hashed above; a video streamed straight to its key carries no sha256 of its own: the
        # catalog records it); bucket rules as the seeds set them.
        with storage_server.admin() as admin:
            info = admin.get(f"object/info/videos/{row['video_key']}")
            assert info.status_code == 200, info.text
            assert info.json()["size"] == served_size
            assert info.json()["content_type"] == "video/mp4"
            assert (info.json().get("metadata") or {}).get("sha256") in (None, served_sha)
            bucket = admin.get("bucket/videos").json()
            assert (bucket["public"], bucket["file_size_limit"], bucket["allowed_mime_types"]) == (
                False, 500 * MB, ["video/*"])

        # The signed link stops working after its lifetime.
        while time.time() <= claims["exp"] + 1:
            time.sleep(0.2)
        expired = httpx.get(location, timeout=10)
        # As the real server answers: 400 InvalidJWT, "exp" claim timestamp check failed.
        assert expired.status_code == 400, expired.text
        assert expired.json()["error"] == "InvalidJWT" and '"exp"' in expired.json()["message"]
        fresh = client.get(f"/v1/videos/{video_id}/content", follow_redirects=False)
        assert httpx.get(fresh.headers["location"], timeout=30).status_code == 200


def test_seed_api_routes_on_supabase(system: RunningSystem, storage_server: StorageServer) -> None:
    with system.client() as client:
        urls = [upload_image(client, "/api/upload", color, (300, 300))["url"]
                for color in ((10, 200, 10), (200, 200, 10))]
        assert all(url.startswith(f"{storage_server.url}object/public/hug-images/") for url in urls)
        created = client.post("/api/create-video", json={
            "prompt": "a hug", "image1_url": urls[0], "image2_url": urls[1],
        })
        assert created.status_code in (200, 201, 202), created.text
        video_id = created.json()["id"]

        check = wait_for_seed_check(client, video_id, timeout_s=120)
        assert check["status"] == "completed", check
        listed = client.get("/api/list-videos").json()["videos"]
        assert listed[0]["image1_url"] == urls[0] and listed[0]["image2_url"] == urls[1]

        again = client.post("/api/download-and-store-video", json={"id": video_id})
        assert again.status_code == 200, again.text
        assert again.json()["video_url"] == check["video_url"]

        redirect = client.get(f"/v1/videos/{video_id}/content", follow_redirects=False)
        stored = httpx.get(redirect.headers["location"], timeout=30)
        assert stored.status_code == 200
        facts = probe_mp4(stored.content)
        assert (facts.width, facts.height) == (720, 1280)


def test_bucket_rules_refuse_oversize_and_wrong_types_clearly(
    system: RunningSystem, storage_server: StorageServer
) -> None:
    # Through the gateway: JSON errors with the right status.
    with system.client(timeout=60) as client:
        text_file = {"file": ("notes.txt", b"not an image", "text/plain")}
        wrong = client.post("/v1/uploads", files=text_file)
        assert wrong.status_code == 415, wrong.text
        assert wrong.json()["error"]["code"] == "unsupported_media_type"
        big = png_bytes(16, 16, (1, 2, 3)) + bytes(10 * MB)  # 10 MB + a bit: over the limit
        oversize = client.post("/v1/uploads", files={"file": ("big.png", big, "image/png")})
        assert oversize.status_code == 413, oversize.text
        assert oversize.json()["error"]["code"] == "payload_too_large"
        assert "limit" in oversize.json()["error"]["message"]

    # Directly against the storage server: the backend's typed errors carry its words...
    async def direct() -> None:
        store = SupabaseStorage.for_storage_server(storage_server.url, storage_server.service_key)
        try:
            await store.ensure_buckets(Buckets.from_settings(StorageSettings()).all())  # no-op

            async def once(data: bytes) -> AsyncIterator[bytes]:
                yield data

            with pytest.raises(MimeTypeNotAllowed, match="text/plain"):
                await store.put("hug-images", "e2e/notes.txt", once(b"hello"), "text/plain")
            with pytest.raises(MimeTypeNotAllowed, match="image/png"):
                await store.put("videos", "e2e/frame.png", once(png_bytes(8, 8, (0, 0, 0))),
                                "image/png")
            with pytest.raises(PayloadTooLarge, match=r"limit|large"):
                await store.put("thumbnails", "e2e/huge.webp", once(bytes(5 * MB + 1)),
                                "image/webp")
        finally:
            await store.aclose()

    asyncio.run(direct())

    # ...which are the server's own answers: HTTP 400 with the real status in the body.
    with storage_server.admin() as admin:
        refused = admin.post("object/hug-images/e2e/raw.txt", content=b"hello",
                             headers={"content-type": "text/plain"})
        assert refused.status_code == 400
        assert refused.json()["statusCode"] == "415"
        assert refused.json()["error"] == "invalid_mime_type"
        too_big = admin.post("object/thumbnails/e2e/raw.webp", content=bytes(5 * MB + 1),
                             headers={"content-type": "image/webp"})
        assert too_big.status_code == 400
        assert too_big.json()["statusCode"] == "413"
        listed = admin.post("object/list/hug-images", json={"prefix": "e2e", "limit": 10})
        assert listed.status_code == 200 and listed.json() == []  # nothing refused was kept
