"""Building the generator's outgoing events (pure) and the sink they go to."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Protocol

from reelvault_common.contracts.events import (
    VideoCompleted,
    VideoEvent,
    VideoFailed,
    VideoGenerationProgressed,
    VideoGenerationStarted,
    VideoRequested,
)

from reelvault_generator.ledger import LedgerEntry
from reelvault_generator.provider import ProviderJob


class EventSink(Protocol):
    """Where events go (``EventPublisher`` in the service): durable once ``publish`` returns."""

    async def publish(self, event: VideoEvent) -> Any: ...


def started_event(
    request: VideoRequested, *, provider: str, provider_job_id: str, job_created_at: datetime
) -> VideoGenerationStarted:
    return VideoGenerationStarted.new(
        video_id=request.video_id,
        org=request.org,
        correlation_id=request.correlation_id,
        provider_job_id=provider_job_id,
        provider=provider,
        model=request.model,
        seconds=request.seconds,
        size=request.size,
        requested_at=request.occurred_at,
        job_created_at=job_created_at,
    )


def started_from_entry(video_id: uuid.UUID, entry: LedgerEntry) -> VideoGenerationStarted:
    """The Started event of a job adopted without its request (the ledger entry has what
    the request said)."""
    if (entry.provider is None or entry.provider_job_id is None or entry.job_created_at is None
            or entry.org is None or entry.correlation_id is None or entry.requested_at is None
            or entry.model is None or entry.seconds is None or entry.size is None):
        raise ValueError("the ledger entry does not say what the request was")
    return VideoGenerationStarted.new(
        video_id=video_id, org=entry.org, correlation_id=entry.correlation_id,
        provider_job_id=entry.provider_job_id, provider=entry.provider, model=entry.model,
        seconds=entry.seconds, size=entry.size, requested_at=entry.requested_at,
        job_created_at=entry.job_created_at,
    )


def completed_event(
    *,
    video_id: uuid.UUID,
    correlation_id: str,
    provider: str,
    job: ProviderJob,
    source_url: str,
    org: str,
    requested_at: datetime,
) -> VideoCompleted:
    return VideoCompleted.new(
        video_id=video_id,
        org=org,
        correlation_id=correlation_id,
        provider_job_id=job.id,
        provider=provider,
        source_url=source_url,
        expires_at=job.expires_at,
        requested_at=requested_at,
        cost_usd=job.cost_usd,
    )


def progressed_event(
    *, video_id: uuid.UUID, org: str, correlation_id: str, job: ProviderJob
) -> VideoGenerationProgressed:
    return VideoGenerationProgressed.new(
        video_id=video_id,
        org=org,
        correlation_id=correlation_id,
        provider_job_id=job.id,
        progress=job.progress,
    )


def generation_failed(
    *,
    video_id: uuid.UUID,
    org: str,
    correlation_id: str,
    code: str,
    message: str,
    provider_job_id: str | None = None,
) -> VideoFailed:
    return VideoFailed.new(
        video_id=video_id,
        org=org,
        correlation_id=correlation_id,
        stage="generation",
        code=code,
        message=message,
        retryable=False,
        provider_job_id=provider_job_id,
    )
