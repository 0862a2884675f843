"""Pure parts of the OpenRouter and Gemini protocols: signatures, model tables, validation."""

from __future__ import annotations

import base64
import io
import typing
from typing import Any

import pytest
from openrouter.components import videomodel
from PIL import Image
from pydantic import SecretStr
from reelvault_providersim.errors import ApiError
from reelvault_providersim.faults import quota_exceeded, rate_limited, server_error
from reelvault_providersim.gemini import catalog as gemini_catalog
from reelvault_providersim.gemini import errors as gemini_errors
from reelvault_providersim.gemini import params as gemini_params
from reelvault_providersim.gemini import webhooks as gemini_webhooks
from reelvault_providersim.images import fit_to_frame
from reelvault_providersim.openrouter import catalog as or_catalog
from reelvault_providersim.openrouter import errors as or_errors
from reelvault_providersim.openrouter import params as or_params
from reelvault_providersim.openrouter import webhooks as or_webhooks
from reelvault_providersim.settings import SimSettings

SETTINGS = SimSettings(api_key=SecretStr("k"))


def test_openrouter_signature_matches_the_documented_vector() -> None:
    body = (
        b'{"type":"video.generation.completed","created_at":"2026-04-24T12:00:00.000Z",'
        b'"data":{"id":"job_test","status":"completed","unsigned_urls":'
        b'["https://openrouter.ai/api/v1/videos/job_test/content?index=0"]}}'
    )
    header = or_webhooks.signature_header("dev_secret", 1777032000, body)
    assert header == (
        "t=1777032000,v1=580b33f49a571e757a1647067147cddf310afcc755f5b9ac8e25dbd5420e4a14"
    )
    headers = or_webhooks.headers("job_test", "completed", None, 1, body)
    assert headers == {"X-OpenRouter-Idempotency-Key": "job_test-completed"}
    assert or_webhooks.iso_millis(1777032000.5) == "2026-04-24T12:00:00.500Z"


def test_gemini_signature_matches_the_standard_webhooks_vector() -> None:
    header = gemini_webhooks.signature_header(
        ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330, b'{"test": 2432232314}')
    assert header == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_gemini_rotation_signs_with_every_live_secret() -> None:
    hook = gemini_webhooks.Webhook("id", "https://h", ["video.generated"], 0, 0,
                                   secrets=[gemini_webhooks.SigningSecret("whsec_" + "A" * 32)])
    hook.rotate(100, "revoke_previous_secrets_after_h24")
    assert len(hook.live_secrets(101)) == 2
    assert len(hook.live_secrets(100 + 24 * 3600 + 1)) == 1
    hook.rotate(200, "revoke_previous_secrets_immediately")
    assert len(hook.live_secrets(201)) == 1


def _literal_values(alias: Any) -> set[str]:
    literal = typing.get_args(alias)[0]
    return set(typing.get_args(literal))


def test_openrouter_catalog_speaks_the_sdk_enums() -> None:
    sizes = _literal_values(videomodel.SupportedSize)
    resolutions = _literal_values(videomodel.SupportedResolution)
    ratios = _literal_values(videomodel.SupportedAspectRatio)
    for model in or_catalog.MODELS:
        assert set(model.size_list) <= sizes, model.id
        assert set(model.resolutions) <= resolutions, model.id
        assert set(model.aspect_ratios) <= ratios, model.id
        assert model.default_duration in model.durations
        assert (model.default_resolution, model.default_aspect_ratio) in model.sizes
        for size in model.size_list:  # yuv420p needs even dimensions
            width, height = map(int, size.split("x"))
            assert width % 2 == 0 and height % 2 == 0
        videomodel.VideoModel.model_validate(model.as_video_model())
        for resolution in model.resolutions:
            assert model.price_per_second(resolution) > 0


async def _no_fetch(url: str, param: str) -> tuple[bytes, str | None]:
    raise AssertionError("no fetch expected")


async def _validate(**body: Any) -> or_params.VideoRequest:
    return await or_params.validate(body, SETTINGS, set(), _no_fetch)


async def test_openrouter_shape_from_size_or_resolution() -> None:
    by_size = await _validate(model="google/veo-3.1", prompt="p", size="1080x1920")
    assert (by_size.resolution, by_size.size, by_size.duration) == ("1080p", "1080x1920", 8)
    by_pair = await _validate(model="bytedance/seedance-2.0", prompt="p", resolution="480p",
                              aspect_ratio="21:9", duration=15)
    assert (by_pair.size, by_pair.duration) == ("992x432", 15)
    with pytest.raises(or_errors.OpenRouterError, match="does not match"):
        await _validate(model="google/veo-3.1", prompt="p", size="1280x720", resolution="1080p")
    with pytest.raises(or_errors.OpenRouterError, match="Required"):
        await _validate(model="google/veo-3.1")
    with pytest.raises(or_errors.OpenRouterError, match="last_frame"):
        await _validate(model="alibaba/wan-2.7", frame_images=[{
            "type": "image_url", "frame_type": "last_frame",
            "image_url": {"url": "data:image/png;base64,AAAA"}}])
    with pytest.raises(or_errors.OpenRouterError, match="continuation"):
        await _validate(model="google/veo-3.1", prompt="p", previous_job_id="x")
    request = await _validate(model="google/veo-3.1", prompt="p", duration=6)
    assert request.model.cost(request.resolution, request.duration) == pytest.approx(3.0)


def test_openrouter_translates_faults() -> None:
    limited = or_errors.translate(rate_limited(25, 0, 2.5, None), now=1000.0)
    assert limited.status == 429 and limited.headers["Retry-After"] == "3"
    assert limited.headers["X-RateLimit-Reset"] == "1002500"
    assert or_errors.translate(quota_exceeded(), 0).status == 402
    upstream = or_errors.translate(server_error(502), 0)
    assert upstream.envelope() == {"error": {
        "code": 502, "message": "Provider returned error",
        "metadata": {"error_type": "provider_unavailable"}}}


