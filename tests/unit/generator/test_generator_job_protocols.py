"""The OpenRouter and Gemini (Veo) adapters over their real clients, with an in-memory
``httpx2`` transport answering as each API does: what a create sends (one POST, whatever
happens), and what every job state means for the video."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx2
import pytest
from generator_fakes import T0, request
from pydantic import SecretStr
from reelvault_common.providers.errors import ProviderError
from reelvault_common.providers.gemini_veo import GeminiVeoClient
from reelvault_common.providers.models import ModelCatalog, image_plan
from reelvault_common.providers.openrouter_videos import (
    OpenRouterVideoModel,
    OpenRouterVideosClient,
)
from reelvault_generator.callbacks import CallbackTargets
from reelvault_generator.job_protocols import (
    GeminiVeoProvider,
    OpenRouterProvider,
    spec_from_openrouter,
)
from reelvault_generator.provider import NO_IMAGES, PreparedImages, create_outcome_unknown

OPENROUTER = "https://openrouter.ai/api/v1"
GEMINI = "https://generativelanguage.googleapis.com"
OPERATION = "models/veo-3.1-generate-preview/operations/op9f2c"
JOB_ID = "Nxff2D1Z6w4Zk9iNuZam"
PUBLIC = "https://reelvault.example.com"
SECRET = "callback-secret"
FIRST, LAST = b"\x89PNG first", b"\x89PNG last"

Answer = httpx2.Response | Exception | Callable[[], Awaitable[httpx2.Response]]


class Api:
    """The transport: answers each request with the next answer, and keeps every request."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[httpx2.Request] = []

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return await answer()
        return answer

    def body(self, index: int = -1) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.requests[index].content)
        return parsed

    def posts(self) -> int:
        return sum(1 for r in self.requests if r.method == "POST")


def clock() -> Any:
    return T0


def openrouter(api: Api, *, callbacks: CallbackTargets | None = None,
               create_timeout_s: float = 60.0) -> OpenRouterProvider:
    client = OpenRouterVideosClient(OPENROUTER, api_key=SecretStr("sk-or-test"),
                                    transport=httpx2.MockTransport(api))
    return OpenRouterProvider(client, callbacks=callbacks, create_timeout_s=create_timeout_s,
                              content_ttl_s=1800, clock=clock)


def gemini(api: Api, *, create_timeout_s: float = 60.0) -> GeminiVeoProvider:
    client = GeminiVeoClient(GEMINI, api_key=SecretStr("AIza-test"),
                             transport=httpx2.MockTransport(api))
    return GeminiVeoProvider(client, create_timeout_s=create_timeout_s, clock=clock)


def or_job(status: str, **fields: Any) -> httpx2.Response:
    return httpx2.Response(200, json={"id": JOB_ID, "polling_url": f"/api/v1/videos/{JOB_ID}",
                                      "status": status, **fields})


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png_url(data: bytes) -> str:
    return f"data:image/png;base64,{b64(data)}"


async def slow() -> httpx2.Response:
    await asyncio.sleep(5)
    return httpx2.Response(202, json={"id": JOB_ID, "status": "pending"})


