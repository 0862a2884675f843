"""The simulator's Gemini (Veo) API seen on the wire: operations, files, validation, the
Google error envelope, faults and webhooks."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from typing import Any

import av
import httpx
from conftest import RunningSim, SimFactory, serve_app
from providersim_helpers import API_KEY, HookReceiver, png
from pydantic import SecretStr
from standardwebhooks import Webhook

KEY = {"x-goog-api-key": API_KEY}
MODEL = "veo-3.1-fast-generate-preview"


def api(sim: RunningSim) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"{sim.root_url}/v1beta", timeout=10)


def image(size: tuple[int, int] = (64, 48)) -> dict[str, Any]:
    return {"inlineData": {"mimeType": "image/png",
                           "data": base64.b64encode(png(size)).decode()}}


async def start(http: httpx.AsyncClient, instance: dict[str, Any] | None = None,
                model: str = MODEL, **extra: Any) -> httpx.Response:
    body = {"instances": [instance or {"prompt": "a lighthouse at dusk"}],
            "parameters": {"durationSeconds": 4}, **extra}
    return await http.post(f"/models/{model}:predictLongRunning", headers=KEY, json=body)


async def wait_done(http: httpx.AsyncClient, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        operation: dict[str, Any] = (await http.get(f"/{name}", headers=KEY)).json()
        if operation.get("done"):
            return operation
        assert "done" not in operation and set(operation) == {"name"}
        assert time.monotonic() < deadline, operation
        await asyncio.sleep(0.05)


async def test_text_to_video_download(sim: RunningSim) -> None:
    async with api(sim) as http:
        reply = await start(http)
        assert reply.status_code == 200
        name = reply.json()["name"]
        assert name.startswith(f"models/{MODEL}/operations/")
        done = await wait_done(http, name)
        samples = done["response"]["generateVideoResponse"]["generatedSamples"]
        uri = samples[0]["video"]["uri"]
        assert uri.startswith(f"{sim.root_url}/v1beta/files/") and uri.endswith(
            ":download?alt=media")
        assert (await http.get(uri)).status_code == 403  # no key
        by_query = await http.get(uri + f"&key={API_KEY}")
        assert by_query.status_code == 200 and by_query.headers["content-type"] == "video/mp4"
        with av.open(io.BytesIO(by_query.content)) as container:
            assert (container.streams.video[0].width, container.streams.video[0].height) == (
                1280, 720)
        health = await http.get(f"/models/{MODEL}", headers=KEY)
        assert health.json()["name"] == f"models/{MODEL}"


async def test_validation_rules(sim: RunningSim) -> None:
    async with api(sim) as http:
        async def refused(reply: httpx.Response, needle: str) -> None:
            assert reply.status_code == 400, reply.text
            error = reply.json()["error"]
            assert error["status"] == "INVALID_ARGUMENT" and error["code"] == 400
            assert needle in error["message"], error

        async def params(parameters: dict[str, Any], model: str = MODEL) -> httpx.Response:
            return await http.post(
                f"/models/{model}:predictLongRunning", headers=KEY,
                json={"instances": [{"prompt": "p"}], "parameters": parameters})

        await refused(await params({"resolution": "1080p", "durationSeconds": 4}), "requires")
        await refused(await params({"resolution": "4k", "durationSeconds": 8},
                                   "veo-3.1-lite-generate-preview"), "Unsupported resolution")
        await refused(await params({"durationSeconds": 5}), "durationSeconds")
        await refused(await params({"generateAudio": True}), "not supported in Gemini API")
        await refused(await params({"personGeneration": "allow_adult"}), "allow_adult")
        await refused(await params({"sampleCount": 2}), "sampleCount")
        await refused(await params({"bogus": 1}), 'Unknown name "bogus"')
        assert (await params({"durationSeconds": "8", "resolution": "1080p"})).status_code == 200
        with_refs = {"prompt": "p", "image": image(),
                     "referenceImages": [{"image": image(), "referenceType": "asset"}]}
        await refused(await start(http, with_refs), "cannot be used together")
        asset = {"image": image(), "referenceType": "asset"}
        four = {"prompt": "p", "referenceImages": [asset] * 4}
        await refused(await start(http, four), "At most 3")
        not_image = {"prompt": "p", "image": {"bytesBase64Encoded": "aGVsbG8=",
                                              "mimeType": "image/png"}}
        await refused(await start(http, not_image), "not a valid image")
        await refused(await start(http, {"prompt": "p", "lastFrame": image()}), "only supported")
        await refused(await start(http, model="veo-3.1-lite-generate-preview", instance={
            "prompt": "p", "referenceImages": [{"image": image()}]}), "aren't supported")
        unknown = await start(http, model="veo-9")
        assert unknown.status_code == 404 and unknown.json()["error"]["status"] == "NOT_FOUND"
        retired = await start(http, model="veo-3.0-generate-preview")
        assert retired.status_code == 404 and "no longer available" in retired.text
        jobs = (await sim.admin().get("/_sim/jobs?protocol=gemini")).json()
        assert jobs["jobs_created"] == 1


async def test_auth_errors(sim: RunningSim) -> None:
    async with api(sim) as http:
        body = {"instances": [{"prompt": "p"}]}
        missing = await http.post(f"/models/{MODEL}:predictLongRunning", json=body)
        assert missing.status_code == 403
        assert missing.json()["error"]["status"] == "PERMISSION_DENIED"
        wrong = await http.post(f"/models/{MODEL}:predictLongRunning", json=body,
                                headers={"x-goog-api-key": "nope"})
        assert wrong.status_code == 400
        assert wrong.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"


async def test_outcomes_from_faults(sim: RunningSim) -> None:
    async with api(sim) as http, sim.admin() as admin:
        await admin.post("/_sim/faults", json={"rules": [
            {"kind": "rate_limit", "protocol": "gemini", "route": "create", "retry_after_s": 19},
            {"kind": "job_failed", "protocol": "gemini"},
            {"kind": "job_failed", "protocol": "gemini", "code": "INTERNAL",
             "message": "Video generation failed due to an internal error."},
            {"kind": "job_expired", "protocol": "gemini"},
        ]})
        limited = await start(http)
        assert limited.status_code == 429
        error = limited.json()["error"]
        assert error["status"] == "RESOURCE_EXHAUSTED"
        retry = [d for d in error["details"] if d["@type"].endswith("RetryInfo")]
        assert retry == [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                          "retryDelay": "19s"}]
        names = [(await start(http)).json()["name"] for _ in range(3)]
        blocked, failed, expired = [await wait_done(http, name) for name in names]
        rai = blocked["response"]["generateVideoResponse"]
        assert rai["raiMediaFilteredCount"] == 1 and "generatedSamples" not in rai
        assert failed["error"] == {"code": 13,
                                   "message": "Video generation failed due to an internal error."}
        uri = expired["response"]["generateVideoResponse"]["generatedSamples"][0]["video"]["uri"]
        gone = await http.get(uri, headers=KEY)
        assert gone.status_code == 404 and gone.json()["error"]["status"] == "NOT_FOUND"
        counts = (await admin.get("/_sim/jobs")).json()["by_protocol"]["gemini"]
        assert counts == {"create_calls": 4, "jobs_created": 3, "calls": counts["calls"]}


async def test_retention_and_redirect(sim_factory: SimFactory) -> None:
    async with sim_factory(gemini_content_ttl_s=1.0, content_redirect=True) as running, api(
        running
    ) as http:
        done = await wait_done(http, (await start(http)).json()["name"])
        uri = done["response"]["generateVideoResponse"]["generatedSamples"][0]["video"]["uri"]
        redirect = await http.get(uri, headers=KEY)
        assert redirect.status_code == 302
        followed = await http.get(redirect.headers["location"])  # signed: no key needed
        assert followed.status_code == 200 and followed.content[4:8] == b"ftyp"
        await asyncio.sleep(1.1)
        assert (await http.get(uri, headers=KEY)).status_code == 404


async def test_static_and_per_request_webhooks(sim_factory: SimFactory) -> None:
    receiver = HookReceiver()
    async with (
        serve_app(receiver.app) as hooks,
        sim_factory(gemini_webhook_secret=SecretStr("whsec_" + base64.b64encode(
            b"k" * 32).decode())) as running,
        api(running) as http,
    ):
        created = await http.post("/webhooks", headers=KEY, json={
            "name": "MyHook", "uri": f"{hooks}/hook", "subscribed_events": ["video.generated"]})
        hook = created.json()
        assert hook["name"] == f"webhooks/{hook['id']}" and hook["state"] == "enabled"
        secret = hook["new_signing_secret"]
        listed = (await http.get("/webhooks", headers=KEY)).json()["webhooks"]
        assert [h["id"] for h in listed] == [hook["id"]]
        assert "new_signing_secret" not in listed[0]

        static = (await start(http)).json()["name"]
        dynamic = (await start(http, webhookConfig={
            "uris": [f"{hooks}/hook"], "user_metadata": {"video_id": "v1"}})).json()["name"]
        received = await receiver.wait(2)
        events = {json.loads(body)["data"]["id"]: (body, headers) for body, headers in received}
        body, headers = events[static]
        Webhook(secret).verify(body, headers)
        event = json.loads(body)
        assert event["type"] == "video.generated" and event["version"] == "v1"
        assert event["data"]["file_name"].startswith("files/")
        body, headers = events[dynamic]
        Webhook(running.sim.settings.gemini_webhook_secret.get_secret_value()).verify(  # type: ignore[union-attr]
            body, headers)
        assert json.loads(body)["data"]["user_metadata"] == {"video_id": "v1"}

        deleted = await http.delete(f"/webhooks/{hook['id']}", headers=KEY)
        assert deleted.status_code == 200
        assert (await http.get("/webhooks", headers=KEY)).json()["webhooks"] == []
