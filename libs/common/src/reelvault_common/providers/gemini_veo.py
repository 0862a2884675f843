"""Client of Google's Veo models through the Gemini API, as docs/providers/gemini-veo.md describes.

A job is a long-running operation: ``models/{model}:predictLongRunning`` starts it, the
operation is polled until ``done``, and the video is a file downloaded with the same key. The
API has no idempotency key, no cancel and no list of one's jobs, so ``create`` is one POST and is
never retried here.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, NamedTuple

import httpx2
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic.alias_generators import to_camel

from reelvault_common.http import async_client
from reelvault_common.providers.errors import ProviderError, retry_after_seconds
from reelvault_common.providers.streaming import Download, send_streamed, stream_download
from reelvault_common.providers.webhook_signatures import (
    DEFAULT_TOLERANCE_S,
    StandardWebhookVerifier,
)

__all__ = [
    "DEFAULT_API_VERSION",
    "DEFAULT_BASE_URL",
    "GeminiModelInfo",
    "GeminiOperation",
    "GeminiVeoClient",
    "VeoImage",
    "VeoOutcome",
    "VeoWebhookEvent",
    "error_from_response",
    "file_id_of",
    "predict_body",
    "verify_gemini_webhook",
]

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
DEFAULT_API_VERSION = "v1beta"
KEY_HEADER = "x-goog-api-key"
MAX_REFERENCE_IMAGES = 3
MAX_REDIRECTS = 5
VeoOutcome = Literal["running", "completed", "blocked", "failed"]
# google.rpc.Code: an operation's error carries the number, HTTP errors the name.
RPC_CODE_NAMES: dict[int, str] = {
    1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND", 6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION", 10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED",
    13: "INTERNAL", 14: "UNAVAILABLE", 15: "DATA_LOSS", 16: "UNAUTHENTICATED",
}
_NAME_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_OPERATION_NAME = re.compile(
    r"^(?:models/[A-Za-z0-9][A-Za-z0-9._-]*/)?operations/[A-Za-z0-9][A-Za-z0-9._-]*$")
_FILE_ID = re.compile(r"(?:^|/)files/([A-Za-z0-9][A-Za-z0-9_-]*)(?::download)?(?:[?#]|$)")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


class _Wire(BaseModel):
    """Google's JSON is camelCase; snake_case is accepted too (proto JSON takes either)."""

    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, populate_by_name=True)


class VeoImage(NamedTuple):
    """An input image (PNG or JPEG), sent inline as base64."""

    data: bytes
    mime_type: str

    def wire(self) -> dict[str, str]:
        # The SDK's shape. The REST page's ``inlineData`` wrapper is refused by the live Veo
        # models ("`inlineData` isn't supported by this model").
        return {"bytesBase64Encoded": base64.b64encode(self.data).decode("ascii"),
                "mimeType": self.mime_type}


class VeoVideo(_Wire):
    uri: str | None = None
    encoded_video: str | None = None  # base64, when the video comes inline (not seen for Veo)
    encoding: str | None = None  # its media type


class VeoSample(_Wire):
    video: VeoVideo | None = None


class GenerateVideoResponse(_Wire):
    generated_samples: list[VeoSample] = Field(default_factory=list)
    rai_media_filtered_count: int | None = None
    rai_media_filtered_reasons: list[str] = Field(default_factory=list)

    @field_validator("generated_samples", "rai_media_filtered_reasons", mode="before")
    @classmethod
    def _null_is_empty(cls, value: object) -> object:
        return [] if value is None else value


class OperationResponse(_Wire):
    generate_video_response: GenerateVideoResponse | None = None


class OperationError(_Wire):
    code: int | None = None  # a google.rpc.Code number
    message: str = ""
    details: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def status(self) -> str | None:
        """The code's name (``RESOURCE_EXHAUSTED``), or the number as text if unknown."""
        if self.code is None:
            return None
        return RPC_CODE_NAMES.get(self.code, str(self.code))