# --- OpenRouter: the create -----------------------------------------------------------------
async def test_openrouter_create_sends_the_documented_body() -> None:
    api = Api(httpx2.Response(202, json={"id": JOB_ID, "polling_url": f"/api/v1/videos/{JOB_ID}",
                                         "status": "pending"}))
    targets = CallbackTargets(PUBLIC, SECRET)
    provider = openrouter(api, callbacks=targets)
    req = request("a paper boat", model="google/veo-3.1", seconds="8", size="1080x1920")

    job = await provider.create(req, PreparedImages(first_frame=FIRST, last_frame=LAST))

    [sent] = api.requests
    assert (sent.method, str(sent.url)) == ("POST", f"{OPENROUTER}/videos")
    assert sent.headers["authorization"] == "Bearer sk-or-test"
    body = api.body()
    callback = body.pop("callback_url")
    assert body == {
        "model": "google/veo-3.1", "prompt": "a paper boat", "duration": 8,
        "resolution": "1080p", "aspect_ratio": "9:16",
        "frame_images": [
            {"type": "image_url", "image_url": {"url": png_url(FIRST)},
             "frame_type": "first_frame"},
            {"type": "image_url", "image_url": {"url": png_url(LAST)},
             "frame_type": "last_frame"},
        ],
    }
    assert isinstance(body["duration"], int)
    # The callback names the video with a token only our secret makes.
    url = httpx2.URL(callback)
    assert f"{url.scheme}://{url.host}{url.path}" == f"{PUBLIC}/webhooks/openrouter"
    assert url.params["video"] == str(req.video_id)
    assert targets.verified(url.params["video"], url.params["token"]) == req.video_id
    assert (job.id, job.phase, job.status, job.model, job.size, job.seconds, job.prompt) == (
        JOB_ID, "running", "pending", "google/veo-3.1", "1080x1920", "8", "a paper boat")
    assert job.created_at == T0
    assert (provider.lists_jobs, provider.adopts_by_webhook) == (False, True)


async def test_openrouter_references_go_as_input_references() -> None:
    api = Api(httpx2.Response(202, json={"id": JOB_ID, "status": "pending"}))
    provider = openrouter(api)
    req = request(model="kwaivgi/kling", seconds="5", size="1280x720")
    await provider.create(req, PreparedImages(references=(FIRST, LAST)))

    body = api.body()
    assert body["input_references"] == [
        {"type": "image_url", "image_url": {"url": png_url(FIRST)}},
        {"type": "image_url", "image_url": {"url": png_url(LAST)}},
    ]
    assert "frame_images" not in body
    assert (body["resolution"], body["aspect_ratio"], body["duration"]) == ("720p", "16:9", 5)


async def test_openrouter_without_images_or_callbacks_sends_neither() -> None:
    api = Api(httpx2.Response(202, json={"id": JOB_ID, "status": "pending"}))
    provider = openrouter(api)
    await provider.create(request(model="google/veo-3.1", seconds="4"), NO_IMAGES)
    body = api.body()
    assert not {"frame_images", "input_references", "callback_url", "size"} & set(body)
    assert provider.adopts_by_webhook is False


async def test_openrouter_a_first_frame_alone() -> None:
    api = Api(httpx2.Response(202, json={"id": JOB_ID, "status": "pending"}))
    await openrouter(api).create(request(model="google/veo-3.1"),
                                 PreparedImages(first_frame=FIRST))
    assert [f["frame_type"] for f in api.body()["frame_images"]] == ["first_frame"]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_openrouter_a_5xx_on_create_is_one_post(status: int) -> None:
    api = Api(httpx2.Response(status, json={"error": {"code": status, "message": "upstream"}}),
              httpx2.Response(202, json={"id": "second", "status": "pending"}))
    with pytest.raises(ProviderError) as failed:
        await openrouter(api).create(request(model="google/veo-3.1"), NO_IMAGES)
    assert failed.value.status == status
    assert api.posts() == 1


async def test_openrouter_a_transport_failure_on_create_is_one_post_of_unknown_outcome() -> None:
    api = Api(httpx2.ReadTimeout("read timed out"),
              httpx2.Response(202, json={"id": "second", "status": "pending"}))
    with pytest.raises(ProviderError) as failed:
        await openrouter(api).create(request(model="google/veo-3.1"), NO_IMAGES)
    assert failed.value.status is None
    assert create_outcome_unknown(failed.value)
    assert api.posts() == 1


