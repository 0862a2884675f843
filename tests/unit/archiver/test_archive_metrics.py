"""The archiver's metric rules: what a finished archive adds (bytes, object sizes, the margin
before the provider's copy expired), what is not an archive, and the content downloads counted
by answer."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx2
import pytest
from prometheus_client import REGISTRY
from reelvault_archiver.copier import Retry, Stored, VideoCopier
from reelvault_archiver.jobs import ArchiveJob
from reelvault_archiver.metrics import (
    ArchiveFacts,
    MeteredContentSource,
    MeteredCopier,
    archive_facts,
)
from reelvault_common.contracts.events import StoredFile, VideoStored
from reelvault_common.providers.openai_videos import ContentVariant, ProviderError
from reelvault_common.runtime.settings import StorageSettings
from reelvault_common.storage.layout import Buckets

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SHA = "0" * 64


def job(expires_at: datetime | None) -> ArchiveJob:
    return ArchiveJob(video_id=uuid.uuid4(), correlation_id="c", provider="openai",
                      provider_job_id="video_1", org="acme", requested_at=NOW,
                      expires_at=expires_at)


def stored(of: ArchiveJob, *, thumbnail: bool = True) -> VideoStored:
    return VideoStored.new(
        video_id=of.video_id, org=of.org, correlation_id=of.correlation_id,
        provider_job_id=of.provider_job_id,
        video=StoredFile(bucket="videos", key="acme/v.mp4", content_type="video/mp4",
                         bytes=5_000_000, sha256=SHA),
        thumbnail=StoredFile(bucket="thumbnails", key="acme/t.webp", content_type="image/webp",
                             bytes=20_000, sha256=SHA) if thumbnail else None,
    )


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_an_archive_adds_its_objects_and_the_time_left() -> None:
    archived = job(NOW + timedelta(minutes=50))
    facts = archive_facts(archived, stored(archived), started_at=NOW,
                          finished_at=NOW + timedelta(seconds=30))
    assert facts == ArchiveFacts(
        bytes=5_020_000, objects=(("videos", 5_000_000), ("thumbnails", 20_000)),
        margin_s=50 * 60 - 30)
    # No expiry known: no margin; no thumbnail: the video alone.
    open_ended = job(None)
    assert archive_facts(open_ended, stored(open_ended, thumbnail=False), started_at=NOW,
                         finished_at=NOW) == ArchiveFacts(5_000_000, (("videos", 5_000_000),), None)
    # Finished after the expiry (the download outran it): a margin below zero, still counted.
    late = job(NOW + timedelta(seconds=10))
    facts = archive_facts(late, stored(late), started_at=NOW,
                          finished_at=NOW + timedelta(seconds=40))
    assert facts is not None and facts.margin_s == -30


def test_a_job_expired_before_the_run_copied_nothing() -> None:
    expired = job(NOW - timedelta(seconds=1))
    assert archive_facts(expired, stored(expired), started_at=NOW, finished_at=NOW) is None


async def test_the_copier_observes_stored_archives_only(monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes: list[Stored | Retry] = []

    async def archive(self: VideoCopier, of: ArchiveJob, *, attempt: int = 1) -> Stored | Retry:
        return outcomes.pop(0)

    monkeypatch.setattr(VideoCopier, "archive", archive)
    copier = MeteredCopier(object(), object(), Buckets.from_settings(StorageSettings()))  # type: ignore[arg-type]
    archived = job(datetime.now(UTC) + timedelta(hours=1))
    outcomes.extend([Retry(1.0, "not yet"), Stored(stored(archived))])
    before = (sample("reelvault_archive_bytes_total"),
              sample("reelvault_archive_duration_seconds_count"),
              sample("reelvault_archive_margin_seconds_count"),
              sample("reelvault_storage_object_size_bytes_count", bucket="thumbnails"),
              sample("reelvault_archive_margin_seconds_bucket", le="3600.0"))
    assert isinstance(await copier.archive(archived), Retry)
    assert isinstance(await copier.archive(archived, attempt=2), Stored)
    after = (sample("reelvault_archive_bytes_total"),
             sample("reelvault_archive_duration_seconds_count"),
             sample("reelvault_archive_margin_seconds_count"),
             sample("reelvault_storage_object_size_bytes_count", bucket="thumbnails"),
             sample("reelvault_archive_margin_seconds_bucket", le="3600.0"))
    assert [b - a for a, b in zip(before, after, strict=True)] == [5_020_000, 1, 1, 1, 1]


class Source:
    def __init__(self, failure: Exception | None = None) -> None:
        self.failure = failure

    @asynccontextmanager
    async def stream_content(
        self, video_id: str, variant: ContentVariant = "video", *, chunk_size: int | None = None
    ) -> AsyncIterator[tuple[httpx2.Headers, AsyncIterator[bytes]]]:
        if self.failure is not None:
            raise self.failure

        async def chunks() -> AsyncIterator[bytes]:
            yield b"abc"
            raise ProviderError("download broke off", status=None)

        yield httpx2.Headers({"content-length": "6"}), chunks()


async def test_downloads_are_counted_when_opened_by_their_answer() -> None:
    def content(code: str) -> float:
        return sample("reelvault_provider_requests_total", provider="t-unit-archiver",
                      route="content", code=code)

    before = {code: content(code) for code in ("200", "404", "error")}
    ok = MeteredContentSource(Source(), provider="t-unit-archiver")
    async with ok.stream_content("video_1", "thumbnail", chunk_size=3) as (headers, chunks):
        assert headers["content-length"] == "6"
        # A body cut short is the copier's to judge: the request itself was answered.
        with pytest.raises(ProviderError):
            [chunk async for chunk in chunks]
    for failure in (ProviderError("gone", status=404), ProviderError("reset", status=None)):
        source = MeteredContentSource(Source(failure), provider="t-unit-archiver")
        with pytest.raises(ProviderError):
            async with source.stream_content("video_1"):
                pass
    assert {code: content(code) - count for code, count in before.items()} == {
        "200": 1, "404": 1, "error": 1}
