"""Injected faults and webhooks, seen from real clients."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
from conftest import RunningSim, SimFactory, serve_app
from providersim_helpers import API_KEY, AUTH, wait_terminal
from pydantic import SecretStr
from reelvault_common.providers.openai_videos import ProviderError, VideosClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

pytestmark = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")

WEBHOOK_SECRET = "whsec_RdvaYFYUXuIFuEbvZHwMfYFhUf7aMYjYcmM24+Aj40c="


@pytest.fixture
async def http(sim: RunningSim) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.base_url, timeout=10) as client:
        yield client


async def push(sim: RunningSim, *rules: dict[str, Any]) -> None:
    async with sim.admin() as admin:
        reply = await admin.post("/_sim/faults", json={"rules": list(rules)})
        assert reply.status_code == 200, reply.text


async def jobs(sim: RunningSim) -> dict[str, Any]:
    async with sim.admin() as admin:
        return (await admin.get("/_sim/jobs")).json()  # type: ignore[no-any-return]


async def test_rate_limit_reply_and_sdk_retry(sim: RunningSim, http: httpx.AsyncClient) -> None:
    await push(sim, {"kind": "rate_limit", "route": "create", "times": 1, "retry_after_s": 0.3})
    reply = await http.post("/videos", headers=AUTH, json={"prompt": "p"})
    assert reply.status_code == 429
    assert reply.json()["error"]["code"] == "rate_limit_exceeded"
    assert reply.json()["error"]["type"] == "requests"
    assert reply.headers["retry-after"] == "1"
    assert reply.headers["retry-after-ms"] == "300"
    assert reply.headers["x-ratelimit-remaining-requests"] == "0"

    # The SDK waits as told and retries; the simulator sees both calls but makes one job.
    await push(sim, {"kind": "rate_limit", "route": "create", "times": 2, "retry_after_s": 0.2})
    client = openai.AsyncOpenAI(base_url=sim.base_url, api_key=API_KEY, max_retries=2)
    started = time.monotonic()
    video = await client.videos.create(prompt="after retries")
    assert time.monotonic() - started >= 0.4
    listing = await jobs(sim)
    assert listing["create_calls"] == 4
    assert [j["prompt"] for j in listing["jobs"]] == ["after retries"]
    assert listing["jobs"][0]["id"] == video.id


async def test_quota_and_server_errors(sim: RunningSim, http: httpx.AsyncClient) -> None:
    await push(
        sim,
        {"kind": "quota", "route": "create"},
        {"kind": "server_error", "route": "retrieve", "status": 503},
    )
    quota = await http.post("/videos", headers=AUTH, json={"prompt": "p"})
    assert quota.status_code == 429
    assert quota.json()["error"]["code"] == "insufficient_quota"
    broken = await http.get("/videos/video_x", headers=AUTH)
    assert broken.status_code == 503
    assert broken.json()["error"]["type"] == "server_error"
    # One-shot: the next retrieve is served normally (here: a 404 for an unknown id).
    assert (await http.get("/videos/video_x", headers=AUTH)).status_code == 404
    # Bad keys are still 401 first, whatever the faults.
    await push(sim, {"kind": "server_error"})
    assert (
        await http.get("/videos", headers={"Authorization": "Bearer nope-nope-nope"})
    ).status_code == 401


async def test_jobs_that_fail_expire_or_are_slow(sim: RunningSim, http: httpx.AsyncClient) -> None:
    await push(
        sim,
        {"kind": "job_failed", "code": "moderation_blocked", "message": "Blocked by moderation."},
        {"kind": "job_expired"},
        {"kind": "slow_job", "generation_s": 30},
    )
    ids = [
        (await http.post("/videos", headers=AUTH, json={"prompt": f"j{i}"})).json()["id"]
        for i in range(4)
    ]
    failed = await wait_terminal(http, ids[0])
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "moderation_blocked", "message": "Blocked by moderation."}
    expired = await wait_terminal(http, ids[1])
    assert expired["status"] == "expired"
    assert (await wait_terminal(http, ids[3]))["status"] == "completed"
    slow = (await http.get(f"/videos/{ids[2]}", headers=AUTH)).json()
    assert slow["status"] == "queued"  # the first 10 % of its 30 s
    assert slow["progress"] == 0
    for video_id in ids[:2]:
        reply = await http.get(f"/videos/{video_id}/content", headers=AUTH)
        assert reply.status_code == 404
        assert reply.json()["error"]["code"] == "video_not_available"


async def download(client: VideosClient, video_id: str, sink: bytearray) -> None:
    """Stream the video into ``sink`` (small chunks, so a cut shows part of the body)."""
    async with client.stream_content(video_id, chunk_size=1024) as (_, chunks):
        async for chunk in chunks:
            sink += chunk


async def test_failed_download_then_retry_download(sim: RunningSim) -> None:
    client = VideosClient(sim.base_url, SecretStr(API_KEY))
    job = await client.create(prompt="cut", model="sora-2", seconds="4", size="720x1280")
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        await wait_terminal(http, job.id)
        full = (await http.get(f"/videos/{job.id}/content", headers=AUTH)).content

    await push(
        sim, {"kind": "content_error", "status": 502}, {"kind": "content_cut", "cut_fraction": 0.5}
    )
    with pytest.raises(ProviderError) as bad_gateway:
        await download(client, job.id, bytearray())
    assert bad_gateway.value.status == 502
    assert bad_gateway.value.transient

    received = bytearray()
    with pytest.raises(ProviderError) as cut:
        await download(client, job.id, received)
    assert cut.value.transient
    assert 0 < len(received) < len(full)
    assert bytes(received) == full[: len(received)]

    # Retried as a download (never as a new job): a Range request resumes it.
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        rest = await http.get(
            f"/videos/{job.id}/content", headers={**AUTH, "Range": f"bytes={len(received)}-"}
        )
    assert rest.status_code == 206
    assert bytes(received) + rest.content == full
    assert (await jobs(sim))["jobs_created"] == 1
    await client.aclose()


async def test_cut_range_download(sim: RunningSim, http: httpx.AsyncClient) -> None:
    video = (await http.post("/videos", headers=AUTH, json={"prompt": "p"})).json()
    await wait_terminal(http, video["id"])
    await push(sim, {"kind": "content_cut", "cut_after_bytes": 50})
    with pytest.raises(httpx.RemoteProtocolError):
        await http.get(f"/videos/{video['id']}/content", headers={**AUTH, "Range": "bytes=100-"})


async def test_rate_decisions_repeat_under_the_seed(sim_factory: SimFactory) -> None:
    async def pattern(seed: int) -> list[int]:
        faults = {"rate_limit_rate": 0.3, "server_error_rate": 0.2, "retry_after_s": 0}
        async with (
            sim_factory(seed=seed, faults=faults) as running,
            httpx.AsyncClient(base_url=running.base_url) as http,
        ):
            return [(await http.get("/videos", headers=AUTH)).status_code for _ in range(30)]

    first = await pattern(11)
    assert set(first) == {200, 429, 500}
    assert await pattern(11) == first
    assert await pattern(12) != first


async def test_rpm_limit_and_runtime_config(sim: RunningSim, http: httpx.AsyncClient) -> None:
    async with sim.admin() as admin:
        reply = await admin.put("/_sim/faults/config", json={"rate_limit_rpm": 3})
        assert reply.json()["rate_limit_rpm"] == 3
        codes = [(await http.get("/videos", headers=AUTH)).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        state = (await admin.get("/_sim/faults")).json()
        assert state["injected"] == {"rate_limit": 1}
        assert (await admin.put("/_sim/faults/config", json={"bogus": 1})).status_code == 400
        await admin.delete("/_sim/faults")
        assert (await http.get("/videos", headers=AUTH)).status_code == 200


class Receiver:
    """A webhook endpoint that fails the first ``fail_first`` deliveries with a 500."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.received: list[tuple[bytes, dict[str, str]]] = []
        self.arrived = asyncio.Event()
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> Response:
        self.received.append((await request.body(), dict(request.headers)))
        if len(self.received) <= self.fail_first:
            return Response(status_code=500)
        self.arrived.set()
        return Response(status_code=204)


