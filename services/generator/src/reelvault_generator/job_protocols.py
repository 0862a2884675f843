"""``VideoProvider`` adapters for the providers that cannot list their jobs: OpenRouter's video
API and Veo through the Gemini API. Each maps our request (``size`` ``WxH``, ``seconds``) onto
its protocol and its job back onto ``ProviderJob``. Neither retries a create; neither lists
jobs, so a create whose answer was lost is settled by ``starting.py`` (webhook adoption, else
``create_outcome_unknown``), never sent twice.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal

from reelvault_common.contracts.events import VideoRequested
from reelvault_common.providers.errors import ProviderError
from reelvault_common.providers.gemini_veo import GeminiOperation, GeminiVeoClient, VeoImage
from reelvault_common.providers.models import ModelSpec, built_in, resolution_of
from reelvault_common.providers.openrouter_videos import (
    FrameImage,
    OpenRouterCreateRequest,
    OpenRouterJob,
    OpenRouterVideoModel,
    OpenRouterVideosClient,
    data_url,
)

from reelvault_generator.callbacks import CallbackTargets
from reelvault_generator.provider import (
    JobPhase,
    PreparedImages,
    ProviderJob,
    RequestBudget,
    provider_refused,
    spend,
)

Clock = Callable[[], datetime]

OPENROUTER_FAILED = frozenset({"failed", "cancelled", "canceled", "expired"})
_SIZE = re.compile(r"[1-9][0-9]{1,4}x[1-9][0-9]{1,4}")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _Adapter:
    lists_jobs = False

    def __init__(self, *, name: str, create_timeout_s: float, content_ttl_s: float,
                 budget: RequestBudget | None, callbacks: CallbackTargets | None,
                 clock: Clock, poll_interval_s: float | None = None) -> None:
        self.name = name
        # The provider's documented polling cadence, handed to the tracker as its poll-after
        # (a server's own Retry-After wins).
        self._poll_interval_s = poll_interval_s
        self._create_timeout_s = create_timeout_s
        self._content_ttl = timedelta(seconds=content_ttl_s)
        self._budget = budget
        self._callbacks = callbacks
        self._clock = clock

    @property
    def adopts_by_webhook(self) -> bool:
        return self._callbacks is not None

    async def _spend(self, purpose: Literal["create", "poll"] = "create", *,
                     ticket: str | None = None, org: str | None = None,
                     not_before: float | None = None) -> None:
        await spend(self._budget, purpose, ticket=ticket, org=org, not_before=not_before)

    def _timed_out(self, exc: TimeoutError) -> ProviderError:
        error = ProviderError(f"create did not answer within {self._create_timeout_s:.0f}s",
                              status=None)
        error.__cause__ = exc
        return error

    def _job(self, job_id: str, phase: JobPhase, status: str, *, request: VideoRequested | None,
             error_code: str | None = None, error_message: str | None = None,
             cost_usd: Decimal | None = None, content_ref: str | None = None) -> ProviderJob:
        now = self._clock()
        return ProviderJob(
            id=job_id, phase=phase, status=status, progress=100 if phase == "completed" else 0,
            created_at=now, model=request.model if request else "",
            size=request.size if request else "", seconds=request.seconds if request else "",
            prompt=request.prompt if request else None,
            # Neither protocol states an expiry: the configured lifetime from when we saw it.
            expires_at=now + self._content_ttl if phase == "completed" else None,
            error_code=error_code, error_message=error_message, cost_usd=cost_usd,
            content_ref=content_ref,
        )


# --- OpenRouter -----------------------------------------------------------------------------
def openrouter_job(adapter: _Adapter, job: OpenRouterJob,
                   request: VideoRequested | None = None) -> ProviderJob:
    """``completed`` succeeds; ``failed``/``cancelled``/``expired`` fail with the provider's
    text (its status as the code); anything else, known or not, is still running."""
    if job.status == "completed":
        return adapter._job(job.id, "completed", job.status, request=request,
                            cost_usd=job.cost_usd,
                            content_ref=job.unsigned_urls[0] if job.unsigned_urls else None)
    if job.status in OPENROUTER_FAILED:
        return adapter._job(job.id, "failed", job.status, request=request,
                            error_code=job.status, cost_usd=job.cost_usd,
                            error_message=job.error or f"the provider's job ended '{job.status}'")
    return adapter._job(job.id, "running", job.status, request=request)


def spec_from_openrouter(model: OpenRouterVideoModel) -> ModelSpec | None:
    """OpenRouter's capability data as our spec (None when it names no size or duration).
    A size not written ``WxH`` is left out rather than failing the whole list."""
    sizes = tuple(size for size in model.supported_sizes if _SIZE.fullmatch(size))
    seconds = tuple(str(d) for d in sorted(set(model.supported_durations)))
    if not sizes or not seconds:
        return None
    frames = [kind for kind in ("first_frame", "last_frame")
              if kind in model.supported_frame_images]
    base = model.price("per-video-second")
    by_size: dict[str, Decimal] = {}
    for size in sizes:
        price = model.price(f"per-video-second-{resolution_of(size)[0]}")
        if price is not None:
            by_size[size] = price
    known = built_in(model.id)
    # Limits the list does not state (Veo: 1080p only at 8 s), kept within what it does state.
    by_size_seconds = {
        size: allowed for size, durations in (known.seconds_by_size if known else {}).items()
        if size in sizes and (allowed := tuple(d for d in durations if d in seconds))
    }
    return ModelSpec(
        id=model.id, provider="openrouter", sizes=sizes, seconds=seconds,
        seconds_by_size=by_size_seconds,
        image_inputs=tuple(frames),
        max_images=min(2, len(frames)), usd_per_second=base, usd_per_second_by_size=by_size,
    )


class OpenRouterProvider(_Adapter):
    def __init__(self, client: OpenRouterVideosClient, *, name: str = "openrouter",
                 create_timeout_s: float = 60.0, content_ttl_s: float = 3600.0,
                 budget: RequestBudget | None = None, callbacks: CallbackTargets | None = None,
                 clock: Clock = _utcnow, poll_interval_s: float | None = None) -> None:
        super().__init__(name=name, create_timeout_s=create_timeout_s,
                         content_ttl_s=content_ttl_s, budget=budget, callbacks=callbacks,
                         clock=clock, poll_interval_s=poll_interval_s)
        self._client = client

    async def create(self, request: VideoRequested, images: PreparedImages) -> ProviderJob:
        await self._spend("create", ticket=str(request.video_id), org=request.org)
        resolution, aspect_ratio = resolution_of(request.size)
        frames = [FrameImage(data_url(png, "image/png"), kind)  # type: ignore[arg-type]
                  for png, kind in ((images.first_frame, "first_frame"),
                                    (images.last_frame, "last_frame")) if png is not None]
        body = OpenRouterCreateRequest(
            model=request.model, prompt=request.prompt, duration=int(request.seconds),
            resolution=resolution, aspect_ratio=aspect_ratio,
            frame_images=tuple(frames),
            input_references=tuple(data_url(png, "image/png") for png in images.references),
            callback_url=(self._callbacks.url(self.name, request.video_id)
                          if self._callbacks else None),
        )
        try:
            async with asyncio.timeout(self._create_timeout_s):
                job = await self._client.create(body)
        except TimeoutError as exc:
            raise self._timed_out(exc) from exc
        except ProviderError as error:
            await provider_refused(self._budget, error)
            raise
        return openrouter_job(self, job, request)

    async def retrieve(self, job_id: str, *, not_before: float | None = None
                       ) -> tuple[ProviderJob, float | None]:
        await self._spend("poll", ticket=job_id, not_before=not_before)
        try:
            job, retry_after = await self._client.retrieve(job_id)
        except ProviderError as error:
            await provider_refused(self._budget, error)
            raise
        return openrouter_job(self, job), retry_after or self._poll_interval_s

    async def find_recent(self, request: VideoRequested, since: datetime,
                          until: datetime | None = None) -> list[ProviderJob]:
        raise ProviderError("OpenRouter cannot list jobs", status=None)

    async def models(self) -> list[ModelSpec]:
        specs = [spec_from_openrouter(model) for model in await self._client.list_models()]
        return [spec for spec in specs if spec is not None]

    def content_url(self, job_id: str) -> str:
        return self._client.content_url(job_id)

    async def aclose(self) -> None:
        await self._client.aclose()


# --- Gemini (Veo) ---------------------------------------------------------------------------
def gemini_job(adapter: _Adapter, operation: GeminiOperation,
               request: VideoRequested | None = None) -> ProviderJob:
    """Running while not done; a video succeeds; a safety block fails ``content_blocked``;
    an error fails with its RPC status as the code."""
    match operation.outcome:
        case "running":
            return adapter._job(operation.name, "running", "running", request=request)
        case "completed":
            return adapter._job(operation.name, "completed", "completed", request=request,
                                content_ref=operation.video_uris[0] if operation.video_uris
                                else None)
        case "blocked":
            return adapter._job(operation.name, "failed", "blocked", request=request,
                                error_code="content_blocked",
                                error_message=operation.failure_reason)
        case _:
            code = (operation.error.status if operation.error else None) or "failed"
            return adapter._job(operation.name, "failed", "failed", request=request,
                                error_code=code.lower(), error_message=operation.failure_reason)


class GeminiVeoProvider(_Adapter):
    """Jobs carry no per-request webhook: Google signs those with a JWT whose audience it does
    not document. A webhook registered for the project (``video.generated``, Standard
    Webhooks) finishes videos early; it cannot name a video, so a lost create is never
    adopted (``create_outcome_unknown``)."""

    def __init__(self, client: GeminiVeoClient, *, name: str = "gemini",
                 create_timeout_s: float = 60.0, content_ttl_s: float = 47 * 3600.0,
                 budget: RequestBudget | None = None, clock: Clock = _utcnow,
                 poll_interval_s: float | None = None) -> None:
        super().__init__(name=name, create_timeout_s=create_timeout_s,
                         content_ttl_s=content_ttl_s, budget=budget, callbacks=None,
                         clock=clock, poll_interval_s=poll_interval_s)
        self._client = client

    async def create(self, request: VideoRequested, images: PreparedImages) -> ProviderJob:
        await self._spend("create", ticket=str(request.video_id), org=request.org)
        resolution, aspect_ratio = resolution_of(request.size)

        def png(data: bytes | None) -> VeoImage | None:
            return None if data is None else VeoImage(data, "image/png")

        try:
            async with asyncio.timeout(self._create_timeout_s):
                operation = await self._client.create(
                    request.model, request.prompt, image=png(images.first_frame),
                    last_frame=png(images.last_frame),
                    reference_images=[VeoImage(data, "image/png") for data in images.references],
                    aspect_ratio=aspect_ratio, resolution=resolution,
                    duration_seconds=int(request.seconds),
                )
        except TimeoutError as exc:
            raise self._timed_out(exc) from exc
        except ProviderError as error:
            await provider_refused(self._budget, error)
            raise
        return gemini_job(self, operation, request)

    async def retrieve(self, job_id: str, *, not_before: float | None = None
                       ) -> tuple[ProviderJob, float | None]:
        await self._spend("poll", ticket=job_id, not_before=not_before)
        try:
            operation = await self._client.get_operation(job_id)
        except ProviderError as error:
            await provider_refused(self._budget, error)
            raise
        return gemini_job(self, operation), self._poll_interval_s

    async def find_recent(self, request: VideoRequested, since: datetime,
                          until: datetime | None = None) -> list[ProviderJob]:
        raise ProviderError("the Gemini API does not list video jobs", status=None)

    def content_url(self, job_id: str) -> str:
        return job_id  # the operation; its video's URI comes with the completed job

    async def aclose(self) -> None:
        await self._client.aclose()
