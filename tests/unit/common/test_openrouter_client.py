"""The OpenRouter video client against the documented shapes (an in-memory ``httpx2``
transport answers as OpenRouter's API does): create, every job status, the error envelope and
its retry hints, polling URLs, models, the streamed download, and the webhook signature."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx2
import pytest
from pydantic import SecretStr
from reelvault_common.providers.errors import ProviderError
from reelvault_common.providers.openrouter_videos import (
    FrameImage,
    OpenRouterCreateRequest,
    OpenRouterJob,
    OpenRouterVideosClient,
    OpenRouterWebhookEvent,
    data_url,
    openrouter_signature,
    verify_openrouter_signature,
)
from reelvault_common.providers.webhook_signatures import WebhookSignatureError

from tests.support.mock_http import CutShortBody, Handler, Recorder, read_all

BASE = "https://openrouter.ai/api/v1"
KEY = "sk-or-v1-test"
JOB_ID = "Nxff2D1Z6w4Zk9iNuZam"
POLLING_URL = f"{BASE}/videos/{JOB_ID}"
NOW = 1_777_032_000.0


def client(handler: Handler, *, app_url: str | None = None, app_title: str | None = None
           ) -> tuple[OpenRouterVideosClient, Recorder]:
    recorder = Recorder(handler)
    return OpenRouterVideosClient(
        BASE, api_key=SecretStr(KEY), transport=httpx2.MockTransport(recorder),
        clock=lambda: NOW, app_url=app_url, app_title=app_title), recorder


def job(status: str, **fields: object) -> dict[str, object]:
    return {"id": JOB_ID, "polling_url": POLLING_URL, "status": status, **fields}


def envelope(code: int, message: str, error_type: str | None = None) -> dict[str, object]:
    error: dict[str, object] = {"code": code, "message": message}
    if error_type is not None:
        error["metadata"] = {"error_type": error_type}
    return {"error": error, "user_id": None}


# The guide's worked example.
REQUEST = OpenRouterCreateRequest(
    model="google/veo-3.1",
    prompt="A paper boat drifting down a rain-slicked gutter at night",
    duration=8,
    resolution="1080p",
    aspect_ratio="16:9",
    generate_audio=True,
    seed=42,
    frame_images=(FrameImage("https://example.com/first.png", "first_frame"),),
    callback_url="https://example.com/hooks/openrouter-video",
)


async def test_create_posts_the_documented_body_once_and_reads_the_202() -> None:
    api, seen = client(lambda _: httpx2.Response(
        202, json={"id": JOB_ID, "polling_url": POLLING_URL, "status": "pending"}))
    created = await api.create(REQUEST)
    await api.aclose()
    assert created.id == JOB_ID
    assert created.status == "pending"
    assert not created.is_terminal
    (request,) = seen.requests
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/videos"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {
        "model": "google/veo-3.1",
        "prompt": "A paper boat drifting down a rain-slicked gutter at night",
        "duration": 8, "resolution": "1080p", "aspect_ratio": "16:9",
        "generate_audio": True, "seed": 42,
        "frame_images": [{"type": "image_url", "image_url": {"url": "https://example.com/first.png"},
                          "frame_type": "first_frame"}],
        "callback_url": "https://example.com/hooks/openrouter-video",
    }


async def test_create_sends_only_what_is_set_and_reference_images_as_image_urls() -> None:
    api, seen = client(lambda _: httpx2.Response(202, json=job("pending")))
    image = data_url(b"\x89PNG\r\n", "image/png")
    await api.create(OpenRouterCreateRequest(
        model="bytedance/seedance-2.0", prompt="p", duration=5, size="1280x720",
        input_references=(image, "https://example.com/b.png")))
    await api.aclose()
    assert json.loads(seen.requests[0].content) == {
        "model": "bytedance/seedance-2.0", "prompt": "p", "duration": 5, "size": "1280x720",
        "input_references": [{"type": "image_url", "image_url": {"url": image}},
                             {"type": "image_url", "image_url": {"url": "https://example.com/b.png"}}],
    }
    assert image == "data:image/png;base64,iVBORw0K"


def test_a_data_url_is_for_images_only() -> None:
    with pytest.raises(ValueError, match="image"):
        data_url(b"x", "text/plain")


async def test_attribution_headers_are_sent_when_configured() -> None:
    api, seen = client(lambda _: httpx2.Response(200, json={"data": []}),
                       app_url="https://reelvault.example", app_title="reelvault")
    assert await api.list_models() == []
    await api.aclose()
    assert seen.requests[0].headers["http-referer"] == "https://reelvault.example"
    assert seen.requests[0].headers["x-openrouter-title"] == "reelvault"


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_a_5xx_on_create_is_raised_after_exactly_one_request(status: int) -> None:
    api, seen = client(lambda _: httpx2.Response(
        status, json=envelope(status, "Internal Server Error", "server")))
    with pytest.raises(ProviderError) as raised:
        await api.create(REQUEST)
    await api.aclose()
    assert raised.value.status == status
    assert raised.value.transient
    assert len(seen.requests) == 1


async def test_a_transport_failure_on_create_is_raised_after_exactly_one_request() -> None:
    def drop(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("timed out", request=request)

    api, seen = client(drop)
    with pytest.raises(ProviderError) as raised:
        await api.create(REQUEST)
    await api.aclose()
    assert raised.value.status is None
    assert "ReadTimeout" in raised.value.message
    assert len(seen.requests) == 1


async def test_create_does_not_follow_a_redirect_with_a_second_post() -> None:
    api, seen = client(lambda _: httpx2.Response(
        307, headers={"location": f"{BASE}/videos2"}))
    with pytest.raises(ProviderError) as raised:
        await api.create(REQUEST)
    await api.aclose()
    assert raised.value.status == 307
    assert len(seen.requests) == 1


@pytest.mark.parametrize(
    ("status", "terminal"),
    [("pending", False), ("in_progress", False), ("completed", True), ("failed", True),
     ("cancelled", True), ("expired", True)],
)
async def test_every_documented_status_decodes(status: str, terminal: bool) -> None:
    api, _ = client(lambda _: httpx2.Response(200, json=job(status)))
    polled, wait = await api.retrieve(JOB_ID)
    await api.aclose()
    assert polled.status == status
    assert polled.known_status == status
    assert polled.is_terminal is terminal
    assert wait is None


async def test_an_unknown_status_and_unknown_fields_decode_as_still_running() -> None:
    api, _ = client(lambda _: httpx2.Response(
        200, json=job("upscaling", progress=40, created_at=1, brand_new={"x": 1})))
    polled, _ = await api.retrieve(JOB_ID)
    await api.aclose()
    assert polled.status == "upscaling"
    assert polled.known_status is None
    assert not polled.is_terminal


async def test_a_completed_job_carries_its_urls_and_cost() -> None:
    body = job("completed", generation_id="gen-1777032000-AbCdEf",
               unsigned_urls=[f"{BASE}/videos/{JOB_ID}/content?index=0"],
               usage={"cost": 4.0, "is_byok": False})
    api, seen = client(lambda _: httpx2.Response(200, json=body, headers={"retry-after": "12"}))
    polled, wait = await api.retrieve(JOB_ID)
    await api.aclose()
    assert str(seen.requests[0].url) == POLLING_URL
    assert polled.unsigned_urls == [api.content_url(JOB_ID, 0)]
    assert polled.urls == []
    assert polled.cost_usd == Decimal("4.0")
    assert polled.generation_id == "gen-1777032000-AbCdEf"
    assert wait == 12.0


@pytest.mark.parametrize(
    ("status", "error"),
    [("failed", "Content policy violation"), ("cancelled", "Job was cancelled"),
     ("expired", "Job exceeded maximum time to live")],
)
def test_an_unsuccessful_job_says_why(status: str, error: str) -> None:
    polled = OpenRouterJob.model_validate(job(status, error=error))
    assert polled.is_terminal
    assert polled.error == error
    assert polled.cost_usd is None


def test_an_error_object_is_read_as_its_message() -> None:
    polled = OpenRouterJob.model_validate(
        job("failed", error={"code": "moderation", "message": "Blocked"}, unsigned_urls=None))
    assert polled.error == "Blocked"
    assert polled.unsigned_urls == []


@pytest.mark.parametrize(
    ("status", "body", "code", "message"),
    [
        (401, {"error": {"message": "Missing Authentication header", "code": 401}}, "401",
         "Missing Authentication header"),
        (402, envelope(402, "Insufficient credits. Add more using https://openrouter.ai/credits"),
         "402", "Insufficient credits. Add more using https://openrouter.ai/credits"),
        (404, envelope(404, "Model not found", "not_found"), "not_found", "Model not found"),
        (400, envelope(400, "`duration` must be -1", "invalid_request"), "invalid_request",
         "`duration` must be -1"),
    ],
)
async def test_error_envelopes_become_provider_errors(
    status: int, body: dict[str, object], code: str, message: str
) -> None:
    api, _ = client(lambda _: httpx2.Response(status, json=body))
    with pytest.raises(ProviderError) as raised:
        await api.create(REQUEST)
    await api.aclose()
    assert (raised.value.status, raised.value.code, raised.value.message) == (
        status, code, message)
    assert not raised.value.transient
    assert raised.value.retry_after_s is None


async def test_a_429_carries_retry_after() -> None:
    api, _ = client(lambda _: httpx2.Response(
        429, json=envelope(429, "Rate limit exceeded", "rate_limit_exceeded"),
        headers={"retry-after": "20", "x-ratelimit-reset": str(int(NOW + 90) * 1000)}))
    with pytest.raises(ProviderError) as raised:
        await api.retrieve(JOB_ID)
    await api.aclose()
    assert raised.value.status == 429
    assert raised.value.code == "rate_limit_exceeded"
    assert raised.value.transient
    assert raised.value.retry_after_s == 20.0  # Retry-After wins over the reset time


@pytest.mark.parametrize(
    ("reset", "wait"),
    [(str(int(NOW + 45) * 1000), 45.0), (str(int(NOW + 30)), 30.0), ("15", 15.0),
     (str(int(NOW - 10) * 1000), 0.0), ("soon", None)],
)
async def test_a_429_without_retry_after_waits_for_the_rate_limit_reset(
    reset: str, wait: float | None
) -> None:
    api, _ = client(lambda _: httpx2.Response(
        429, json=envelope(429, "Rate limit exceeded"),
        headers={"x-ratelimit-limit": "20", "x-ratelimit-remaining": "0",
                 "x-ratelimit-reset": reset}))
    with pytest.raises(ProviderError) as raised:
        await api.retrieve(JOB_ID)
    await api.aclose()
    assert raised.value.retry_after_s == wait


async def test_a_reply_that_is_not_json_keeps_its_text() -> None:
    api, _ = client(lambda _: httpx2.Response(503, text="upstream connect error"))
    with pytest.raises(ProviderError) as raised:
        await api.retrieve(JOB_ID)
    await api.aclose()
    assert (raised.value.status, raised.value.code) == (503, None)
    assert raised.value.message == "upstream connect error"


async def test_job_ids_stay_one_path_segment() -> None:
    api, seen = client(lambda _: httpx2.Response(200, json=job("pending")))
    await api.retrieve("a/../b")
    assert api.content_url("a/b", 1) == f"{BASE}/videos/a%2Fb/content?index=1"
    with pytest.raises(ValueError, match="empty"):
        await api.retrieve("")
    await api.aclose()
    assert seen.requests[0].url.raw_path == b"/api/v1/videos/a%2F..%2Fb"
    assert len(seen.requests) == 1


@pytest.mark.parametrize(
    "polling_url",
    [f"/api/v1/videos/{JOB_ID}", f"https://openrouter.ai/api/v1/videos/{JOB_ID}"],
)
async def test_relative_and_absolute_polling_urls_resolve_alike(polling_url: str) -> None:
    api, _ = client(lambda _: httpx2.Response(202, json=job("pending", polling_url=polling_url)))
    created = await api.create(REQUEST)
    await api.aclose()
    assert created.polling_url is not None
    assert api.resolve_polling_url(created.polling_url) == POLLING_URL


async def test_models_list_decodes_the_documented_entry() -> None:
    entry = {
        "id": "google/veo-3.1", "canonical_slug": "google/veo-3.1", "name": "Google: Veo 3.1",
        "created": 1719792000, "supported_resolutions": ["720p", "1080p"],
        "supported_aspect_ratios": ["16:9", "9:16"], "supported_sizes": ["1280x720", "1920x1080"],
        "supported_durations": [4, 6, 8], "supported_frame_images": ["first_frame", "last_frame"],
        "generate_audio": True, "seed": True,
        "pricing_skus": {"per-video-second": "0.50", "per-video-second-1080p": "0.75"},
        "allowed_passthrough_parameters": ["negativePrompt", "enhancePrompt"],
        "upscale_factor": None, "creativity": None, "hugging_face_id": None,
    }
    sparse = {"id": "alibaba/wan-2.7", "canonical_slug": None, "name": "Wan", "created": 1,
              "supported_resolutions": None, "supported_aspect_ratios": None,
              "supported_sizes": None, "supported_durations": [2, 10],
              "supported_frame_images": None, "generate_audio": None, "seed": None,
              "pricing_skus": {"generate": 0.3}, "allowed_passthrough_parameters": None}
    api, seen = client(lambda _: httpx2.Response(200, json={"data": [entry, sparse]}))
    veo, wan = await api.list_models()
    await api.aclose()
    assert str(seen.requests[0].url) == f"{BASE}/videos/models"
    assert veo.supported_durations == [4, 6, 8]
    assert veo.supported_frame_images == ["first_frame", "last_frame"]
    assert veo.price("per-video-second-1080p") == Decimal("0.75")
    assert veo.price("generate") is None
    assert wan.supported_resolutions == [] and wan.supported_frame_images == []
    assert wan.price("generate") == Decimal("0.3")


async def test_download_sends_the_key_and_index_and_streams_the_bytes() -> None:
    video = bytes(range(256)) * 64
    api, seen = client(lambda _: httpx2.Response(
        200, headers={"content-type": "video/mp4"}, content=video))
    async with api.stream_content(JOB_ID, 1, chunk_size=1000) as (headers, chunks):
        got = await read_all(chunks)
    await api.aclose()
    assert got == video
    assert headers["content-type"] == "video/mp4"
    (request,) = seen.requests
    assert str(request.url) == f"{BASE}/videos/{JOB_ID}/content?index=1"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["accept"] == "video/mp4"


async def test_download_follows_redirects_without_taking_the_key_elsewhere() -> None:
    def answer(request: httpx2.Request) -> httpx2.Response:
        if request.url.host == "openrouter.ai":
            return httpx2.Response(302, headers={"location": "https://cdn.example/v.mp4?sig=1"})
        return httpx2.Response(200, content=b"mp4-bytes")

    api, seen = client(answer)
    async with api.stream_content(JOB_ID) as (_, chunks):
        assert await read_all(chunks) == b"mp4-bytes"
    await api.aclose()
    first, second = seen.requests
    assert first.headers["authorization"] == f"Bearer {KEY}"
    assert str(second.url) == "https://cdn.example/v.mp4?sig=1"
    assert "authorization" not in second.headers


async def test_a_download_cut_short_is_a_transient_error() -> None:
    api, _ = client(lambda _: httpx2.Response(
        200, stream=CutShortBody([b"a" * 100, b"b" * 100])))
    received: list[bytes] = []

    async def download() -> None:
        async with api.stream_content(JOB_ID, chunk_size=100) as (_, chunks):
            async for chunk in chunks:
                received.append(chunk)

    with pytest.raises(ProviderError) as raised:
        await download()
    await api.aclose()
    assert raised.value.transient and raised.value.status is None
    assert "broke off" in raised.value.message
    assert b"".join(received) == b"a" * 100 + b"b" * 100


@pytest.mark.parametrize(
    ("status", "body"),
    [(404, envelope(404, "Video not found", "not_found")),
     (400, envelope(400, "Video is not ready")),
     (502, {"error": {"code": 502, "message": "Provider returned error"}})],
)
async def test_a_refused_download_raises_the_envelope(status: int, body: dict[str, object]) -> None:
    api, _ = client(lambda _: httpx2.Response(status, json=body))
    with pytest.raises(ProviderError) as raised:
        async with api.stream_content(JOB_ID):
            pass
    await api.aclose()
    assert raised.value.status == status
    assert raised.value.message == body["error"]["message"]  # type: ignore[index]


# The signature rule's test vector.
SECRET = "dev_secret"
TIMESTAMP = "1777032000"
BODY = (b'{"type":"video.generation.completed","created_at":"2026-04-24T12:00:00.000Z","data":'
        b'{"id":"job_test","status":"completed","unsigned_urls":'
        b'["https://openrouter.ai/api/v1/videos/job_test/content?index=0"]}}')
SIGNATURE = "580b33f49a571e757a1647067147cddf310afcc755f5b9ac8e25dbd5420e4a14"


def test_the_webhook_test_vector_signs_and_verifies() -> None:
    assert openrouter_signature(SECRET, TIMESTAMP, BODY) == SIGNATURE
    verify_openrouter_signature(SECRET, f"t={TIMESTAMP},v1={SIGNATURE}", BODY, now=NOW)
    event = OpenRouterWebhookEvent.model_validate_json(BODY)
    assert (event.type, event.job_id, event.is_terminal) == (
        "video.generation.completed", "job_test", True)
    assert event.data.unsigned_urls == [
        "https://openrouter.ai/api/v1/videos/job_test/content?index=0"]


def test_any_of_several_v1_values_may_match_in_any_case() -> None:
    header = f"t={TIMESTAMP}, v1={'0' * 64}, v1={SIGNATURE.upper()}"
    verify_openrouter_signature(SECRET, header, BODY, now=NOW)


@pytest.mark.parametrize(
    ("secret", "body"),
    [(SECRET, BODY + b" "), (SECRET, BODY.replace(b"job_test", b"job_tesu")),
     ("other_secret", BODY)],
)
def test_a_tampered_body_or_wrong_secret_is_refused(secret: str, body: bytes) -> None:
    with pytest.raises(WebhookSignatureError) as refused:
        verify_openrouter_signature(secret, f"t={TIMESTAMP},v1={SIGNATURE}", body, now=NOW)
    assert refused.value.status == 401


@pytest.mark.parametrize("skew", [-301.0, 301.0])
def test_a_timestamp_outside_the_tolerance_is_refused(skew: float) -> None:
    with pytest.raises(WebhookSignatureError, match="tolerance") as refused:
        verify_openrouter_signature(SECRET, f"t={TIMESTAMP},v1={SIGNATURE}", BODY,
                                    now=NOW + skew)
    assert refused.value.status == 401
    verify_openrouter_signature(SECRET, f"t={TIMESTAMP},v1={SIGNATURE}", BODY,
                                now=NOW + skew, tolerance_s=400)


@pytest.mark.parametrize(
    "header",
    [None, "", f"v1={SIGNATURE}", f"t={TIMESTAMP}", f"t=soon,v1={SIGNATURE}",
     f"t={TIMESTAMP},t={TIMESTAMP},v1={SIGNATURE}", "garbage"],
)
def test_a_malformed_signature_header_is_refused_as_bad_request(header: str | None) -> None:
    with pytest.raises(WebhookSignatureError) as refused:
        verify_openrouter_signature(SECRET, header, BODY, now=NOW)
    assert refused.value.status == 400


def test_a_failure_webhook_with_early_nulls_decodes() -> None:
    event = OpenRouterWebhookEvent.model_validate_json(json.dumps({
        "type": "video.generation.failed", "created_at": "2026-04-24T12:00:00.000Z",
        "data": {"id": "abc123", "status": "failed", "generation_id": None, "model": None,
                 "error": "Content policy violation", "extra": 1}}))
    assert event.data.status == "failed" and event.is_terminal
    assert event.data.error == "Content policy violation"
    assert event.data.model is None and event.data.usage is None
