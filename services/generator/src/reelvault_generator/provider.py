"""The video provider interface the generator depends on, and its OpenAI Videos API adapter.

Errors are ``reelvault_common.providers.openai_videos.ProviderError`` (``status`` None for transport
failures, ``transient`` for what is worth retrying, ``retry_after_s`` when the server said).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal, Protocol

import httpx2
from reelvault_common.contracts.events import VideoRequested
from reelvault_common.providers.openai_videos import (
    ProviderError,
    ReferenceUpload,
    VideoJob,
    VideosClient,
)
from reelvault_common.providers.video_spec import base_model

JobPhase = Literal["running", "completed", "failed"]

# Provider statuses that end a job without a video (OpenAI's own tools treat all as terminal).
FAILED_STATUSES = frozenset({"failed", "expired", "canceled", "cancelled"})
# A look held back by ``not_before`` where no budget is configured.
NOT_YET_CODE = "not_before"


@dataclass(frozen=True)
class PreparedImages:
    """A request's images as its model takes them (PNGs of the requested size): a first frame
    (for a one-frame model, two images composed into it), a last frame, or references."""

    first_frame: bytes | None = None
    last_frame: bytes | None = None
    references: tuple[bytes, ...] = ()

    @property
    def empty(self) -> bool:
        return self.first_frame is None and self.last_frame is None and not self.references


NO_IMAGES = PreparedImages()


@dataclass(frozen=True)
class ProviderJob:
    """A provider's job, reduced to what the generator decides on."""

    id: str
    phase: JobPhase
    status: str  # the provider's own word, for logs and messages
    progress: int
    created_at: datetime
    model: str
    size: str
    seconds: str
    prompt: str | None = None
    expires_at: datetime | None = None
    error_code: str | None = None
    error_message: str | None = None
    # What the provider charged, when it says (OpenRouter does).
    cost_usd: Decimal | None = None
    # Where the finished video is served, when the job names it (else ``content_url``).
    content_ref: str | None = None

    @property
    def terminal(self) -> bool:
        return self.phase != "running"


class VideoProvider(Protocol):
    """What the generator needs from a video provider. Methods raise ``ProviderError``."""

    name: str

    @property
    def lists_jobs(self) -> bool:
        """Can ``find_recent`` look for the job of a create whose answer was lost? Without a
        list endpoint such a create is never repeated (see ``starting.py``)."""
        ...

    @property
    def adopts_by_webhook(self) -> bool:
        """Does each job tell the provider's webhook our video id (so a webhook can adopt the
        job of a create whose answer was lost)?"""
        ...

    async def create(self, request: VideoRequested, images: PreparedImages) -> ProviderJob:
        """Start one paid generation (exactly one request: never retried inside)."""
        ...

    async def retrieve(self, job_id: str, *, not_before: float | None = None
                       ) -> tuple[ProviderJob, float | None]:
        """The job now, and the provider's suggested wait before the next poll (seconds).
        ``not_before`` (epoch seconds): never ask before then; a look that cannot go yet
        takes its budget slot now and raises the budget's 429 with the wait until it."""
        ...

    async def find_recent(
        self, request: VideoRequested, since: datetime, until: datetime | None = None
    ) -> list[ProviderJob]:
        """Jobs created in [since, until] that match the request (prompt, model, size,
        seconds), newest first: the candidates when a create's outcome is unknown."""
        ...

    def content_url(self, job_id: str) -> str:
        """Where the provider serves the finished video (informational, for events)."""
        ...

    async def aclose(self) -> None: ...


class RequestBudget(Protocol):
    """Provider requests allowed, shared by every replica; raises ``ProviderError`` with status
    429 when spent, carrying ``retry_after_s`` (the caller's own turn: ``ticket`` names the
    caller when it comes back, ``org`` the organization whose queue it waits in)."""

    async def acquire(self, purpose: Literal["create", "poll"] = "create", *,
                      ticket: str | None = None, org: str | None = None,
                      not_before: float | None = None) -> None: ...

    async def penalize(self, retry_after_s: float | None) -> None:
        """The provider itself answered 429: slow down."""
        ...


async def provider_refused(budget: RequestBudget | None, error: ProviderError) -> None:
    """Tell the budget about a provider's own 429 (not the budget's refusal)."""
    if budget is not None and error.status == 429 and error.type != "rate_budget":
        await budget.penalize(error.retry_after_s)


async def spend(budget: RequestBudget | None, purpose: Literal["create", "poll"] = "create", *,
                ticket: str | None = None, org: str | None = None,
                not_before: float | None = None) -> None:
    """Take a slot of ``budget`` (see ``RequestBudget``); without one, only ``not_before``
    holds a call back, with the same refusal a budget gives."""
    if budget is not None:
        await budget.acquire(purpose, ticket=ticket, org=org, not_before=not_before)
        return
    if not_before is not None and (wait := not_before - time.time()) > 0:
        raise ProviderError(f"not before {wait:.2f}s", status=429, type="rate_budget",
                            code=NOT_YET_CODE, retry_after_s=wait)