async def test_openrouter_a_create_past_its_time_is_one_post_of_unknown_outcome() -> None:
    api = Api(slow, httpx2.Response(202, json={"id": "second", "status": "pending"}))
    with pytest.raises(ProviderError, match="did not answer within") as failed:
        await openrouter(api, create_timeout_s=0.05).create(
            request(model="google/veo-3.1"), NO_IMAGES)
    assert failed.value.status is None
    assert create_outcome_unknown(failed.value)
    assert api.posts() == 1


async def test_openrouter_a_retired_model_is_a_404() -> None:
    api = Api(httpx2.Response(404, json={"error": {"code": 404, "message": "Model not found"}}))
    with pytest.raises(ProviderError) as failed:
        await openrouter(api).create(request(model="google/veo-2"), NO_IMAGES)
    assert (failed.value.status, failed.value.message) == (404, "Model not found")
    assert not create_outcome_unknown(failed.value)


# --- OpenRouter: the job's states -----------------------------------------------------------
async def test_openrouter_completed_carries_its_cost_and_its_content() -> None:
    content = f"{OPENROUTER}/videos/{JOB_ID}/content?index=0"
    api = Api(or_job("completed", unsigned_urls=[content], usage={"cost": 2.4, "is_byok": False},
                     generation_id="gen-1"))
    provider = openrouter(api)
    job, poll_after = await provider.retrieve(JOB_ID)

    assert str(api.requests[0].url) == f"{OPENROUTER}/videos/{JOB_ID}"
    assert (job.phase, job.status, job.progress) == ("completed", "completed", 100)
    assert job.cost_usd == Decimal("2.4")
    assert job.content_ref == content
    assert job.expires_at == T0 + timedelta(seconds=1800)  # the configured lifetime
    assert (job.error_code, job.error_message) == (None, None)
    assert poll_after is None


async def test_openrouter_completed_without_urls_is_served_by_the_content_route() -> None:
    provider = openrouter(Api(or_job("completed")))
    job, _ = await provider.retrieve(JOB_ID)
    assert (job.phase, job.content_ref, job.cost_usd) == ("completed", None, None)
    assert provider.content_url(JOB_ID) == f"{OPENROUTER}/videos/{JOB_ID}/content?index=0"


@pytest.mark.parametrize(
    ("status", "error", "message"),
    [
        ("failed", "Content violates the provider's policy", "Content violates the provider's "
         "policy"),
        ("failed", {"code": "upstream_error", "message": "Veo refused the prompt"},
         "Veo refused the prompt"),
        ("cancelled", "Cancelled by the user", "Cancelled by the user"),
        ("expired", None, "the provider's job ended 'expired'"),
        ("failed", None, "the provider's job ended 'failed'"),
    ],
)
async def test_openrouter_every_ending_without_a_video_fails_with_its_text(
    status: str, error: object, message: str
) -> None:
    provider = openrouter(Api(or_job(status, error=error, usage={"cost": "0.10"})))
    job, _ = await provider.retrieve(JOB_ID)
    assert (job.phase, job.status, job.error_code, job.error_message) == (
        "failed", status, status, message)
    assert job.cost_usd == Decimal("0.10")
    assert job.expires_at is None
    assert job.terminal


@pytest.mark.parametrize("status", ["pending", "in_progress", "queued_upstream", "rendering"])
async def test_openrouter_running_and_unknown_statuses_are_still_running(status: str) -> None:
    api = Api(httpx2.Response(200, headers={"retry-after": "7"},
                              json={"id": JOB_ID, "status": status}))
    job, poll_after = await openrouter(api).retrieve(JOB_ID)
    assert (job.phase, job.status, job.progress, job.terminal) == ("running", status, 0, False)
    assert poll_after == 7.0


async def test_openrouter_cannot_list_jobs() -> None:
    provider = openrouter(Api())
    with pytest.raises(ProviderError, match="cannot list"):
        await provider.find_recent(request(), T0)


