"""Every provider protocol through the whole system (``reelvault up``, the simulator speaking
OpenAI Videos, OpenRouter and Gemini): ``GET /v1/models`` lists each provider's models, each
makes, archives and catalogs a playable video of the requested shape from two reference
images, bad input per model is refused with the allowed values, and a cancel stops a video
without a second provider job."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.media import png_bytes, probe_mp4
from tests.support.system import (
    RunningSystem,
    reelvault_up,
    stop_cleanly,
    system_env,
    wait_for_status,
)

pytestmark = pytest.mark.e2e

# One model of each protocol, at a size and duration each accepts.
REQUESTS = {
    "openai": {"model": "sora-2", "size": "1280x720", "seconds": "4"},
    "openrouter": {"model": "google/veo-3.1-fast", "size": "720x1280", "seconds": "4"},
    "gemini": {"model": "veo-3.1-fast-generate-preview", "size": "1280x720", "seconds": "6"},
}


@pytest.fixture
def system(
    tmp_path: Path, nats_url: str, database_url: str, namespace: str
) -> Iterator[RunningSystem]:
    env = system_env(nats_url, database_url, namespace)
    with reelvault_up(tmp_path / "data", env) as running:
        yield running
        stop_cleanly(running)


def sim_jobs(system: RunningSystem) -> dict[str, Any]:
    answer = httpx.get(f"{system.simulator.removesuffix('/v1')}/_sim/jobs", timeout=10)
    answer.raise_for_status()
    return dict(answer.json()["by_protocol"])


def upload_two(client: httpx.Client) -> list[str]:
    keys = []
    for color in ((200, 40, 40), (40, 40, 200)):
        upload = client.post("/v1/uploads", files={
            "file": ("frame.png", png_bytes(320, 240, color), "image/png")})
        assert upload.status_code == 201, upload.text
        keys.append(upload.json()["key"])
    return keys


def models_of(client: httpx.Client) -> dict[str, dict[str, Any]]:
    # The generator publishes the catalog once it has started: give it a moment.
    deadline = time.monotonic() + 30
    while True:
        listed = client.get("/v1/models")
        assert listed.status_code == 200, listed.text
        models = {m["id"]: m for m in listed.json()["data"]}
        if {"google/veo-3.1", "veo-3.1-generate-preview"} <= set(models) or \
                time.monotonic() > deadline:
            return models
        time.sleep(0.5)


def test_each_protocol_makes_archives_and_catalogs_a_video(system: RunningSystem) -> None:
    with system.client() as client:
        models = models_of(client)
        assert {m["provider"] for m in models.values()} == {"openai", "openrouter", "gemini"}
        veo = models["veo-3.1-generate-preview"]
        assert veo["seconds_by_size"]["1920x1080"] == ["8"]
        assert {"first_frame", "last_frame"} <= set(veo["image_inputs"])
        assert [m["id"] for m in models.values() if m["default"]] == ["sora-2"]

        keys = upload_two(client)
        created = {}
        for provider, shape in REQUESTS.items():
            answer = client.post("/v1/videos", json={
                "prompt": f"a paper boat drifting ({provider})", **shape,
                "reference_images": keys})
            assert answer.status_code == 202, answer.text
            created[provider] = answer.json()["id"]
            assert answer.json()["estimated_cost_usd"] is not None

        for provider, video_id in created.items():
            video = wait_for_status(client, video_id, {"completed", "failed"}, timeout_s=120)
            assert video["status"] == "completed", (provider, video)
            assert video["provider"] == provider
            assert video["sha256"] and video["bytes"] > 0
            # Every video has a thumbnail: the provider's, or a frame taken from the video.
            assert video["thumbnail_url"]
            redirect = client.get(f"/v1/videos/{video_id}/content", follow_redirects=False)
            facts = probe_mp4(httpx.get(redirect.headers["location"], timeout=30).content)
            width, height = map(int, REQUESTS[provider]["size"].split("x"))
            assert (facts.width, facts.height) == (width, height), provider
            assert abs(facts.duration_s - int(REQUESTS[provider]["seconds"])) < 1, provider
        # OpenRouter reports what it charged; the others have the list-price estimate only.
        assert client.get(f"/v1/videos/{created['openrouter']}").json()["cost_usd"] is not None
        assert client.get(f"/v1/videos/{created['openai']}").json()["cost_usd"] is None

    jobs = sim_jobs(system)
    for provider in REQUESTS:
        assert jobs[provider]["jobs_created"] == 1, (provider, jobs)


@pytest.mark.parametrize(("provider", "change", "field", "allowed"), [
    ("openai", {"seconds": "6"}, "seconds", "'4', '8', and '12'"),
    ("openrouter", {"size": "1080x1080"}, "size", "'1280x720'"),
    ("gemini", {"size": "1920x1080", "seconds": "4"}, "seconds", "'8'"),
    ("gemini", {"model": "veo-9"}, "model", "'veo-3.1-generate-preview'"),
])
def test_bad_input_names_what_the_model_allows(
    system: RunningSystem, provider: str, change: dict[str, str], field: str, allowed: str
) -> None:
    with system.client() as client:
        models_of(client)
        answer = client.post("/v1/videos", json={"prompt": "p", **REQUESTS[provider], **change})
        assert answer.status_code == 422, answer.text
        error = answer.json()["error"]
        assert error["details"][0]["loc"] == ["body", field]
        assert allowed in error["message"]
        # Three images are too many for every model.
        keys = upload_two(client) + upload_two(client)[:1]
        too_many = client.post("/v1/videos", json={"prompt": "p", **REQUESTS[provider],
                                                   "reference_images": keys})
        assert too_many.status_code == 422, too_many.text
    assert all(counts["jobs_created"] == 0 for counts in sim_jobs(system).values())


def test_a_canceled_video_fails_canceled_and_is_not_created_again(
    tmp_path: Path, nats_url: str, database_url: str, namespace: str
) -> None:
    # Slow generations: the video is still running when the cancel comes.
    env = system_env(nats_url, database_url, namespace, PROVIDER_SIM_GENERATION_S="30")
    with reelvault_up(tmp_path / "data", env) as system, system.client() as client:
        models_of(client)
        created = client.post("/v1/videos", json={"prompt": "stop me", **REQUESTS["openrouter"]})
        assert created.status_code == 202, created.text
        video_id = created.json()["id"]
        wait_for_status(client, video_id, {"processing"}, timeout_s=30)
        canceled = client.post(f"/v1/videos/{video_id}/cancel")
        assert canceled.status_code == 202, canceled.text
        video = wait_for_status(client, video_id, {"failed"}, timeout_s=30)
        assert video["error_code"] == "canceled", video
        again = client.post(f"/v1/videos/{video_id}/cancel")
        assert again.status_code == 409 and again.json()["error"]["code"] == "video_finished"
        assert sim_jobs(system)["openrouter"]["jobs_created"] == 1
        stop_cleanly(system)