def test_gemini_translates_faults() -> None:
    limited = gemini_errors.translate(rate_limited(25, 0, 18.2, None), "veo-x")
    envelope = limited.envelope()["error"]
    assert (envelope["code"], envelope["status"]) == (429, "RESOURCE_EXHAUSTED")
    assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "19s"} in (
        envelope["details"])
    assert gemini_errors.translate(server_error(503)).envelope()["error"]["status"] == (
        "UNAVAILABLE")
    assert gemini_errors.translate(ApiError(500, "x")).rpc_status == "INTERNAL"
    assert gemini_errors.rpc_code("INTERNAL") == 13
    assert gemini_errors.rpc_code("8") == 8
    assert gemini_errors.rpc_code("moderation") == 13


def _png_b64() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (10, 10)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


async def _source(_: dict[str, Any]) -> gemini_params.SourceVideo:
    return gemini_params.SourceVideo("1280x720", 8, None)


async def _veo(model: str = "veo-3.1-generate-preview", **parameters: Any
               ) -> gemini_params.VeoRequest:
    instance = parameters.pop("instance", {"prompt": "p"})
    body = {"instances": [instance], "parameters": parameters}
    return await gemini_params.validate(body, gemini_catalog.BY_ID[model], SETTINGS, _source)


async def test_gemini_rules() -> None:
    assert (await _veo(durationSeconds="6")).seconds == 6
    assert (await _veo()).seconds == 8
    assert (await _veo(resolution="4k")).size == "3840x2160"
    assert (await _veo(aspectRatio="9:16", resolution="1080p")).size == "1080x1920"
    assert (await _veo("veo-2.0-generate-001", durationSeconds=5,
                       personGeneration="dont_allow", sampleCount=2)).seconds == 5
    image = {"bytesBase64Encoded": _png_b64(), "mimeType": "image/png"}
    framed = await _veo(instance={"image": image}, personGeneration="allow_adult")
    assert framed.image is not None and framed.prompt == ""
    with pytest.raises(gemini_errors.GoogleError, match="allow_all"):
        await _veo(instance={"image": image}, personGeneration="allow_all")
    with pytest.raises(gemini_errors.GoogleError, match="Reference images require"):
        await _veo(instance={"prompt": "p", "referenceImages": [{"image": image}]},
                   durationSeconds=6)
    with pytest.raises(gemini_errors.GoogleError, match="STYLE"):
        await _veo(instance={"prompt": "p", "referenceImages": [
            {"image": image, "referenceType": "STYLE"}]})
    with pytest.raises(gemini_errors.GoogleError, match="gcsUri"):
        await _veo(instance={"prompt": "p", "image": {"gcsUri": "gs://b/o.png"}})
    with pytest.raises(gemini_errors.GoogleError, match="Only one instance"):
        await gemini_params.validate({"instances": [{}, {}]},
                                     gemini_catalog.BY_ID["veo-3.1-generate-preview"],
                                     SETTINGS, _source)
    extended = await _veo(instance={"prompt": "p", "video": {"uri": "x/files/abc:download"}})
    assert (extended.size, extended.seconds) == ("1280x720", 15)
    webhooks = await gemini_params.validate(
        {"instances": [{"prompt": "p"}],
         "webhook_config": {"uris": ["https://h/x"], "userMetadata": {"a": 1}}},
        gemini_catalog.BY_ID["veo-3.1-generate-preview"], SETTINGS, _source)
    assert (webhooks.webhook_uris, webhooks.user_metadata) == (["https://h/x"], {"a": 1})
    with pytest.raises(gemini_errors.GoogleError, match="https"):
        await gemini_params.validate(
            {"instances": [{"prompt": "p"}], "webhookConfig": {"uris": ["http://h.example/x"]}},
            gemini_catalog.BY_ID["veo-3.1-generate-preview"], SETTINGS, _source)
    assert gemini_params.file_id_in("http://h/v1beta/files/ab12:download?alt=media") == "ab12"


def test_images_are_fitted_to_the_frame() -> None:
    fitted = fit_to_frame(base64.b64decode(_png_b64()), 64, 36)
    with Image.open(io.BytesIO(fitted)) as image:
        assert image.size == (64, 36)


def test_each_protocol_sees_only_its_own_jobs() -> None:
    from reelvault_providersim.jobs import JobError, JobStore

    store = JobStore(seed=1, clock=lambda: 100.0)
    sora = store.new_job(model="sora-2", prompt="p", size="1280x720", seconds="4",
                         generation_s=0, ttl_s=10)
    veo = store.new_job(model="veo", prompt="p", size="1280x720", seconds="4", generation_s=0,
                        ttl_s=10, protocol="gemini", job_id="abc123")
    assert [job.id for job in store.page(limit=10, order="asc", after=None).jobs] == [sora.id]
    assert store.page(limit=10, order="asc", after=None, protocol="gemini").jobs == [veo]
    cancelled = store.new_job(model="sora-2", prompt="p", size="1280x720", seconds="4",
                              generation_s=0, ttl_s=10, outcome="cancelled",
                              planned_error=JobError("cancelled", "Job was cancelled"))
    cancelled.render_finished_at = 100.0
    assert cancelled.state(100.0).status == "cancelled"
    assert cancelled.to_video(100.0)["status"] == "failed"  # no such status in OpenAI's API
    with pytest.raises(ValueError, match="duplicate"):
        store.new_job(model="veo", prompt="p", size="1280x720", seconds="4", generation_s=0,
                      ttl_s=10, job_id="abc123")
