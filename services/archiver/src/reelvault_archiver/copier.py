"""The copy use case: provider content -> permanent storage, verified, as one decision.

Streams end to end (provider chunks go straight into ``storage.put``), so memory does not
grow with the video. Returns what the handler should do; it publishes nothing itself.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import httpx
from reelvault_common.contracts.events import StoredFile, VideoFailed, VideoStored, utcnow
from reelvault_common.openai_videos import ContentVariant, ProviderError
from reelvault_common.storage.interface import ObjectStorage, StorageError
from reelvault_common.storage.layout import Buckets

from reelvault_archiver.decisions import (
    GiveUp,
    RetryIn,
    RetryPolicy,
    check_before_copy,
    content_type_for,
    decide_on_error,
    declared_length,
)
from reelvault_archiver.jobs import ArchiveJob, Destination, Destinations
from reelvault_archiver.verification import StreamTally, VerificationFailed, verify_copy

log = logging.getLogger(__name__)

DEFAULT_CHUNK_BYTES = 1024 * 1024


class ContentSource(Protocol):
    """Where the bytes come from (``VideosClient`` is one)."""

    def stream_content(
        self, video_id: str, variant: ContentVariant = "video", *, chunk_size: int = ...
    ) -> AbstractAsyncContextManager[tuple[httpx.Headers, AsyncIterator[bytes]]]: ...


@dataclass(frozen=True)
class Stored:
    event: VideoStored


@dataclass(frozen=True)
class Failed:
    event: VideoFailed


@dataclass(frozen=True)
class Retry:
    delay: float
    reason: str


ArchiveOutcome = Stored | Failed | Retry


class _StepFailed(Exception):
    def __init__(self, variant: ContentVariant, cause: Exception) -> None:
        super().__init__(str(cause))
        self.variant = variant
        self.cause = cause


class VideoCopier:
    def __init__(
        self,
        storage: ObjectStorage,
        source: ContentSource,
        buckets: Buckets,
        *,
        policy: RetryPolicy | None = None,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self._storage = storage
        self._source = source
        self._buckets = buckets
        self._policy = policy or RetryPolicy()
        self._chunk_bytes = chunk_bytes
        self._clock = clock
        self._rng = rng

    async def archive(self, job: ArchiveJob, *, attempt: int = 1) -> ArchiveOutcome:
        """Copy the job's video (and thumbnail) into storage; ``attempt`` counts from 1."""
        now = self._clock()
        destinations = Destinations.for_job(job, self._buckets)
        refusal = check_before_copy(job, attempt=attempt, now=now, policy=self._policy)
        if refusal is not None:
            if refusal.code == "source_expired":
                # Copied already (e.g. acked too late, or a re-archive after expiry)? Then the
                # truth is "stored", not "failed".
                earlier = await self._already_stored(job, destinations)
                if earlier is not None:
                    log.info("job %s expired but is already archived", job.provider_job_id)
                    return earlier
            return self._failed(job, refusal)
        try:
            # The video first: it is what expires. A transient thumbnail failure afterwards
            # costs one more video download on the retry (an identical put is a no-op).
            video = await self._copy_step(job, "video", destinations.video)
            thumbnail = await self._copy_thumbnail(job, destinations.thumbnail)
        except _StepFailed as failed:
            decision = decide_on_error(
                failed.cause,
                job=job,
                variant=failed.variant,
                attempt=attempt,
                now=self._clock(),
                policy=self._policy,
                rng=self._rng,
            )
            if decision is None:
                raise failed.cause from None
            if isinstance(decision, RetryIn):
                log.warning(
                    "archive of job %s (attempt %d) will retry in %.1fs: %s",
                    job.provider_job_id, attempt, decision.delay, decision.reason,
                )
                return Retry(decision.delay, decision.reason)
            return self._failed(job, decision)
        return self._stored(job, video, thumbnail)

    # --- steps ----------------------------------------------------------------------------
    async def _copy_thumbnail(self, job: ArchiveJob, dest: Destination) -> StoredFile | None:
        try:
            return await self._copy_step(job, "thumbnail", dest)
        except _StepFailed as failed:
            cause = failed.cause
            if isinstance(cause, ProviderError) and cause.status == 404:
                # No thumbnail from this provider: stored without one for now.
                log.info("job %s has no thumbnail at the provider", job.provider_job_id)
                return None
            raise

    async def _copy_step(
        self, job: ArchiveJob, variant: ContentVariant, dest: Destination
    ) -> StoredFile:
        try:
            return await self._copy(job, variant, dest)
        except (ProviderError, StorageError, VerificationFailed) as exc:
            raise _StepFailed(variant, exc) from exc

    async def _copy(
        self, job: ArchiveJob, variant: ContentVariant, dest: Destination
    ) -> StoredFile:
        bucket = dest.bucket.name
        stream = self._source.stream_content(
            job.provider_job_id, variant, chunk_size=self._chunk_bytes
        )
        async with stream as (headers, chunks):
            content_type = content_type_for(variant, headers.get("content-type"))
            expected = declared_length(headers)
            # Refuse before downloading what the bucket would refuse after.
            dest.bucket.check_upload(content_type, expected)
            tally = StreamTally(chunks)
            stored = await self._storage.put(bucket, dest.key, tally, content_type)
        info = await self._storage.stat(bucket, dest.key)
        verify_copy(tally.facts(), stored, info, expected)
        log.info("stored %s of job %s: %s/%s (%d bytes)",
                 variant, job.provider_job_id, bucket, dest.key, stored.bytes)
        return stored

    async def _already_stored(self, job: ArchiveJob, destinations: Destinations) -> Stored | None:
        video = await self._stored_file(destinations.video)
        if video is None:
            return None
        return self._stored(job, video, await self._stored_file(destinations.thumbnail))

    async def _stored_file(self, dest: Destination) -> StoredFile | None:
        try:
            info = await self._storage.stat(dest.bucket.name, dest.key)
        except StorageError:
            return None
        if info is None or info.sha256 is None:
            return None
        return StoredFile(
            bucket=info.bucket,
            key=info.key,
            content_type=info.content_type,
            bytes=info.size,
            sha256=info.sha256,
            url=await self._storage.public_url(info.bucket, info.key),
        )

    # --- outcomes -------------------------------------------------------------------------
    @staticmethod
    def _stored(job: ArchiveJob, video: StoredFile, thumbnail: StoredFile | None) -> Stored:
        return Stored(
            VideoStored.new(
                video_id=job.video_id,
                correlation_id=job.correlation_id,
                video=video,
                thumbnail=thumbnail,
                provider_job_id=job.provider_job_id,
            )
        )

    @staticmethod
    def _failed(job: ArchiveJob, give_up: GiveUp) -> Failed:
        log.warning(
            "archive of job %s failed: %s %s", job.provider_job_id, give_up.code, give_up.message
        )
        return Failed(
            VideoFailed.new(
                video_id=job.video_id,
                correlation_id=job.correlation_id,
                stage="archive",
                code=give_up.code,
                message=give_up.message,
                retryable=give_up.retryable,
                provider_job_id=job.provider_job_id,
            )
        )
