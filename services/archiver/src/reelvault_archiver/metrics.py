"""The archiver's metrics: what each archive stored (bytes, object sizes), how long the copy
took and how much time was left before the provider's copy expired, the provider downloads,
and the lag of its consumers.

An archive counts when the copier reports the video stored. A job whose provider copy had
expired before the run began and that was found already stored copied nothing: it is not
counted. A copy redone after a crash (its objects already there) counts again: it did
download the bytes again.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import httpx2
from nats.js import JetStreamContext
from prometheus_client import Counter, Histogram
from reelvault_common.contracts.events import VideoStored, utcnow
from reelvault_common.messaging.topology import Topology
from reelvault_common.providers.openai_videos import ContentVariant, ProviderError
from reelvault_common.runtime.metrics import (
    PeriodicCollectors,
    count_provider_request,
    watch_jetstream,
)

from reelvault_archiver.copier import ArchiveOutcome, ContentSource, Stored, VideoCopier
from reelvault_archiver.jobs import ArchiveJob
from reelvault_archiver.settings import ArchiverSettings

# The archiver downloads from the one provider at OPENAI_BASE_URL (the OpenAI Videos API).
PROVIDER = "openai"
# Every success of the OpenAI Videos API protocol is a 200.
SUCCESS = 200
MIB = 1024 * 1024

ARCHIVE_BYTES = Counter(
    "reelvault_archive_bytes", "Bytes archived: each stored video and its thumbnail.",
)
ARCHIVE_DURATION = Histogram(
    "reelvault_archive_duration_seconds",
    "Time to copy a video (and its thumbnail) into storage, once it had a copy slot.",
    buckets=(0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200),
)
ARCHIVE_MARGIN = Histogram(
    "reelvault_archive_margin_seconds",
    "Time left before the provider's copy expired when the archive finished (jobs with a "
    "known expiry; at or below 0: finished after it).",
    buckets=(0, 60, 300, 600, 900, 1200, 1800, 2400, 3000, 3600, 7200, 86400),
)
OBJECT_SIZE = Histogram(
    "reelvault_storage_object_size_bytes", "Size of each object the archiver stored.",
    ["bucket"],
    buckets=(16 * 1024, 64 * 1024, 256 * 1024, MIB, 4 * MIB, 16 * MIB, 64 * MIB, 256 * MIB,
             1024 * MIB),
)


@dataclass(frozen=True)
class ArchiveFacts:
    """What one finished archive adds to the metrics."""

    bytes: int
    objects: tuple[tuple[str, int], ...]  # (bucket, size) of each stored object
    margin_s: float | None


def archive_facts(
    job: ArchiveJob, stored: VideoStored, *, started_at: datetime, finished_at: datetime
) -> ArchiveFacts | None:
    """None when nothing was copied: the provider's copy had expired before the run began
    (the copier then only found the objects an earlier run stored)."""
    if job.expires_at is not None and job.expires_at <= started_at:
        return None
    files = [file for file in (stored.video, stored.thumbnail) if file is not None]
    margin = None if job.expires_at is None else (job.expires_at - finished_at).total_seconds()
    return ArchiveFacts(
        bytes=sum(file.bytes for file in files),
        objects=tuple((file.bucket, file.bytes) for file in files),
        margin_s=margin,
    )


def observe(facts: ArchiveFacts, duration_s: float) -> None:
    ARCHIVE_BYTES.inc(facts.bytes)
    ARCHIVE_DURATION.observe(duration_s)
    for bucket, size in facts.objects:
        OBJECT_SIZE.labels(bucket=bucket).observe(size)
    if facts.margin_s is not None:
        ARCHIVE_MARGIN.observe(facts.margin_s)


class MeteredCopier(VideoCopier):
    """The copier, observing each archive that ended stored."""

    async def archive(self, job: ArchiveJob, *, attempt: int = 1) -> ArchiveOutcome:
        started_at, started = utcnow(), time.perf_counter()
        outcome = await super().archive(job, attempt=attempt)
        if isinstance(outcome, Stored):
            facts = archive_facts(job, outcome.event, started_at=started_at,
                                  finished_at=utcnow())
            if facts is not None:
                observe(facts, time.perf_counter() - started)
        return outcome


class MeteredContentSource:
    """A ``ContentSource`` counting each download it opens
    (``reelvault_provider_requests_total{route="content"}``)."""

    def __init__(self, source: ContentSource, provider: str = PROVIDER) -> None:
        self._source = source
        self._provider = provider

    @asynccontextmanager
    async def stream_content(
        self, video_id: str, variant: ContentVariant = "video", *, chunk_size: int | None = None
    ) -> AsyncIterator[tuple[httpx2.Headers, AsyncIterator[bytes]]]:
        async with AsyncExitStack() as stack:
            try:
                opened = await stack.enter_async_context(
                    self._source.stream_content(video_id, variant, chunk_size=chunk_size))
            except ProviderError as exc:
                count_provider_request(self._provider, "content", exc.status)
                raise
            except BaseException:
                count_provider_request(self._provider, "content", None)
                raise
            count_provider_request(self._provider, "content", SUCCESS)
            yield opened


def start_collectors(
    settings: ArchiverSettings, js: JetStreamContext, topology: Topology, consumers: list[str]
) -> PeriodicCollectors:
    """The lag of the archiver's consumers and the dead-letter count, until ``stop()``."""
    collectors = PeriodicCollectors(settings.metrics_interval_s)
    watch_jetstream(collectors, js, topology, consumers)
    return collectors