class GeminiOperation(_Wire):
    """The long-running operation: ``done`` absent or false while running; once done,
    exactly one of ``error`` (failed) or ``response`` (a video, or a safety block)."""

    name: str
    done: bool = False
    metadata: dict[str, Any] | None = None
    error: OperationError | None = None
    response: OperationResponse | None = None

    @field_validator("done", mode="before")
    @classmethod
    def _null_is_false(cls, value: object) -> object:
        return False if value is None else value

    @property
    def _video_response(self) -> GenerateVideoResponse | None:
        return self.response.generate_video_response if self.response is not None else None

    @property
    def videos(self) -> list[VeoVideo]:
        answer = self._video_response
        if answer is None:
            return []
        return [sample.video for sample in answer.generated_samples
                if sample.video is not None and (sample.video.uri or sample.video.encoded_video)]

    @property
    def video_uris(self) -> list[str]:
        return [video.uri for video in self.videos if video.uri]

    @property
    def rai_filtered_reasons(self) -> list[str]:
        answer = self._video_response
        return list(answer.rai_media_filtered_reasons) if answer is not None else []

    @property
    def outcome(self) -> VeoOutcome:
        if not self.done:
            return "running"
        if self.error is not None:
            return "failed"
        if self.videos:
            return "completed"
        answer = self._video_response
        if answer is not None and (answer.rai_media_filtered_count or
                                   answer.rai_media_filtered_reasons):
            return "blocked"
        return "failed"  # done, yet neither an error nor a video nor a safety verdict

    @property
    def failure_reason(self) -> str | None:
        """Why there is no video (the provider's own words), or None when running or done well."""
        match self.outcome:
            case "running" | "completed":
                return None
            case "blocked":
                return "; ".join(self.rai_filtered_reasons) or "blocked by the safety filters"
            case _:
                if self.error is not None:
                    return self.error.message or self.error.status or "the operation failed"
                return "the operation finished without a video"


class GeminiModelInfo(_Wire):
    """``GET models/{model}``: whether the model is served, and what it is."""

    name: str
    version: str | None = None
    display_name: str | None = None
    description: str | None = None
    supported_generation_methods: list[str] = Field(default_factory=list)


def _duration_seconds(value: object) -> float | None:
    """A ``google.protobuf.Duration``: ``"19s"``/``"0.5s"`` in JSON, or ``{seconds, nanos}``."""
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return float(match.group(1))
    if isinstance(value, dict):
        try:
            return float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9
        except (TypeError, ValueError):
            return None
    return None


def _detail(details: object, type_suffix: str) -> dict[str, Any] | None:
    if not isinstance(details, list):
        return None
    for detail in details:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith(type_suffix):
            return detail
    return None


def error_from_response(response: httpx2.Response, body: bytes | None = None) -> ProviderError:
    """Google's ``{"error": {"code", "message", "status", "details"}}`` as a ``ProviderError``:
    ``code`` is the RPC status name (``RESOURCE_EXHAUSTED``, ``NOT_FOUND``...), ``type`` the
    ``ErrorInfo`` reason when given (``API_KEY_INVALID``), ``retry_after_s`` the ``RetryInfo``
    delay, else ``Retry-After``."""
    raw = response.content if body is None else body
    envelope: dict[str, Any] = {}
    try:
        parsed = httpx2.Response(200, content=raw).json()
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            envelope = parsed["error"]
    except ValueError:
        pass
    details = envelope.get("details")
    info = _detail(details, "google.rpc.ErrorInfo")
    retry = _detail(details, "google.rpc.RetryInfo")
    retry_after = _duration_seconds(retry.get("retryDelay")) if retry is not None else None
    if retry_after is None:
        retry_after = retry_after_seconds(response.headers)
    number = envelope.get("code")
    status = envelope.get("status")
    code = str(status) if status else (str(number) if number is not None else None)
    message = str(
        envelope.get("message") or raw[:200].decode(errors="replace") or response.reason_phrase
    )
    return ProviderError(
        message,
        status=response.status_code,
        type=str(info["reason"]) if info is not None and info.get("reason") else None,
        code=code,
        retry_after_s=retry_after,
    )


def file_id_of(uri_or_name: str) -> str:
    """The file id in ``files/<id>`` or in a video URI (``.../files/<id>:download?alt=media``)."""
    match = _FILE_ID.search(uri_or_name)
    if match is None:
        raise ValueError(f"no Gemini file id in {uri_or_name!r}")
    return match.group(1)


def _model_name(model: str) -> str:
    name = model.removeprefix("models/")
    if not _NAME_PART.match(name):
        raise ValueError(f"not a model id: {model!r}")
    return name