async def test_webhooks_are_signed_and_retried(sim_factory: SimFactory) -> None:
    receiver = Receiver(fail_first=1)
    async with (
        serve_app(receiver.app) as hooks,
        sim_factory(
            webhook_urls=[f"{hooks}/hook"],
            webhook_secret=SecretStr(WEBHOOK_SECRET),
            webhook_backoff_s=0.05,
        ) as running,
    ):
        async with httpx.AsyncClient(base_url=running.base_url) as http:
            video = (await http.post("/videos", headers=AUTH, json={"prompt": "hook me"})).json()
            await asyncio.wait_for(receiver.arrived.wait(), 10)

        assert len(receiver.received) == 2
        (first_body, first_headers), (body, headers) = receiver.received
        assert first_body == body
        assert first_headers["webhook-id"] == headers["webhook-id"]  # same event, retried
        verifier = openai.OpenAI(api_key="unused", webhook_secret=WEBHOOK_SECRET)
        verifier.webhooks.verify_signature(body, headers)
        event = json.loads(body)
        assert event["id"].startswith("evt_")
        assert event["object"] == "event"
        assert event["type"] == "video.completed"
        assert event["data"] == {"id": video["id"]}
        with pytest.raises(openai.InvalidWebhookSignatureError):
            verifier.webhooks.verify_signature(body + b" ", headers)

        async with running.admin() as admin:
            log = (await admin.get("/_sim/webhooks")).json()["deliveries"]
        assert log[0]["attempts"] == [500, 204]
        assert log[0]["delivered"] is True


async def test_failed_job_sends_video_failed(sim_factory: SimFactory) -> None:
    receiver = Receiver()
    async with sim_factory() as running, serve_app(receiver.app) as hooks:
        async with running.admin() as admin:
            reply = await admin.put(
                "/_sim/webhooks", json={"urls": [f"{hooks}/hook"], "secret": WEBHOOK_SECRET}
            )
            assert reply.json()["enabled"] is True
        await push(running, {"kind": "job_failed"})
        async with httpx.AsyncClient(base_url=running.base_url) as http:
            video = (await http.post("/videos", headers=AUTH, json={"prompt": "bad"})).json()
            await asyncio.wait_for(receiver.arrived.wait(), 10)
        body, headers = receiver.received[0]
        verifier = openai.OpenAI(api_key="unused", webhook_secret=WEBHOOK_SECRET)
        verifier.webhooks.verify_signature(body, headers)
        event = json.loads(body)
        assert event["type"] == "video.failed"
        assert event["data"] == {"id": video["id"]}


async def test_admin_hash_matches_download(sim: RunningSim, http: httpx.AsyncClient) -> None:
    video = (await http.post("/videos", headers=AUTH, json={"prompt": "hash"})).json()
    await wait_terminal(http, video["id"])
    for variant in ("video", "thumbnail", "spritesheet"):
        body = (
            await http.get(
                f"/videos/{video['id']}/content", headers=AUTH, params={"variant": variant}
            )
        ).content
        async with sim.admin() as admin:
            served = (
                await admin.get(f"/_sim/jobs/{video['id']}/sha256", params={"variant": variant})
            ).json()
        assert served == {
            "id": video["id"],
            "variant": variant,
            "sha256": hashlib.sha256(body).hexdigest(),
            "size": len(body),
        }
