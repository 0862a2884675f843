"""The copy use case: provider content -> permanent storage, verified, as one decision.

Streams end to end (provider chunks go straight into ``storage.put``), so memory does not
grow with the video. Returns what the handler should do; it publishes nothing itself.

The video decides the outcome (stored, retry, failed). The thumbnail never does: once the video
is stored, the provider's thumbnail is copied (transient trouble retried a few times in
process), else a frame of the stored video is extracted (``thumbnails.py``), else the video is
reported stored without one.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

import httpx2
from reelvault_common.contracts.events import StoredFile, VideoFailed, VideoStored, utcnow
from reelvault_common.providers.openai_videos import ContentVariant, ProviderError
from reelvault_common.runtime import telemetry
from reelvault_common.storage.interface import (
    ObjectConflict,
    ObjectStorage,
    StorageError,
    StreamLengthMismatch,
    TransientStorageError,
)
from reelvault_common.storage.layout import Buckets

from reelvault_archiver.decisions import (
    GiveUp,
    RetryIn,
    RetryPolicy,
    check_before_copy,
    content_type_for,
    decide_on_error,
    declared_length,
    describe_provider_error,
    retry_within_deadline,
)
from reelvault_archiver.jobs import ArchiveJob, Destination, Destinations
from reelvault_archiver.thumbnails import THUMBNAIL_CONTENT_TYPE, ThumbnailSpec, extract_thumbnail
from reelvault_archiver.verification import StreamTally, VerificationFailed, verify_copy

log = logging.getLogger(__name__)


class ContentSource(Protocol):
    """Where the bytes come from (``VideosClient`` is one)."""

    def stream_content(
        self, video_id: str, variant: ContentVariant = "video", *, chunk_size: int | None = ...
    ) -> AbstractAsyncContextManager[tuple[httpx2.Headers, AsyncIterator[bytes]]]: ...


@runtime_checkable
class ContentRouter(Protocol):
    """The content source of each provider (``sources.ContentSources``)."""

    def of(self, provider: str) -> ContentSource: ...


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


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


class _StepFailed(Exception):
    def __init__(self, variant: ContentVariant, cause: Exception) -> None:
        super().__init__(str(cause))
        self.variant = variant
        self.cause = cause


class VideoCopier:
    def __init__(
        self,
        storage: ObjectStorage,
        source: ContentSource | ContentRouter,
        buckets: Buckets,
        *,
        policy: RetryPolicy | None = None,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        thumbnail_attempts: int = 3,
        thumbnails: ThumbnailSpec | None = None,
    ) -> None:
        self._storage = storage
        self._source = source
        self._buckets = buckets
        self._policy = policy or RetryPolicy()
        self._clock = clock
        self._rng = rng
        self._thumbnail_attempts = max(1, thumbnail_attempts)
        self._thumbnails = thumbnails or ThumbnailSpec()

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
            # The video first: it is what expires.
            video = await self._copy_step(job, "video", destinations.video)
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
        # From here on the video is stored and verified: whatever happens to the thumbnail,
        # the outcome is VideoStored (with or without one), never a failure or a retry that
        # would download the whole video again.
        return self._stored(job, video, await self._thumbnail(job, destinations.thumbnail, video))

    # --- steps ----------------------------------------------------------------------------
    async def _thumbnail(
        self, job: ArchiveJob, dest: Destination, video: StoredFile
    ) -> StoredFile | None:
        """The provider's thumbnail; else (none, or failing for good) a frame extracted from
        the stored video; else None. Never raises for thumbnail trouble."""
        earlier = await self._stored_file(dest)
        if earlier is not None:
            # An earlier attempt stored it (provider's or extracted): keys are never rewritten.
            return earlier
        problem = await self._provider_thumbnail(job, dest)
        if isinstance(problem, StoredFile):
            return problem
        log.info("job %s: %s; extracting a frame from the stored video", job.provider_job_id,
                 problem)
        return await self._extracted_or_none(job, dest, video, problem)

    async def _extracted_or_none(
        self, job: ArchiveJob, dest: Destination, video: StoredFile, why: str
    ) -> StoredFile | None:
        """A frame of the stored video as the thumbnail, or None: best effort, the stored video
        is what must be reported."""
        try:
            return await self._extracted_thumbnail(job, dest, video)
        except Exception as exc:
            log.warning("job %s is stored without a thumbnail: %s; extraction failed: %r",
                        job.provider_job_id, why, exc)
            return None

    async def _provider_thumbnail(self, job: ArchiveJob, dest: Destination) -> StoredFile | str:
        """The provider's thumbnail, stored; or why there is none. Transient trouble is retried
        here, a few times and never past ``expires_at`` (a message-level retry would download
        the video again)."""
        for attempt in range(1, self._thumbnail_attempts + 1):
            try:
                return await self._copy(job, "thumbnail", dest)
            except ProviderError as exc:
                if exc.status == 404:
                    return "the provider has no thumbnail"
                problem = describe_provider_error(exc, "thumbnail")
                if not exc.transient:
                    return problem
                at_least = exc.retry_after_s or 0.0
            except ObjectConflict:
                # Another copy of this job stored one in between: use it.
                raced = await self._stored_file(dest)
                if raced is not None:
                    return raced
                return "another thumbnail is in the way"
            except (TransientStorageError, VerificationFailed) as exc:
                problem, at_least = f"thumbnail: {exc}", 0.0
            except StorageError as exc:  # bucket rules: too large, wrong type, ...
                return f"thumbnail refused by storage: {exc.message}"
            if attempt >= self._thumbnail_attempts:
                return f"{problem} (after {attempt} attempts)"
            decision = retry_within_deadline(
                job, problem, attempt=attempt, now=self._clock(), policy=self._policy,
                at_least_s=at_least, rng=self._rng,
            )
            if not isinstance(decision, RetryIn):
                return problem
            log.info("thumbnail of job %s: %s; retrying in %.1fs", job.provider_job_id, problem,
                     decision.delay)
            await asyncio.sleep(decision.delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _extracted_thumbnail(
        self, job: ArchiveJob, dest: Destination, video: StoredFile
    ) -> StoredFile:
        webp = await extract_thumbnail(
            lambda: self._storage.read(video.bucket, video.key), video.bytes, self._thumbnails
        )
        dest.bucket.check_upload(THUMBNAIL_CONTENT_TYPE, len(webp))
        tally = StreamTally(_once(webp))
        stored = await self._storage.put(
            dest.bucket.name, dest.key, tally, THUMBNAIL_CONTENT_TYPE, size=len(webp)
        )
        info = await self._storage.stat(dest.bucket.name, dest.key)
        verify_copy(tally.facts(), stored, info, len(webp))
        log.info("stored an extracted thumbnail of job %s: %s/%s (%d bytes)",
                 job.provider_job_id, dest.bucket.name, dest.key, stored.bytes)
        return stored

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
        where = {"reelvault.storage.bucket": dest.bucket.name, "reelvault.storage.key": dest.key}
        with telemetry.span(f"copy {variant}", where) as span:
            stored = await self._copy_once(job, variant, dest)
            if span is not None:
                span.set_attribute("reelvault.storage.bytes", stored.bytes)
            return stored

    async def _copy_once(
        self, job: ArchiveJob, variant: ContentVariant, dest: Destination
    ) -> StoredFile:
        bucket = dest.bucket.name
        source = self._source.of(job.provider) if isinstance(self._source, ContentRouter) \
            else self._source
        # The pieces as the connection read them (at most ``download_chunk_bytes``): re-slicing
        # them into equal chunks would copy every byte.
        stream = source.stream_content(job.content_id, variant)
        async with stream as (headers, chunks):
            content_type = content_type_for(variant, headers.get("content-type"))
            expected = declared_length(headers)
            # Refuse before downloading what the bucket would refuse after.
            dest.bucket.check_upload(content_type, expected)
            # Videos: counted here, hashed once by the backend (see StreamTally).
            tally = StreamTally(chunks, hash_bytes=variant != "video")
            try:
                stored = await self._storage.put(
                    bucket, dest.key, tally, content_type, size=expected
                )
            except StreamLengthMismatch as exc:  # nothing was stored
                raise VerificationFailed(
                    f"received {tally.size} bytes or more, but the provider announced "
                    f"{expected}: {exc.message}"
                ) from exc
        info = await self._storage.stat(bucket, dest.key)
        verify_copy(tally.facts(), stored, info, expected)
        log.info("stored %s of job %s: %s/%s (%d bytes)",
                 variant, job.provider_job_id, bucket, dest.key, stored.bytes)
        return stored

    async def _already_stored(self, job: ArchiveJob, destinations: Destinations) -> Stored | None:
        video = await self._stored_file(destinations.video)
        if video is None:
            return None
        thumbnail = await self._stored_file(destinations.thumbnail)
        if thumbnail is None:
            # E.g. a crash between the two copies: the provider's copy is gone, the frame is not.
            thumbnail = await self._extracted_or_none(
                job, destinations.thumbnail, video, "the provider's copy has expired"
            )
        return self._stored(job, video, thumbnail)

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
                org=job.org,
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
                org=job.org,
                correlation_id=job.correlation_id,
                stage="archive",
                code=give_up.code,
                message=give_up.message,
                retryable=give_up.retryable,
                provider_job_id=job.provider_job_id,
            )
        )
