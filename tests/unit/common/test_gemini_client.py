"""The Gemini (Veo) client against the documented shapes (an in-memory ``httpx2`` transport
answers as the Gemini API does): create, every operation outcome, Google's error envelope and
its retry hints, the file download and its redirects, and the webhook envelope and signature."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import httpx2
import pytest
from pydantic import SecretStr
from reelvault_common.providers.errors import ProviderError
from reelvault_common.providers.gemini_veo import (
    GeminiOperation,
    GeminiVeoClient,
    VeoImage,
    VeoWebhookEvent,
    file_id_of,
    verify_gemini_webhook,
)
from reelvault_common.providers.webhook_signatures import WebhookSignatureError
from standardwebhooks import Webhook

from tests.support.mock_http import CutShortBody, Handler, Recorder, read_all

BASE = "https://generativelanguage.googleapis.com"
KEY = "AIza-test-key"
MODEL = "veo-3.1-fast-generate-preview"
OPERATION = f"models/{MODEL}/operations/vz341u0pmdlc"
VIDEO_URI = f"{BASE}/v1beta/files/q8w2e4r6t8y0:download?alt=media"
DOWNLOAD = f"{BASE}/v1beta/files/q8w2e4r6t8y0:download?alt=media"


def client(handler: Handler, base: str = BASE) -> tuple[GeminiVeoClient, Recorder]:
    recorder = Recorder(handler)
    return GeminiVeoClient(base, api_key=SecretStr(KEY),
                           transport=httpx2.MockTransport(recorder)), recorder


def google_error(code: int, status: str, message: str, *details: dict[str, object]
                 ) -> dict[str, object]:
    error: dict[str, object] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = list(details)
    return {"error": error}


PNG = b"\x89PNG\r\n\x1a\nfirst"
LAST = b"\x89PNG\r\n\x1a\nlast"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_create_posts_the_documented_body_once_with_the_key_header() -> None:
    prompt = "A close up of two people staring at a cryptic drawing on a wall."
    api, seen = client(lambda _: httpx2.Response(200, json={"name": OPERATION}))
    operation = await api.create(
        MODEL, prompt,
        aspect_ratio="16:9", resolution="720p", duration_seconds=6,
        negative_prompt="cartoon, low quality")
    await api.aclose()
    assert operation.name == OPERATION
    assert operation.outcome == "running"
    (request,) = seen.requests
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/v1beta/models/{MODEL}:predictLongRunning"
    assert request.headers["x-goog-api-key"] == KEY
    assert "authorization" not in request.headers
    assert json.loads(request.content) == {
        "instances": [{"prompt": prompt}],
        "parameters": {"aspectRatio": "16:9", "resolution": "720p", "durationSeconds": 6,
                       "negativePrompt": "cartoon, low quality"},
    }


async def test_first_and_last_frames_go_inline_as_the_sdk_sends_them() -> None:
    api, seen = client(lambda _: httpx2.Response(200, json={"name": OPERATION}))
    await api.create(MODEL, "The ghost vanishes", image=VeoImage(PNG, "image/png"),
                     last_frame=VeoImage(LAST, "image/png"), duration_seconds=8,
                     person_generation="allow_adult")
    await api.aclose()
    body = json.loads(seen.requests[0].content)
    assert body["instances"] == [{
        "prompt": "The ghost vanishes",
        "image": {"bytesBase64Encoded": b64(PNG), "mimeType": "image/png"},
        "lastFrame": {"bytesBase64Encoded": b64(LAST), "mimeType": "image/png"},
    }]
    assert body["parameters"] == {"durationSeconds": 8, "personGeneration": "allow_adult"}


async def test_reference_images_and_a_dynamic_webhook() -> None:
    api, seen = client(lambda _: httpx2.Response(200, json={"name": OPERATION}))
    await api.create("models/veo-3.1-generate-preview", "A woman walks through a lagoon",
                     reference_images=[VeoImage(PNG, "image/png"), VeoImage(LAST, "image/jpeg")],
                     duration_seconds=8, webhook_uris=["https://example.com/veo-hook"],
                     user_metadata={"video_id": "v-123"})
    await api.aclose()
    request = seen.requests[0]
    assert request.url.path == "/v1beta/models/veo-3.1-generate-preview:predictLongRunning"
    body = json.loads(request.content)
    assert body["instances"][0]["referenceImages"] == [
        {"image": {"bytesBase64Encoded": b64(PNG), "mimeType": "image/png"},
         "referenceType": "asset"},
        {"image": {"bytesBase64Encoded": b64(LAST), "mimeType": "image/jpeg"},
         "referenceType": "asset"},
    ]
    assert body["webhookConfig"] == {"uris": ["https://example.com/veo-hook"],
                                     "user_metadata": {"video_id": "v-123"}}


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"last_frame": VeoImage(LAST, "image/png")}, "first frame"),
        ({"image": VeoImage(PNG, "image/png"),
          "reference_images": [VeoImage(PNG, "image/png")]}, "reference images"),
        ({"reference_images": [VeoImage(PNG, "image/png")] * 4}, "at most 3"),
        ({"user_metadata": {"video_id": "v"}}, "webhook"),
    ],
)
async def test_invalid_combinations_are_refused_before_anything_is_sent(
    options: dict[str, object], match: str
) -> None:
    api, seen = client(lambda _: httpx2.Response(200, json={"name": OPERATION}))
    with pytest.raises(ValueError, match=match):
        await api.create(MODEL, "p", **options)  # type: ignore[arg-type]
    await api.aclose()
    assert seen.requests == []


@pytest.mark.parametrize("status", [500, 503])
async def test_a_5xx_on_create_is_raised_after_exactly_one_request(status: int) -> None:
    api, seen = client(lambda _: httpx2.Response(
        status, json=google_error(status, "INTERNAL", "Internal error encountered.")))
    with pytest.raises(ProviderError) as raised:
        await api.create(MODEL, "p", duration_seconds=8)
    await api.aclose()
    assert raised.value.status == status
    assert raised.value.transient
    assert len(seen.requests) == 1


async def test_a_transport_failure_on_create_is_raised_after_exactly_one_request() -> None:
    def drop(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.RemoteProtocolError("server disconnected", request=request)

    api, seen = client(drop)
    with pytest.raises(ProviderError) as raised:
        await api.create(MODEL, "p")
    await api.aclose()
    assert raised.value.status is None
    assert len(seen.requests) == 1


async def test_create_for_a_retired_model_is_a_404_not_found() -> None:
    api, seen = client(lambda _: httpx2.Response(404, json=google_error(
        404, "NOT_FOUND", f"models/{MODEL} is no longer available.")))
    with pytest.raises(ProviderError) as raised:
        await api.create(MODEL, "p")
    await api.aclose()
    assert (raised.value.status, raised.value.code) == (404, "NOT_FOUND")
    assert not raised.value.transient
    assert len(seen.requests) == 1


async def test_a_redirect_on_create_is_not_followed() -> None:
    api, seen = client(lambda _: httpx2.Response(307, headers={"location": "https://x.example/"}))
    with pytest.raises(ProviderError):
        await api.create(MODEL, "p")
    await api.aclose()
    assert len(seen.requests) == 1


def operation(**fields: object) -> dict[str, object]:
    return {"name": OPERATION, **fields}


SUCCESS = operation(done=True, response={
    "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse",
    "generateVideoResponse": {"generatedSamples": [{"video": {"uri": VIDEO_URI}}]}})
BLOCKED = operation(done=True, response={"generateVideoResponse": {
    "raiMediaFilteredCount": 1,
    "raiMediaFilteredReasons": ["Your prompt conflicted with our safety policies."]}})
FAILED = operation(done=True, error={
    "code": 13, "message": "Video generation failed due to an internal error."})


@pytest.mark.parametrize(
    ("body", "outcome", "uris", "reason"),
    [
        (operation(), "running", [], None),
        (operation(done=False, metadata={"progress": 10}), "running", [], None),
        (SUCCESS, "completed", [VIDEO_URI], None),
        (BLOCKED, "blocked", [], "Your prompt conflicted with our safety policies."),
        (FAILED, "failed", [], "Video generation failed due to an internal error."),
        (operation(done=True, response={"generateVideoResponse": {}}), "failed", [],
         "the operation finished without a video"),
        (operation(done=True, response={"generateVideoResponse": {"raiMediaFilteredCount": 1}}),
         "blocked", [], "blocked by the safety filters"),
    ],
)
async def test_every_operation_outcome(
    body: dict[str, object], outcome: str, uris: list[str], reason: str | None
) -> None:
    api, seen = client(lambda _: httpx2.Response(200, json=body))
    polled = await api.get_operation(OPERATION)
    await api.aclose()
    assert str(seen.requests[0].url) == f"{BASE}/v1beta/{OPERATION}"
    assert seen.requests[0].headers["x-goog-api-key"] == KEY
    assert polled.outcome == outcome
    assert polled.video_uris == uris
    assert polled.failure_reason == reason


def test_an_operation_error_names_its_rpc_code_and_unknown_fields_are_ignored() -> None:
    failed = GeminiOperation.model_validate(
        {**FAILED, "newField": 1, "error": {"code": 8, "message": "", "details": []}})
    assert failed.error is not None
    assert failed.error.status == "RESOURCE_EXHAUSTED"
    assert failed.failure_reason == "RESOURCE_EXHAUSTED"
    unknown = GeminiOperation.model_validate({**FAILED, "error": {"code": 99}}).error
    assert unknown is not None and unknown.status == "99"
    assert GeminiOperation.model_validate({"name": OPERATION, "done": None}).outcome == "running"


def test_snake_case_and_inline_videos_are_read_too() -> None:
    polled = GeminiOperation.model_validate(operation(done=True, response={
        "generate_video_response": {"generated_samples": [
            {"video": {"encodedVideo": b64(b"mp4"), "encoding": "video/mp4"}}]}}))
    assert polled.outcome == "completed"
    assert polled.video_uris == []
    assert polled.videos[0].encoding == "video/mp4"


@pytest.mark.parametrize("name", ["../../v1/secret", "models/x/operations/", "files/abc",
                                  "models/x/operations/a?alt=media", ""])
async def test_only_operation_names_are_polled(name: str) -> None:
    api, seen = client(lambda _: httpx2.Response(200, json=operation()))
    with pytest.raises(ValueError, match="operation name"):
        await api.get_operation(name)
    await api.aclose()
    assert seen.requests == []


@pytest.mark.parametrize(
    ("status", "body", "headers", "code", "kind", "retry_after"),
    [
        (400, google_error(400, "INVALID_ARGUMENT",
                           "API key not valid. Please pass a valid API key.",
                           {"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "API_KEY_INVALID", "domain": "googleapis.com"}),
         {}, "INVALID_ARGUMENT", "API_KEY_INVALID", None),
        (400, google_error(400, "FAILED_PRECONDITION", "User location is not supported."),
         {}, "FAILED_PRECONDITION", None, None),
        (403, google_error(403, "PERMISSION_DENIED", "Permission denied."), {},
         "PERMISSION_DENIED", None, None),
        (429, google_error(
            429, "RESOURCE_EXHAUSTED", "You exceeded your current quota...",
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
             "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel"}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "33s"}),
         {"retry-after": "5"}, "RESOURCE_EXHAUSTED", None, 33.0),
        (429, google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded."),
         {"retry-after": "7"}, "RESOURCE_EXHAUSTED", None, 7.0),
        (429, google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.",
                           {"@type": "type.googleapis.com/google.rpc.RetryInfo",
                            "retryDelay": "0.500s"}),
         {}, "RESOURCE_EXHAUSTED", None, 0.5),
        (503, google_error(503, "UNAVAILABLE", "The model is overloaded."), {},
         "UNAVAILABLE", None, None),
        (402, {"error": {"code": 402, "message": "Prepayment credits are depleted."}}, {},
         "402", None, None),
    ],
)
async def test_google_error_envelopes_become_provider_errors(
    status: int, body: dict[str, object], headers: dict[str, str], code: str,
    kind: str | None, retry_after: float | None,
) -> None:
    api, _ = client(lambda _: httpx2.Response(status, json=body, headers=headers))
    with pytest.raises(ProviderError) as raised:
        await api.get_operation(OPERATION)
    await api.aclose()
    error = raised.value
    assert (error.status, error.code, error.type, error.retry_after_s) == (
        status, code, kind, retry_after)
    assert error.message == body["error"]["message"]  # type: ignore[index]
    assert error.transient is (status in (429, 503))


async def test_model_info_reads_the_model() -> None:
    api, seen = client(lambda _: httpx2.Response(200, json={
        "name": f"models/{MODEL}", "version": "3.1", "displayName": "Veo 3.1 Fast",
        "supportedGenerationMethods": ["predictLongRunning"], "inputTokenLimit": 1024}))
    info = await api.model_info(MODEL)
    with pytest.raises(ValueError, match="model id"):
        await api.model_info("../files")
    await api.aclose()
    assert str(seen.requests[0].url) == f"{BASE}/v1beta/models/{MODEL}"
    assert (info.display_name, info.supported_generation_methods) == (
        "Veo 3.1 Fast", ["predictLongRunning"])
    assert len(seen.requests) == 1


@pytest.mark.parametrize(
    ("ref", "file_id"),
    [(VIDEO_URI, "q8w2e4r6t8y0"), ("files/q8w2e4r6t8y0", "q8w2e4r6t8y0"),
     ("https://elsewhere.example/v1/files/abc-1:download?alt=media", "abc-1"),
     ("https://generativelanguage.googleapis.com/v1beta/files/abc", "abc")],
)
def test_the_file_id_comes_from_a_uri_or_a_file_name(ref: str, file_id: str) -> None:
    assert file_id_of(ref) == file_id


@pytest.mark.parametrize("ref", ["", "abc", "https://x.example/v.mp4", "files/../x"])
def test_a_reference_without_a_file_id_is_refused(ref: str) -> None:
    with pytest.raises(ValueError, match="file id"):
        file_id_of(ref)


@pytest.mark.parametrize(
    "ref", ["files/q8w2e4r6t8y0", VIDEO_URI,
            "https://attacker.example/v1beta/files/q8w2e4r6t8y0:download?alt=media"])
async def test_a_download_goes_to_the_configured_base_with_the_key(ref: str) -> None:
    api, seen = client(lambda _: httpx2.Response(
        200, headers={"content-type": "video/mp4"}, content=b"mp4" * 1000))
    async with api.stream_file(ref, chunk_size=512) as (headers, chunks):
        assert await read_all(chunks) == b"mp4" * 1000
    await api.aclose()
    assert headers["content-type"] == "video/mp4"
    (request,) = seen.requests
    assert str(request.url) == DOWNLOAD
    assert request.headers["x-goog-api-key"] == KEY


async def test_a_download_follows_redirects_and_keeps_the_key_at_home() -> None:
    def answer(request: httpx2.Request) -> httpx2.Response:
        if request.url.host == "generativelanguage.googleapis.com":
            if request.url.path.endswith(":download"):
                return httpx2.Response(302, headers={"location": "/v1beta/media/q8w2"})
            return httpx2.Response(
                302, headers={"location": "https://storage.example/bucket/v.mp4?sig=x"})
        return httpx2.Response(200, content=b"video-bytes")

    api, seen = client(answer)
    async with api.stream_file(VIDEO_URI) as (_, chunks):
        assert await read_all(chunks) == b"video-bytes"
    await api.aclose()
    first, second, third = seen.requests
    assert str(first.url) == DOWNLOAD and first.headers["x-goog-api-key"] == KEY
    assert str(second.url) == f"{BASE}/v1beta/media/q8w2"
    assert second.headers["x-goog-api-key"] == KEY
    assert str(third.url) == "https://storage.example/bucket/v.mp4?sig=x"
    assert "x-goog-api-key" not in third.headers


async def test_endless_redirects_give_up() -> None:
    api, seen = client(lambda request: httpx2.Response(
        302, headers={"location": str(request.url)}))
    with pytest.raises(ProviderError, match="redirects"):
        async with api.stream_file("files/a"):
            pass
    await api.aclose()
    assert len(seen.requests) == 6


async def test_a_download_cut_short_is_a_transient_error() -> None:
    api, _ = client(lambda _: httpx2.Response(200, stream=CutShortBody([b"x" * 64, b"y" * 64])))
    received: list[bytes] = []

    async def download() -> None:
        async with api.stream_file("files/a", chunk_size=64) as (_, chunks):
            async for chunk in chunks:
                received.append(chunk)

    with pytest.raises(ProviderError) as raised:
        await download()
    await api.aclose()
    assert raised.value.status is None and raised.value.transient
    assert b"".join(received) == b"x" * 64 + b"y" * 64


async def test_an_expired_file_is_a_404() -> None:
    api, _ = client(lambda _: httpx2.Response(404, json=google_error(
        404, "NOT_FOUND", "File q8w2e4r6t8y0 was not found.")))
    with pytest.raises(ProviderError) as raised:
        async with api.stream_file(VIDEO_URI):
            pass
    await api.aclose()
    assert (raised.value.status, raised.value.code) == (404, "NOT_FOUND")


async def test_a_base_url_with_a_path_and_another_version() -> None:
    recorder = Recorder(lambda _: httpx2.Response(200, json=operation()))
    api = GeminiVeoClient("http://127.0.0.1:8100/gemini/", api_key=SecretStr(KEY),
                          api_version="v1", transport=httpx2.MockTransport(recorder))
    await api.get_operation(OPERATION)
    assert api.download_url("files/abc") == (
        "http://127.0.0.1:8100/gemini/v1/files/abc:download?alt=media")
    await api.aclose()
    assert str(recorder.requests[0].url) == f"http://127.0.0.1:8100/gemini/v1/{OPERATION}"


# The Standard Webhooks specification's example.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def headers(signature: str = SPEC_SIGNATURE, msg_id: str = MSG_ID,
            timestamp: int = TIMESTAMP) -> dict[str, str]:
    return {"Webhook-Id": msg_id, "Webhook-Timestamp": str(timestamp),
            "Webhook-Signature": signature}


def test_the_standard_webhooks_vector_verifies() -> None:
    assert verify_gemini_webhook(SECRET, headers(), SPEC_BODY, now=TIMESTAMP) == MSG_ID
    # Google's secrets may come without the prefix: the same base64 key.
    assert verify_gemini_webhook(SECRET.removeprefix("whsec_"), headers(), SPEC_BODY,
                                 now=TIMESTAMP + 299) == MSG_ID


def test_a_rotated_secret_signs_beside_the_old_one() -> None:
    other = "whsec_" + base64.b64encode(b"another secret key").decode()
    theirs = Webhook(other).sign(MSG_ID, datetime.fromtimestamp(TIMESTAMP, tz=UTC),
                                 SPEC_BODY.decode())
    assert verify_gemini_webhook(
        SECRET, headers(f"{theirs} {SPEC_SIGNATURE}"), SPEC_BODY, now=TIMESTAMP) == MSG_ID


@pytest.mark.parametrize(
    ("delivery", "body", "now", "status"),
    [
        (headers(), SPEC_BODY + b" ", TIMESTAMP, 401),
        (headers(msg_id="msg_other"), SPEC_BODY, TIMESTAMP, 401),
        (headers(), SPEC_BODY, TIMESTAMP + 301, 401),
        (headers(), SPEC_BODY, TIMESTAMP - 301, 401),
        ({"webhook-id": MSG_ID, "webhook-timestamp": str(TIMESTAMP)}, SPEC_BODY, TIMESTAMP, 400),
        ({**headers(), "Webhook-Timestamp": "now"}, SPEC_BODY, TIMESTAMP, 400),
    ],
)
def test_an_unverifiable_delivery_is_refused(
    delivery: dict[str, str], body: bytes, now: float, status: int
) -> None:
    with pytest.raises(WebhookSignatureError) as refused:
        verify_gemini_webhook(SECRET, delivery, body, now=now)
    assert refused.value.status == status


@pytest.mark.parametrize(
    "data",
    [
        {"id": OPERATION, "output_file_uri": VIDEO_URI, "file_name": "files/q8w2e4r6t8y0"},
        {"id": OPERATION, "video_uri": VIDEO_URI},
        {"id": OPERATION, "file_name": "files/q8w2e4r6t8y0"},
    ],
)
def test_the_video_generated_envelope_is_read_in_each_documented_shape(
    data: dict[str, object]
) -> None:
    event = VeoWebhookEvent.model_validate_json(json.dumps({
        "type": "video.generated", "version": "v1", "timestamp": "2026-10-01T12:00:00Z",
        "data": data}))
    assert event.type == "video.generated"
    assert event.operation_name == OPERATION
    assert event.file_id == "q8w2e4r6t8y0"
    assert event.metadata == {}


def test_user_metadata_is_found_wherever_it_is_and_a_short_id_is_not_a_name() -> None:
    top = VeoWebhookEvent.model_validate({
        "type": "video.generated", "user_metadata": {"video_id": "v-1"},
        "data": {"id": "vz341u0pmdlc"}})
    inner = VeoWebhookEvent.model_validate({
        "type": "video.generated", "data": {"id": OPERATION, "user_metadata": {"video_id": "v-2"},
                                            "output_file_uri": "gs://bucket/x.mp4"}})
    assert top.metadata == {"video_id": "v-1"}
    assert top.operation_name is None and top.file_id is None
    assert inner.metadata == {"video_id": "v-2"}
    assert inner.file_id is None