async def test_openrouter_a_failed_poll_is_a_provider_error() -> None:
    api = Api(httpx2.Response(429, headers={"retry-after": "3"},
                              json={"error": {"code": 429, "message": "slow down"}}))
    with pytest.raises(ProviderError) as failed:
        await openrouter(api).retrieve(JOB_ID)
    assert (failed.value.status, failed.value.retry_after_s) == (429, 3.0)


# --- OpenRouter: capability data ------------------------------------------------------------
VEO_ENTRY: dict[str, Any] = {
    "id": "google/veo-3.1",
    "supported_sizes": ["1280x720", "720x1280", "1920x1080", "1080x1920"],
    "supported_durations": [8, 4, 6, 8],
    "supported_frame_images": ["first_frame", "last_frame"],
    "pricing_skus": {"per-video-second": "0.40", "per-video-second-1080p": "0.60"},
}


def test_spec_from_openrouter_reads_the_models_entry() -> None:
    spec = spec_from_openrouter(OpenRouterVideoModel.model_validate(VEO_ENTRY))
    assert spec is not None
    assert spec.id == "google/veo-3.1" and spec.provider == "openrouter"
    assert spec.sizes == ("1280x720", "720x1280", "1920x1080", "1080x1920")
    assert spec.seconds == ("4", "6", "8")  # sorted, once each
    assert spec.image_inputs == ("first_frame", "last_frame") and spec.max_images == 2
    assert spec.usd_per_second == Decimal("0.40")
    assert spec.usd_per_second_by_size == {"1920x1080": Decimal("0.60"),
                                           "1080x1920": Decimal("0.60")}
    # What the published data does not say (1080p only at 8 s) comes from the built-in table.
    assert spec.allowed_seconds("1920x1080") == ("8",)
    assert spec.allowed_seconds("1280x720") == ("4", "6", "8")
    assert image_plan(spec, 2).mode == "frames"


def test_spec_from_openrouter_keeps_built_in_limits_only_within_the_published_data() -> None:
    entry = {**VEO_ENTRY, "supported_sizes": ["1280x720", "1920x1080"],
             "supported_durations": [4, 8]}
    spec = spec_from_openrouter(OpenRouterVideoModel.model_validate(entry))
    assert spec is not None
    assert spec.seconds_by_size == {"1920x1080": ("8",)}
    catalog = ModelCatalog([spec])
    assert catalog.check("google/veo-3.1", "8", "1920x1080") is None
    assert catalog.check("google/veo-3.1", "4", "1280x720") is None


def test_spec_from_openrouter_a_model_taking_one_frame_or_none() -> None:
    one = spec_from_openrouter(OpenRouterVideoModel.model_validate(
        {"id": "kwaivgi/kling", "supported_sizes": ["1280x720"], "supported_durations": [5, 10],
         "supported_frame_images": ["first_frame"], "pricing_skus": None}))
    assert one is not None
    assert (one.image_inputs, one.max_images, one.seconds) == (("first_frame",), 1, ("5", "10"))
    assert one.usd_per_second is None and one.seconds_by_size == {}
    none = spec_from_openrouter(OpenRouterVideoModel.model_validate(
        {"id": "text/only", "supported_sizes": ["1280x720"], "supported_durations": [5],
         "supported_frame_images": None}))
    assert none is not None
    assert (none.image_inputs, none.max_images) == ((), 0)
    assert ModelCatalog([none]).check("text/only", "5", "1280x720", images=1) is not None


def test_spec_from_openrouter_leaves_out_sizes_it_cannot_read() -> None:
    entry = {**VEO_ENTRY, "supported_sizes": ["1280x720", "1080p", "16:9", "0x0"]}
    spec = spec_from_openrouter(OpenRouterVideoModel.model_validate(entry))
    assert spec is not None and spec.sizes == ("1280x720",)
    assert spec.seconds_by_size == {}


