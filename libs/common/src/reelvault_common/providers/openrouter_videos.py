"""Client of OpenRouter's asynchronous video API, as docs/providers/openrouter-videos.md describes.

One protocol for many models (Veo, Seedance, Wan, Kling, Sora...): create a job, poll it,
download its output through OpenRouter's authenticated proxy. The API has no idempotency key
and no list of past jobs, so ``create`` is one POST and is never retried here: whether a lost
answer started a paid job is the caller's question (a ``callback_url`` naming the video lets the
webhook adopt it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, NamedTuple
from urllib.parse import quote

import httpx2
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from reelvault_common.http import async_client
from reelvault_common.providers.errors import ProviderError, retry_after_seconds
from reelvault_common.providers.streaming import Download, send_streamed, stream_download
from reelvault_common.providers.webhook_signatures import (
    DEFAULT_TOLERANCE_S,
    WebhookSignatureError,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "TERMINAL_STATUSES",
    "FrameImage",
    "OpenRouterCreateRequest",
    "OpenRouterJob",
    "OpenRouterJobStatus",
    "OpenRouterUsage",
    "OpenRouterVideoModel",
    "OpenRouterVideosClient",
    "OpenRouterWebhookEvent",
    "data_url",
    "error_from_response",
    "openrouter_signature",
    "verify_openrouter_signature",
]

DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"
OpenRouterJobStatus = Literal[
    "pending", "in_progress", "completed", "failed", "cancelled", "expired"]
KNOWN_STATUSES: frozenset[str] = frozenset(
    {"pending", "in_progress", "completed", "failed", "cancelled", "expired"})
TERMINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled", "expired"})
FrameType = Literal["first_frame", "last_frame"]
SIGNATURE_HEADER = "x-openrouter-signature"
IDEMPOTENCY_HEADER = "x-openrouter-idempotency-key"


def _error_text(value: object) -> object:
    """The job's ``error`` is a string; an object with a message is read as its message."""
    if isinstance(value, dict):
        return str(value.get("message") or value.get("code") or value)
    return value


class OpenRouterUsage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    cost: Decimal | None = None  # USD
    is_byok: bool | None = None


class OpenRouterJob(BaseModel):
    """The job (``VideoGenerationResponse``): create's 202 and every poll share it.

    ``status`` is an open enum kept as a plain string: a status this code does not know yet
    decodes, and counts as still running. Unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")
    id: str
    polling_url: str | None = None
    status: str
    generation_id: str | None = None
    unsigned_urls: list[str] = Field(default_factory=list)
    # Signed storage URLs: on one API-reference page only, not in the OpenAPI spec.
    urls: list[str] = Field(default_factory=list)
    usage: OpenRouterUsage | None = None
    error: str | None = None

    @field_validator("error", mode="before")
    @classmethod
    def _error_as_text(cls, value: object) -> object:
        return _error_text(value)

    @field_validator("unsigned_urls", "urls", mode="before")
    @classmethod
    def _null_is_empty(cls, value: object) -> object:
        return [] if value is None else value

    @property
    def known_status(self) -> OpenRouterJobStatus | None:
        return self.status if self.status in KNOWN_STATUSES else None  # type: ignore[return-value]

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def cost_usd(self) -> Decimal | None:
        return self.usage.cost if self.usage is not None else None


class OpenRouterVideoModel(BaseModel):
    """One entry of ``GET /videos/models``: what a model accepts, and its prices.

    Every list may be null upstream; null reads as empty. ``pricing_skus`` maps SKU names
    (``per-video-second``, ``per-video-second-1080p``, ...) to decimal strings."""

    model_config = ConfigDict(extra="ignore")
    id: str
    canonical_slug: str | None = None
    name: str | None = None
    created: int | None = None
    description: str | None = None
    supported_resolutions: list[str] = Field(default_factory=list)
    supported_aspect_ratios: list[str] = Field(default_factory=list)
    supported_sizes: list[str] = Field(default_factory=list)
    supported_durations: list[int] = Field(default_factory=list)
    supported_frame_images: list[str] = Field(default_factory=list)
    generate_audio: bool | None = None
    seed: bool | None = None
    pricing_skus: dict[str, str] = Field(default_factory=dict)
    allowed_passthrough_parameters: list[str] = Field(default_factory=list)

    @field_validator(
        "supported_resolutions", "supported_aspect_ratios", "supported_sizes",
        "supported_durations", "supported_frame_images", "allowed_passthrough_parameters",
        mode="before",
    )
    @classmethod
    def _null_list(cls, value: object) -> object:
        return [] if value is None else value

    @field_validator("pricing_skus", mode="before")
    @classmethod
    def _prices_as_text(cls, value: object) -> object:
        if value is None:
            return {}
        if isinstance(value, dict):
            return {str(sku): str(price) for sku, price in value.items()}
        return value

    def price(self, sku: str) -> Decimal | None:
        """A SKU's price in USD, or None when absent or not a number."""
        text = self.pricing_skus.get(sku)
        if text is None:
            return None
        try:
            return Decimal(text)
        except InvalidOperation:
            return None