# --- pure mapping -------------------------------------------------------------------------
def _ts(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def job_from_video(video: VideoJob) -> ProviderJob:
    """Map the OpenAI Video object. ``completed`` succeeds; ``failed``/``expired``/``canceled``
    fail with the provider's error (its status as the code when it gave none); anything else,
    including a status this code does not know yet, is still running."""
    status = video.status
    if status == "completed":
        phase: JobPhase = "completed"
    elif status in FAILED_STATUSES:
        phase = "failed"
    else:
        phase = "running"
    code = message = None
    if phase == "failed":
        error = video.error
        code = (error.code if error else None) or status
        message = (error.message if error else None) or f"the provider's job ended '{status}'"
    created = _ts(video.created_at)
    assert created is not None
    return ProviderJob(
        id=video.id,
        phase=phase,
        status=status,
        progress=max(0, min(100, video.progress or 0)),
        created_at=created,
        model=video.model,
        size=video.size,
        seconds=video.seconds,
        prompt=video.prompt,
        expires_at=_ts(video.expires_at),
        error_code=code,
        error_message=message,
    )


def matches_request(job: ProviderJob, request: VideoRequested) -> bool:
    """Could ``job`` be the one created for ``request``? (A provider may answer with a dated
    model slug for the family name.)"""
    same_model = job.model == request.model or (
        base_model(job.model) is not None and base_model(job.model) == base_model(request.model)
    )
    return (
        job.prompt == request.prompt
        and same_model
        and job.size == request.size
        and job.seconds == request.seconds
    )


def create_outcome_unknown(error: ProviderError) -> bool:
    """After a failed create: might the provider have created the job anyway?

    A definite reply (429, 5xx from the API itself, 4xx) means no job. A transport failure after
    the request left (read timeout, connection dropped) or a gateway's 502/504 (its upstream may
    have processed the request) does not say: the claim must stay until recovery looks.
    Failing to connect at all means nothing was sent.
    """
    if error.status is None:
        cause = error.__cause__
        return not isinstance(
            cause, httpx2.ConnectError | httpx2.ConnectTimeout | httpx2.PoolTimeout
        )
    return error.status in (502, 504)


# --- the adapter --------------------------------------------------------------------------
class OpenAIVideosProvider:
    """``VideoProvider`` over the OpenAI Videos API protocol (Sora 2 or a compatible gateway)."""

    lists_jobs = True
    adopts_by_webhook = False

    def __init__(
        self,
        client: VideosClient,
        *,
        name: str = "openai",
        create_timeout_s: float = 60.0,
        budget: RequestBudget | None = None,
        list_page_size: int = 100,
        max_pages: int = 20,
    ) -> None:
        self.name = name
        self._client = client
        self._create_timeout_s = create_timeout_s
        self._budget = budget
        self._page_size = list_page_size
        self._max_pages = max_pages

    async def _spend(self, purpose: Literal["create", "poll"] = "create", *,
                     ticket: str | None = None, org: str | None = None,
                     not_before: float | None = None) -> None:
        await spend(self._budget, purpose, ticket=ticket, org=org, not_before=not_before)

    async def create(self, request: VideoRequested, images: PreparedImages) -> ProviderJob:
        await self._spend("create", ticket=str(request.video_id), org=request.org)
        reference = images.first_frame
        upload = (
            ReferenceUpload(filename="reference.png", content=reference, content_type="image/png")
            if reference is not None
            else None
        )
        try:
            # A hard bound on the whole call: the ledger's claim goes stale on this promise.
            async with asyncio.timeout(self._create_timeout_s):
                video = await self._client.create(
                    prompt=request.prompt,
                    model=request.model,
                    seconds=request.seconds,
                    size=request.size,
                    input_reference=upload,
                )
        except TimeoutError as exc:
            raise ProviderError(
                f"create did not answer within {self._create_timeout_s:.0f}s", status=None
            ) from exc
        except ProviderError as error:
            await provider_refused(self._budget, error)
            raise
        return job_from_video(video)

    async def retrieve(self, job_id: str, *, not_before: float | None = None
                       ) -> tuple[ProviderJob, float | None]:
        await self._spend("poll", ticket=job_id, not_before=not_before)
        try:
            video, poll_after = await self._client.retrieve(job_id)
        except ProviderError as error:
            await provider_refused(self._budget, error)
            raise
        return job_from_video(video), poll_after

    async def find_recent(
        self, request: VideoRequested, since: datetime, until: datetime | None = None
    ) -> list[ProviderJob]:
        found: list[ProviderJob] = []
        after: str | None = None
        for _ in range(self._max_pages):
            await self._spend()
            page = await self._client.list(limit=self._page_size, order="desc", after=after)
            for video in page.data:
                job = job_from_video(video)
                if job.created_at < since:
                    return found  # newest first: everything further is older
                if (until is None or job.created_at <= until) and matches_request(job, request):
                    found.append(job)
            if not page.has_more or not page.data:
                return found
            after = page.last_id or page.data[-1].id
        raise ProviderError(
            f"recovery scanned {self._max_pages} pages of jobs without reaching {since:%H:%M:%S}",
            status=None,
        )

    def content_url(self, job_id: str) -> str:
        return self._client.content_url(job_id)

    async def aclose(self) -> None:
        await self._client.aclose()
