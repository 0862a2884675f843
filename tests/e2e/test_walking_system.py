"""The whole system, every service its own process (started by ``reelvault up``), driven only
through the public HTTP API: upload two images, request a video, poll, list, fetch the stored
file and check it is a playable MP4 of the requested size whose bytes are what the provider
served. Both the /v1 API and the seed app's /api routes, plus the bad-input contract."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.media import png_bytes, probe_mp4
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


@pytest.fixture
def system(
    tmp_path: Path, nats_url: str, database_url: str, namespace: str
) -> Iterator[RunningSystem]:
    env = system_env(nats_url, database_url, namespace)
    with reelvault_up(tmp_path / "data", env) as running:
        yield running
        stop_cleanly(running)


def fetch_content(client: httpx.Client, video_id: str) -> bytes:
    redirect = client.get(f"/v1/videos/{video_id}/content", follow_redirects=False)
    assert redirect.status_code in (302, 307), redirect.text
    stored = httpx.get(redirect.headers["location"], timeout=30)
    assert stored.status_code == 200
    assert stored.headers["content-type"].startswith("video/mp4")
    return stored.content


def test_v1_flow_from_request_to_permanent_storage(system: RunningSystem) -> None:
    with system.client() as client:
        keys = []
        for color, size in (((200, 30, 30), (640, 480)), ((30, 30, 200), (480, 640))):
            upload = client.post(
                "/v1/uploads", files={"file": ("person.png", png_bytes(*size, color), "image/png")}
            )
            assert upload.status_code == 201, upload.text
            assert httpx.get(upload.json()["url"]).status_code == 200  # public images bucket
            keys.append(upload.json()["key"])

        created = client.post(
            "/v1/videos",
            json={
                "prompt": "two friends hug on a beach",
                "model": "sora-2",
                "seconds": "4",
                "size": "1280x720",
                "reference_images": keys,
            },
        )
        assert created.status_code == 202, created.text
        video_id = created.json()["id"]
        assert created.json()["status"] == "queued"
        # Readable at once: the gateway answers after the catalog has the row.
        assert client.get(f"/v1/videos/{video_id}").status_code == 200

        video = wait_for_status(client, video_id, {"completed", "failed"})
        assert video["status"] == "completed", video
        assert video["provider_job_id"] and video["sha256"] and video["bytes"] > 0
        assert video["thumbnail_url"]

        listed = client.get("/v1/videos", params={"status": "completed"}).json()
        assert video_id in [item["id"] for item in listed["data"]]

        content = fetch_content(client, video_id)
        facts = probe_mp4(content)
        assert (facts.width, facts.height) == (1280, 720)
        assert facts.duration_s == pytest.approx(4.0, abs=0.5)
        assert facts.frames > 1
        digest = hashlib.sha256(content).hexdigest()
        assert digest == video["sha256"] == served_by_simulator(system, video["provider_job_id"])[0]
        assert len(content) == video["bytes"]


def test_seed_api_routes(system: RunningSystem) -> None:
    with system.client() as client:
        urls = []
        for color in ((10, 200, 10), (200, 200, 10)):
            upload = client.post(
                "/api/upload", files={"file": ("p.jpg", png_bytes(300, 300, color), "image/png")}
            )
            assert upload.status_code in (200, 201), upload.text
            urls.append(upload.json()["url"])
        created = client.post(
            "/api/create-video",
            json={
                "prompt": "a hug",
                "image1_url": urls[0],
                "image2_url": urls[1],
            },
        )
        assert created.status_code in (200, 201, 202), created.text
        video_id = created.json()["id"]

        check = wait_for_seed_check(client, video_id)
        assert check["status"] == "completed", check
        assert check["video_url"]

        listed = client.get("/api/list-videos").json()["videos"]
        assert listed[0]["id"] == video_id  # newest first
        assert listed[0]["image1_url"] == urls[0] and listed[0]["image2_url"] == urls[1]

        again = client.post("/api/download-and-store-video", json={"id": video_id})
        assert again.status_code == 200, again.text
        assert again.json()["video_url"] == check["video_url"]

        facts = probe_mp4(fetch_content(client, video_id))
        assert (facts.width, facts.height) == (720, 1280)  # the default size


def test_bad_input_gets_a_clear_json_4xx_and_writes_nothing(system: RunningSystem) -> None:
    with system.client() as client:
        upload = client.post(
            "/v1/uploads", files={"file": ("a.png", png_bytes(64, 64, (1, 2, 3)), "image/png")}
        )
        key = upload.json()["key"]
        before = client.get("/api/list-videos").json()["videos"]

        cases = [
            client.get("/v1/videos/00000000-0000-4000-8000-000000000000"),
            client.post("/api/check-video", json={"id": "00000000-0000-4000-8000-000000000000"}),
            client.post("/v1/videos", json={"model": "sora-2"}),
            client.post("/v1/videos", json={"prompt": ""}),
            client.post(
                "/v1/uploads", files={"file": ("notes.txt", b"hello, not an image", "text/plain")}
            ),
            client.post(
                "/v1/uploads", files={"file": ("fake.png", b"\x89PNG broken", "image/png")}
            ),
            client.post("/v1/videos", json={"prompt": "p", "reference_images": [key, key, key]}),
            client.post("/v1/videos", json={"prompt": "p", "size": "999x999"}),
            client.post("/v1/videos", json={"prompt": "p", "seconds": "7"}),
            client.post("/v1/videos", json={"prompt": "p", "model": "sora-2", "size": "1920x1080"}),
            client.post(
                "/v1/videos", json={"prompt": "p", "reference_images": ["no/such/upload.png"]}
            ),
            client.post("/api/create-video", json={"image1_url": "x"}),
        ]
        for response in cases:
            assert 400 <= response.status_code < 500, (
                response.request.url,
                response.status_code,
                response.text,
            )
            body = response.json()
            assert set(body["error"]) >= {"code", "message"}, body
            assert body["error"]["message"]
        assert cases[0].status_code == 404 and cases[1].status_code == 404
        assert cases[4].status_code == 415

        after = client.get("/api/list-videos").json()["videos"]
        assert [v["id"] for v in after] == [v["id"] for v in before]