class _ModelList(BaseModel):
    model_config = ConfigDict(extra="ignore")
    data: list[OpenRouterVideoModel]


class FrameImage(NamedTuple):
    """An image-to-video frame: an https or ``data:`` URL and which frame it is."""

    url: str
    frame_type: FrameType


class OpenRouterCreateRequest(BaseModel):
    """The body of ``POST /videos``. Fields left None are not sent (the model's defaults
    apply); ``frame_images`` win over ``input_references`` when both are given (per the API)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    model: str = Field(min_length=1)
    prompt: str | None = None
    duration: int = Field(ge=1)
    resolution: str | None = None
    aspect_ratio: str | None = None
    size: str | None = None
    frame_images: tuple[FrameImage, ...] = ()
    input_references: tuple[str, ...] = ()
    callback_url: str | None = None
    seed: int | None = None
    generate_audio: bool | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "duration": self.duration}
        optional = {
            "prompt": self.prompt, "resolution": self.resolution,
            "aspect_ratio": self.aspect_ratio, "size": self.size,
            "callback_url": self.callback_url, "seed": self.seed,
            "generate_audio": self.generate_audio,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        if self.frame_images:
            body["frame_images"] = [
                {"type": "image_url", "image_url": {"url": frame.url},
                 "frame_type": frame.frame_type}
                for frame in self.frame_images
            ]
        if self.input_references:
            body["input_references"] = [
                {"type": "image_url", "image_url": {"url": url}} for url in self.input_references
            ]
        return body


def data_url(image: bytes, mime: str) -> str:
    """A ``data:<mime>;base64,...`` URL: how an image is sent without hosting it somewhere."""
    if not mime.startswith("image/"):
        raise ValueError(f"not an image media type: {mime!r}")
    return f"data:{mime};base64,{base64.b64encode(image).decode('ascii')}"


def _reset_wait(value: str | None, now: float) -> float | None:
    """``X-RateLimit-Reset`` as a wait in seconds. Its unit is not documented: a Unix time in
    milliseconds or seconds (the sizes cannot be confused), else a number of seconds."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    if number > 1e11:
        return max(0.0, number / 1000 - now)
    if number > 1e9:
        return max(0.0, number - now)
    return max(0.0, number)


def error_from_response(
    response: httpx2.Response, body: bytes | None = None, *, now: float | None = None
) -> ProviderError:
    """The ``{"error": {"code", "message", "metadata": {"error_type"}}}`` envelope as a
    ``ProviderError``: ``code`` is the stable ``error_type`` tag when there is one, else the
    numeric code as text."""
    raw = response.content if body is None else body
    envelope: dict[str, Any] = {}
    try:
        parsed = httpx2.Response(200, content=raw).json()
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            envelope = parsed["error"]
    except ValueError:
        pass
    metadata = envelope.get("metadata")
    error_type = metadata.get("error_type") if isinstance(metadata, dict) else None
    number = envelope.get("code")
    code = str(error_type) if error_type else (str(number) if number is not None else None)
    message = str(
        envelope.get("message") or raw[:200].decode(errors="replace") or response.reason_phrase
    )
    retry_after = retry_after_seconds(response.headers)
    if retry_after is None:
        retry_after = _reset_wait(
            response.headers.get("x-ratelimit-reset"), time.time() if now is None else now)
    return ProviderError(message, status=response.status_code, code=code,
                         retry_after_s=retry_after)


def _job_path(job_id: str) -> str:
    if not job_id:
        raise ValueError("a job id may not be empty")
    return f"/videos/{quote(job_id, safe='')}"