@pytest.mark.parametrize("missing", [{"supported_sizes": None}, {"supported_durations": []}])
def test_spec_from_openrouter_without_sizes_or_durations_is_not_offered(
    missing: dict[str, Any]
) -> None:
    assert spec_from_openrouter(
        OpenRouterVideoModel.model_validate({**VEO_ENTRY, **missing})) is None


async def test_openrouter_models_come_from_its_models_endpoint() -> None:
    api = Api(httpx2.Response(200, json={"data": [
        VEO_ENTRY, {"id": "no/sizes", "supported_durations": [5]}]}))
    specs = await openrouter(api).models()
    assert str(api.requests[0].url) == f"{OPENROUTER}/videos/models"
    assert [s.id for s in specs] == ["google/veo-3.1"]


# --- Gemini: the create ---------------------------------------------------------------------
def operation(**fields: Any) -> httpx2.Response:
    return httpx2.Response(200, json={"name": OPERATION, **fields})


async def test_gemini_create_sends_frames_and_parameters() -> None:
    api = Api(operation())
    provider = gemini(api)
    req = request("a lighthouse", model="veo-3.1-generate-preview", seconds="8",
                  size="3840x2160", org="acme")

    job = await provider.create(req, PreparedImages(first_frame=FIRST, last_frame=LAST))

    [sent] = api.requests
    assert str(sent.url) == (f"{GEMINI}/v1beta/models/veo-3.1-generate-preview"
                             ":predictLongRunning")
    assert sent.headers["x-goog-api-key"] == "AIza-test"
    assert api.body() == {
        "instances": [{
            "prompt": "a lighthouse",
            "image": {"bytesBase64Encoded": b64(FIRST), "mimeType": "image/png"},
            "lastFrame": {"bytesBase64Encoded": b64(LAST), "mimeType": "image/png"},
        }],
        "parameters": {"aspectRatio": "16:9", "resolution": "4k", "durationSeconds": 8},
    }
    assert (job.id, job.phase, job.model, job.created_at) == (
        OPERATION, "running", "veo-3.1-generate-preview", T0)
    # No per-job webhook (Google signs those with a JWT): a lost create cannot be adopted.
    assert (provider.lists_jobs, provider.adopts_by_webhook) == (False, False)


async def test_gemini_references_go_as_asset_references() -> None:
    api = Api(operation())
    provider = gemini(api)
    await provider.create(request(model="veo-3.1-generate-preview", seconds="8",
                                  size="720x1280"), PreparedImages(references=(FIRST, LAST)))
    body = api.body()
    assert body["instances"][0]["referenceImages"] == [
        {"image": {"bytesBase64Encoded": b64(FIRST), "mimeType": "image/png"},
         "referenceType": "asset"},
        {"image": {"bytesBase64Encoded": b64(LAST), "mimeType": "image/png"},
         "referenceType": "asset"},
    ]
    assert not {"image", "lastFrame"} & set(body["instances"][0])
    assert body["parameters"] == {"aspectRatio": "9:16", "resolution": "720p",
                                  "durationSeconds": 8}
    assert "webhookConfig" not in body


@pytest.mark.parametrize("status", [500, 503, 504])
async def test_gemini_a_5xx_on_create_is_one_post(status: int) -> None:
    api = Api(httpx2.Response(status, json={"error": {"code": status, "message": "busy",
                                                      "status": "UNAVAILABLE"}}),
              operation())
    with pytest.raises(ProviderError) as failed:
        await gemini(api).create(request(model="veo-3.1-generate-preview"), NO_IMAGES)
    assert failed.value.status == status
    assert api.posts() == 1


async def test_gemini_a_transport_failure_or_timeout_on_create_is_one_post() -> None:
    for answer, timeout in ((httpx2.ReadError("reset"), 60.0), (slow, 0.05)):
        api = Api(answer, operation())
        with pytest.raises(ProviderError) as failed:
            await gemini(api, create_timeout_s=timeout).create(
                request(model="veo-3.1-generate-preview"), NO_IMAGES)
        assert create_outcome_unknown(failed.value)
        assert api.posts() == 1