def predict_body(
    *,
    prompt: str,
    image: VeoImage | None = None,
    last_frame: VeoImage | None = None,
    reference_images: Sequence[VeoImage] = (),
    aspect_ratio: str | None = None,
    resolution: str | None = None,
    duration_seconds: int | None = None,
    negative_prompt: str | None = None,
    person_generation: str | None = None,
    webhook_uris: Sequence[str] = (),
    user_metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``predictLongRunning`` body: one instance and the parameters. Values left None are
    not sent (the model's defaults apply). The combinations the API documents as invalid are
    refused here (``ValueError``) rather than sent."""
    if last_frame is not None and image is None:
        raise ValueError("a last frame needs a first frame (image)")
    if reference_images and image is not None:
        raise ValueError("reference images cannot be combined with a first or last frame")
    if len(reference_images) > MAX_REFERENCE_IMAGES:
        raise ValueError(f"at most {MAX_REFERENCE_IMAGES} reference images")
    if user_metadata and not webhook_uris:
        raise ValueError("user metadata travels only with webhook URIs")
    instance: dict[str, Any] = {"prompt": prompt}
    if image is not None:
        instance["image"] = image.wire()
    if last_frame is not None:
        instance["lastFrame"] = last_frame.wire()
    if reference_images:
        instance["referenceImages"] = [
            {"image": reference.wire(), "referenceType": "asset"} for reference in reference_images
        ]
    parameters = {
        key: value
        for key, value in {
            "aspectRatio": aspect_ratio, "resolution": resolution,
            "durationSeconds": duration_seconds, "negativePrompt": negative_prompt,
            "personGeneration": person_generation,
        }.items()
        if value is not None
    }
    body: dict[str, Any] = {"instances": [instance], "parameters": parameters}
    if webhook_uris:
        config: dict[str, Any] = {"uris": list(webhook_uris)}
        if user_metadata:
            config["user_metadata"] = dict(user_metadata)
        body["webhookConfig"] = config
    return body


class GeminiVeoClient:
    """Async client of Veo's routes in the Gemini API. One instance per process; ``aclose`` when
    done. It never retries: what is worth retrying is the caller's decision
    (``ProviderError.transient``), and a create is never worth blindly retrying."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        api_key: SecretStr,
        api_version: str = DEFAULT_API_VERSION,
        timeout_s: float = 30.0,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        if not _NAME_PART.match(api_version):
            raise ValueError(f"not an API version: {api_version!r}")
        self.base_url = base_url.rstrip("/")
        self.api_version = api_version
        self._origin = httpx2.URL(self.base_url).origin
        # No redirects followed by default: the key is a custom header, which httpx would carry
        # to any host a redirect names. Downloads follow redirects by hand (``stream_file``).
        self._http = async_client(
            base_url=f"{self.base_url}/{api_version}",
            headers={KEY_HEADER: api_key.get_secret_value()},
            timeout=httpx2.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            follow_redirects=False,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def download_url(self, uri_or_file_name: str) -> str:
        """Where a file's bytes are: always on the configured base URL, whatever host the URI
        names, so the key goes nowhere else."""
        file_id = file_id_of(uri_or_file_name)
        return f"{self.base_url}/{self.api_version}/files/{file_id}:download?alt=media"

    async def _send(self, request: httpx2.Request) -> httpx2.Response:
        try:
            response = await self._http.send(request)
        except httpx2.TransportError as exc:
            raise ProviderError(f"{type(exc).__name__}: {exc}", status=None) from exc
        if not response.is_success:
            raise error_from_response(response)
        return response

    async def create(
        self,
        model: str,
        prompt: str,
        *,
        image: VeoImage | None = None,
        last_frame: VeoImage | None = None,
        reference_images: Sequence[VeoImage] = (),
        aspect_ratio: str | None = None,
        resolution: str | None = None,
        duration_seconds: int | None = None,
        negative_prompt: str | None = None,
        person_generation: str | None = None,
        webhook_uris: Sequence[str] = (),
        user_metadata: Mapping[str, Any] | None = None,
    ) -> GeminiOperation:
        """Start a job: one POST, answered with ``{"name": "models/<m>/operations/<id>"}``.

        Never retried: a second POST could start a second paid job. Any failure raises
        ``ProviderError``; after a transport failure or a 5xx the job may exist anyway. A 404
        means the model is unknown or retired."""
        body = predict_body(
            prompt=prompt, image=image, last_frame=last_frame, reference_images=reference_images,
            aspect_ratio=aspect_ratio, resolution=resolution, duration_seconds=duration_seconds,
            negative_prompt=negative_prompt, person_generation=person_generation,
            webhook_uris=webhook_uris, user_metadata=user_metadata,
        )
        request = self._http.build_request(
            "POST", f"/models/{_model_name(model)}:predictLongRunning", json=body)
        response = await self._send(request)
        return GeminiOperation.model_validate_json(response.content)

    async def get_operation(self, name: str) -> GeminiOperation:
        if not _OPERATION_NAME.match(name):
            raise ValueError(f"not an operation name: {name!r}")
        response = await self._send(self._http.build_request("GET", f"/{name}"))
        return GeminiOperation.model_validate_json(response.content)

    async def model_info(self, model: str) -> GeminiModelInfo:
        """``GET models/{model}``: unbilled; a 404 ``ProviderError`` if the model is not served."""
        response = await self._send(
            self._http.build_request("GET", f"/models/{_model_name(model)}"))
        return GeminiModelInfo.model_validate_json(response.content)

    async def _open_download(self, url: str) -> httpx2.Response:
        """GET ``url`` streamed, following redirects by hand: the key header goes only to the
        configured origin, never to the host a redirect names (a storage URL needs none)."""
        for _ in range(MAX_REDIRECTS + 1):
            request = self._http.build_request("GET", url)
            if request.url.origin != self._origin:
                del request.headers[KEY_HEADER]
            response = await send_streamed(self._http, request)
            location = response.headers.get("location")
            if not response.is_redirect or not location:
                return response
            await response.aclose()
            url = str(request.url.join(location))
        raise ProviderError(f"more than {MAX_REDIRECTS} redirects downloading a file",
                            status=None)

    def stream_file(
        self, uri_or_file_name: str, *, chunk_size: int | None = None
    ) -> AbstractAsyncContextManager[Download]:
        """Open the download of a generated file (a ``video.uri`` or ``files/<id>``); yields its
        headers and a chunk iterator (never buffered). Files are kept 2 days; then 404.

        A body cut short raises ``ProviderError`` (transient) instead of ending quietly."""
        url = self.download_url(uri_or_file_name)
        return stream_download(
            lambda: self._open_download(url), error_from_response, chunk_size=chunk_size)


class VeoWebhookData(BaseModel):
    """``data`` of a ``video.generated`` event. Its fields differ between Google's pages
    (``output_file_uri`` and ``file_name``, or ``video_uri``): all are read."""

    model_config = ConfigDict(extra="ignore")
    id: str | None = None
    output_file_uri: str | None = None
    file_name: str | None = None
    video_uri: str | None = None
    user_metadata: dict[str, Any] | None = None

    @property
    def file_ref(self) -> str | None:
        return self.output_file_uri or self.video_uri or self.file_name


class VeoWebhookEvent(BaseModel):
    """A Gemini webhook delivery, a thin envelope:
    ``{"type": "video.generated", "version": "v1", "timestamp": <ISO-8601>, "data": {...}}``.
    There is no failure event: polling stays the source of truth."""

    model_config = ConfigDict(extra="ignore")
    type: str
    version: str | None = None
    timestamp: str | None = None
    data: VeoWebhookData = Field(default_factory=VeoWebhookData)
    user_metadata: dict[str, Any] | None = None

    @property
    def operation_name(self) -> str | None:
        """``data.id`` when it is a full operation name (whether it always is: unconfirmed)."""
        data_id = self.data.id
        return data_id if data_id and _OPERATION_NAME.match(data_id) else None

    @property
    def file_id(self) -> str | None:
        ref = self.data.file_ref
        if ref is None:
            return None
        try:
            return file_id_of(ref)
        except ValueError:
            return None

    @property
    def metadata(self) -> dict[str, Any]:
        """The ``user_metadata`` sent with the job, wherever the envelope carries it."""
        return self.user_metadata or self.data.user_metadata or {}


def verify_gemini_webhook(
    secret: str, headers: Mapping[str, str], body: bytes, *, now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> str:
    """Check a registered webhook's Standard Webhooks signature; the delivery's ``webhook-id``
    (dedupe on it), else ``WebhookSignatureError``. The secret is read as Standard Webhooks
    defines it (base64, optional ``whsec_`` prefix). Per-request webhooks are signed with an
    RS256 JWT instead and do not pass here."""
    lowered = {name.lower(): value for name, value in headers.items()}
    return StandardWebhookVerifier(secret, tolerance_s=tolerance_s).verify(lowered, body, now=now)