class OpenRouterVideosClient:
    """Async client of OpenRouter's ``/videos`` routes. One instance per process; ``aclose``
    when done. It never retries: what is worth retrying is the caller's decision
    (``ProviderError.transient``), and a create is never worth blindly retrying."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        api_key: SecretStr,
        timeout_s: float = 30.0,
        transport: httpx2.AsyncBaseTransport | None = None,
        app_url: str | None = None,
        app_title: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key.get_secret_value()}"}
        # Attribution (OpenRouter's rankings only); the SDKs send them on every call.
        if app_url:
            headers["HTTP-Referer"] = app_url
        if app_title:
            headers["X-OpenRouter-Title"] = app_title
        self._clock = clock
        # Redirects are followed (downloads); httpx drops the Authorization header when one
        # leads to another origin, so the key stays with OpenRouter.
        self._http = async_client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx2.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            follow_redirects=True,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def content_url(self, job_id: str, index: int = 0) -> str:
        return f"{self.base_url}{_job_path(job_id)}/content?index={index}"

    def resolve_polling_url(self, polling_url: str) -> str:
        """The job's ``polling_url`` made absolute: some answers give a path
        (``/api/v1/videos/<id>``), others a full URL; a path is on the base URL's host."""
        return str(httpx2.URL(self.base_url).join(polling_url))

    def _error(self, response: httpx2.Response, body: bytes | None = None) -> ProviderError:
        return error_from_response(response, body, now=self._clock())

    async def _send(self, request: httpx2.Request, *, follow_redirects: bool = True
                    ) -> httpx2.Response:
        try:
            response = await self._http.send(request, follow_redirects=follow_redirects)
        except httpx2.TransportError as exc:
            raise ProviderError(f"{type(exc).__name__}: {exc}", status=None) from exc
        if not response.is_success:
            raise self._error(response)
        return response

    async def create(self, request: OpenRouterCreateRequest) -> OpenRouterJob:
        """Start a job: one POST, answered 202 with ``{id, polling_url, status}``.

        Never retried, and no redirect is followed: a second POST could start a second paid
        job. Any failure raises ``ProviderError``; after a transport failure or a 5xx the job
        may exist anyway."""
        built = self._http.build_request("POST", "/videos", json=request.body())
        response = await self._send(built, follow_redirects=False)
        return OpenRouterJob.model_validate_json(response.content)

    async def retrieve(self, job_id: str) -> tuple[OpenRouterJob, float | None]:
        """The job, and the server's ``Retry-After`` (seconds) if it sent one."""
        response = await self._send(self._http.build_request("GET", _job_path(job_id)))
        return OpenRouterJob.model_validate_json(response.content), retry_after_seconds(
            response.headers)

    async def list_models(self) -> list[OpenRouterVideoModel]:
        response = await self._send(self._http.build_request("GET", "/videos/models"))
        return _ModelList.model_validate_json(response.content).data

    def stream_content(
        self, job_id: str, index: int = 0, *, chunk_size: int | None = None
    ) -> AbstractAsyncContextManager[Download]:
        """Open the download of output ``index``; yields its headers and a chunk iterator
        (never buffered). The route needs the key although its URLs are called "unsigned".

        A body cut short raises ``ProviderError`` (transient) instead of ending quietly."""
        request = self._http.build_request(
            "GET", f"{_job_path(job_id)}/content", params={"index": index},
            headers={"Accept": "video/mp4"})
        return stream_download(
            lambda: send_streamed(self._http, request), self._error, chunk_size=chunk_size)


class OpenRouterWebhookData(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str
    status: str
    generation_id: str | None = None
    model: str | None = None  # null on early failures
    unsigned_urls: list[str] = Field(default_factory=list)
    usage: OpenRouterUsage | None = None
    error: str | None = None

    @field_validator("error", mode="before")
    @classmethod
    def _error_as_text(cls, value: object) -> object:
        return _error_text(value)

    @field_validator("unsigned_urls", mode="before")
    @classmethod
    def _null_is_empty(cls, value: object) -> object:
        return [] if value is None else value


class OpenRouterWebhookEvent(BaseModel):
    """A callback delivery: ``{"type": "video.generation.<status>", "created_at": <ISO-8601>,
    "data": {id, status, ...}}``, sent once per terminal state. Verify the raw body
    (``verify_openrouter_signature``) before decoding it."""

    model_config = ConfigDict(extra="ignore")
    type: str
    created_at: str | None = None
    data: OpenRouterWebhookData

    @property
    def job_id(self) -> str:
        return self.data.id

    @property
    def is_terminal(self) -> bool:
        return self.data.status in TERMINAL_STATUSES


def openrouter_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The lowercase hex HMAC-SHA256 of ``"<timestamp>," + body``, keyed with the secret's
    UTF-8 bytes (no decoding of the secret)."""
    message = f"{timestamp},".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _parse_signature_header(header: str) -> tuple[str, list[str]]:
    timestamp: str | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            if timestamp is not None:
                raise WebhookSignatureError(400, "X-OpenRouter-Signature has two timestamps")
            timestamp = value.strip()
        elif key == "v1":
            signatures.append(value.strip().lower())
    if not timestamp or not signatures:
        raise WebhookSignatureError(400, "X-OpenRouter-Signature needs t=<unix>,v1=<hex>")
    return timestamp, signatures


def verify_openrouter_signature(
    secret: str, header: str | None, body: bytes, *, now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> None:
    """Check an ``X-OpenRouter-Signature: t=<unix seconds>,v1=<hex>`` header against the raw
    body; raises ``WebhookSignatureError`` (400 malformed, 401 stale or not matching).

    Any of several ``v1`` values may match. A timestamp more than ``tolerance_s`` from ``now``
    either way is refused, so an old delivery cannot be replayed."""
    if not secret:
        raise ValueError("a webhook secret may not be empty")
    if not header:
        raise WebhookSignatureError(400, "missing X-OpenRouter-Signature")
    timestamp, signatures = _parse_signature_header(header)
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookSignatureError(400, "the signature's timestamp is not an integer") from None
    if abs(now - sent_at) > tolerance_s:
        raise WebhookSignatureError(401, f"signature timestamp {sent_at} is outside the tolerance")
    expected = openrouter_signature(secret, timestamp, body).encode()
    if not any(hmac.compare_digest(candidate.encode(), expected) for candidate in signatures):
        raise WebhookSignatureError(401, "no matching X-OpenRouter-Signature")