async def test_gemini_a_retired_model_is_a_404() -> None:
    api = Api(httpx2.Response(404, json={"error": {
        "code": 404, "status": "NOT_FOUND",
        "message": "models/veo-2.0 is not found for API version v1beta"}}))
    with pytest.raises(ProviderError) as failed:
        await gemini(api).create(request(model="veo-2.0"), NO_IMAGES)
    assert (failed.value.status, failed.value.code) == (404, "NOT_FOUND")


# --- Gemini: the operation's states ---------------------------------------------------------
VIDEO_URI = f"{GEMINI}/v1beta/files/abc123:download?alt=media"


async def test_gemini_running_until_done() -> None:
    api = Api(operation(done=False, metadata={"progress": 40}))
    job, poll_after = await gemini(api).retrieve(OPERATION)
    assert str(api.requests[0].url) == f"{GEMINI}/v1beta/{OPERATION}"
    assert (job.id, job.phase, job.status, job.progress) == (OPERATION, "running", "running", 0)
    assert poll_after is None


async def test_gemini_completed_names_its_video_file() -> None:
    provider = gemini(Api(operation(done=True, response={"generateVideoResponse": {
        "generatedSamples": [{"video": {"uri": VIDEO_URI}}]}})))
    job, _ = await provider.retrieve(OPERATION)
    assert (job.phase, job.status, job.progress, job.content_ref) == (
        "completed", "completed", 100, VIDEO_URI)
    assert job.expires_at == T0 + timedelta(hours=47)  # two days, less a margin
    assert job.cost_usd is None


async def test_gemini_a_safety_block_fails_content_blocked_with_the_reasons() -> None:
    provider = gemini(Api(operation(done=True, response={"generateVideoResponse": {
        "raiMediaFilteredCount": 1,
        "raiMediaFilteredReasons": ["The prompt names a celebrity."]}})))
    job, _ = await provider.retrieve(OPERATION)
    assert (job.phase, job.status, job.error_code, job.error_message) == (
        "failed", "blocked", "content_blocked", "The prompt names a celebrity.")


@pytest.mark.parametrize(("code", "expected"), [(8, "resource_exhausted"), (13, "internal"),
                                                (3, "invalid_argument"), (99, "99")])
async def test_gemini_an_operation_error_fails_with_its_rpc_status(
    code: int, expected: str
) -> None:
    provider = gemini(Api(operation(done=True, error={"code": code, "message": "it broke"})))
    job, _ = await provider.retrieve(OPERATION)
    assert (job.phase, job.error_code, job.error_message) == ("failed", expected, "it broke")


async def test_gemini_done_without_a_video_or_a_verdict_fails() -> None:
    provider = gemini(Api(operation(done=True, response={"generateVideoResponse": {}})))
    job, _ = await provider.retrieve(OPERATION)
    assert (job.phase, job.error_code, job.error_message) == (
        "failed", "failed", "the operation finished without a video")


async def test_gemini_cannot_list_jobs_and_names_its_operation_as_content() -> None:
    provider = gemini(Api())
    with pytest.raises(ProviderError, match="does not list"):
        await provider.find_recent(request(), T0)
    assert provider.content_url(OPERATION) == OPERATION


async def test_both_adapters_close_their_clients() -> None:
    for provider in (openrouter(Api()), gemini(Api())):
        await provider.aclose()
        with pytest.raises((ProviderError, RuntimeError)):
            await provider.retrieve(OPERATION if provider.name == "gemini" else JOB_ID)


def test_one_video_id_token_per_secret() -> None:
    video = uuid.uuid4()
    ours, theirs = CallbackTargets(PUBLIC, SECRET), CallbackTargets(PUBLIC, "other")
    assert ours.verified(str(video), theirs.token(video)) is None
    assert ours.url("gemini") == f"{PUBLIC}/webhooks/gemini"
