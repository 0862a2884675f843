"""The simulator's OpenRouter API seen on the wire: envelopes, auth, statuses, content,
webhooks and faults."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
from conftest import RunningSim, SimFactory, serve_app
from providersim_helpers import API_KEY, AUTH, HookReceiver
from pydantic import SecretStr

HOOK_SECRET = "dev_secret"


def api(sim: RunningSim) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"{sim.root_url}/api/v1", timeout=10)


async def wait_done(http: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        job: dict[str, Any] = (await http.get(f"/videos/{job_id}", headers=AUTH)).json()
        if job["status"] not in ("pending", "in_progress"):
            return job
        assert time.monotonic() < deadline, job
        await asyncio.sleep(0.05)


async def create(http: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await http.post("/videos", headers=AUTH, json={"model": "google/veo-3.1-lite",
                                                          "prompt": "p", "duration": 4, **body})


async def test_job_shapes_and_content_rules(sim: RunningSim) -> None:
    async with api(sim) as http:
        reply = await create(http)
        assert reply.status_code == 202
        assert set(reply.json()) == {"id", "polling_url", "status"}
        job_id = reply.json()["id"]
        early = await http.get(f"/videos/{job_id}/content", headers=AUTH)
        assert early.status_code == 400
        assert early.json()["error"]["metadata"] == {"error_type": "invalid_request"}
        done = await wait_done(http, job_id)
        assert set(done) == {"id", "polling_url", "status", "generation_id", "unsigned_urls",
                             "usage"}
        assert done["usage"] == {"cost": 0.2, "is_byok": False}
        # The content URL wants the key, although it is called "unsigned".
        bare = await http.get(f"/videos/{job_id}/content")
        assert bare.status_code == 401
        assert bare.json() == {"error": {"message": "Missing Authentication header",
                                         "code": 401}}
        out_of_range = await http.get(f"/videos/{job_id}/content?index=1", headers=AUTH)
        assert out_of_range.status_code == 400
        ok = await http.get(done["unsigned_urls"][0], headers=AUTH)
        assert ok.status_code == 200 and ok.headers["content-type"] == "video/mp4"
        assert ok.content[4:8] == b"ftyp"


async def test_envelopes_and_missing_routes(sim: RunningSim) -> None:
    async with api(sim) as http:
        missing = await http.post("/videos", headers=AUTH, json={"prompt": "p"})
        assert missing.status_code == 400
        assert missing.json()["error"]["code"] == 400
        unknown = await create(http, fps=24)
        assert unknown.status_code == 400 and "fps" in unknown.json()["error"]["message"]
        http_callback = await create(http, callback_url="http://example.com/hook")
        assert http_callback.status_code == 400
        assert "https" in http_callback.json()["error"]["message"]
        # No list, cancel or delete: like any unknown route.
        assert (await http.get("/videos", headers=AUTH)).status_code in (404, 405)
        assert (await http.post("/videos/abc/cancel", headers=AUTH)).status_code == 404
        assert (await http.delete("/videos/abc", headers=AUTH)).status_code == 405
        # The models listing needs no key.
        assert (await http.get("/videos/models")).status_code == 200
        # An OpenAI job does not exist for OpenRouter, nor the other way round.
        sora = await httpx.AsyncClient(base_url=sim.base_url).post(
            "/videos", headers=AUTH, json={"prompt": "p"})
        assert (await http.get(f"/videos/{sora.json()['id']}", headers=AUTH)).status_code == 404


async def test_rate_limit_headers(sim: RunningSim) -> None:
    async with api(sim) as http, sim.admin() as admin:
        await admin.post("/_sim/faults", json={"rules": [
            {"kind": "rate_limit", "protocol": "openrouter", "retry_after_s": 3}]})
        before = time.time()
        limited = await create(http)
        assert limited.status_code == 429
        assert limited.json() == {"error": {"code": 429, "message": "Rate limit exceeded",
                                            "metadata": {"error_type": "rate_limit_exceeded"}}}
        assert limited.headers["retry-after"] == "3"
        assert {"x-ratelimit-limit", "x-ratelimit-remaining"} <= set(limited.headers)
        assert int(limited.headers["x-ratelimit-reset"]) >= int((before + 3) * 1000)
        assert (await create(http)).status_code == 202
        counts = (await admin.get("/_sim/jobs")).json()["by_protocol"]["openrouter"]
        assert counts["create_calls"] == 2 and counts["jobs_created"] == 1


def verify(secret: str, body: bytes, header: str) -> bool:
    parts = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']},".encode() + body,
                        hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


async def test_signed_callbacks_per_terminal_state(sim_factory: SimFactory) -> None:
    receiver = HookReceiver()
    async with (
        serve_app(receiver.app) as hooks,
        sim_factory(openrouter_webhook_secret=SecretStr(HOOK_SECRET)) as running,
        api(running) as http,
        running.admin() as admin,
    ):
        await admin.post("/_sim/faults", json={"rules": [
            {"kind": "job_failed", "protocol": "openrouter", "message": "Content policy violation"},
            {"kind": "job_cancelled", "protocol": "openrouter"},
            {"kind": "job_expired", "protocol": "openrouter"},
        ]})
        ids = []
        for _ in range(4):
            reply = await create(http, callback_url=f"{hooks}/hook")
            ids.append(reply.json()["id"])
        jobs = [await wait_done(http, job_id) for job_id in ids]
        assert [job["status"] for job in jobs] == ["failed", "cancelled", "expired", "completed"]
        assert jobs[0]["error"] == "Content policy violation"
        assert jobs[1]["error"] == "Job was cancelled"
        assert jobs[2]["error"] == "Job exceeded maximum time to live"
        received = await receiver.wait(4)
        by_id = {json.loads(body)["data"]["id"]: (body, headers) for body, headers in received}
        for job in jobs:
            body, headers = by_id[job["id"]]
            event = json.loads(body)
            assert event["type"] == f"video.generation.{job['status']}"
            assert event["created_at"].endswith("Z")
            assert event["data"]["model"] == "google/veo-3.1-lite"
            assert event["data"]["generation_id"].startswith("gen-")
            assert headers["x-openrouter-idempotency-key"] == f"{job['id']}-{job['status']}"
            assert verify(HOOK_SECRET, body, headers["x-openrouter-signature"])
            assert not verify("other", body, headers["x-openrouter-signature"])
        completed = json.loads(by_id[ids[3]][0])["data"]
        assert completed["unsigned_urls"] == jobs[3]["unsigned_urls"]
        assert completed["usage"] == {"cost": 0.2, "is_byok": False}
        assert "error" not in completed


async def test_loopback_image_urls_are_fetched(sim: RunningSim) -> None:
    from providersim_helpers import png
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def image(_: Any) -> Response:
        return Response(png((320, 240)), media_type="image/png")

    async def text(_: Any) -> Response:
        return Response(b"hello", media_type="text/plain")

    files = Starlette(routes=[Route("/a.png", image), Route("/a.txt", text)])
    async with serve_app(files) as host, api(sim) as http:
        frame = {"type": "image_url", "frame_type": "first_frame"}
        good = await create(http, frame_images=[{**frame, "image_url": {"url": f"{host}/a.png"}}])
        assert good.status_code == 202
        bad = await create(http, frame_images=[{**frame, "image_url": {"url": f"{host}/a.txt"}}])
        assert bad.status_code == 400 and "not a supported image" in bad.text
        remote = await create(
            http, frame_images=[{**frame, "image_url": {"url": "https://example.com/a.png"}}])
        assert remote.status_code == 400 and "loopback" in remote.text
        assert (await wait_done(http, good.json()["id"]))["status"] == "completed"


async def test_per_protocol_key(sim_factory: SimFactory) -> None:
    async with sim_factory(openrouter_api_key=SecretStr("sk-or-v1-own")) as running:
        async with api(running) as http:
            assert (await create(http)).status_code == 401
            own = {"Authorization": "Bearer sk-or-v1-own"}
            assert (await http.get("/videos/x", headers=own)).status_code == 404
        async with httpx.AsyncClient(base_url=running.base_url) as openai_http:
            assert (await openai_http.get("/videos", headers=AUTH)).status_code == 200
    assert API_KEY != "sk-or-v1-own"
