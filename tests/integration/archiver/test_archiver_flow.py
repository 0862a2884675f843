"""The archiver end to end: a real JetStream, real filesystem storage, and the Videos API
simulator (``reelvault_providersim``) over real HTTP on 127.0.0.1 as the provider."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from reelvault_common.contracts.events import VideoArchiveRequested, VideoFailed, VideoStored
from reelvault_common.runtime.settings import ServiceSettings
from reelvault_common.storage.layout import video_key

from tests.support.archiver_harness import (
    REQUESTED_AT,
    RunningSim,
    archiver_settings,
    completed_event,
    running_archiver,
)

pytestmark = pytest.mark.integration

MB = 1024 * 1024


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(MB):
            digest.update(block)
    return digest.hexdigest()


@pytest.fixture
async def sim() -> AsyncIterator[RunningSim]:
    # Videos padded to 4 MiB: several chunks, so a cut lands mid-body.
    async with RunningSim(pad_video_to_bytes=4 * MB) as running:
        yield running


async def test_completed_video_is_stored_with_the_served_bytes(
    sim: RunningSim, service_settings: ServiceSettings, tmp_path: Path
) -> None:
    job = await sim.completed_job()
    served_sha, served_size = await sim.sha256(job.id)
    thumb_sha, thumb_size = await sim.sha256(job.id, "thumbnail")
    settings = archiver_settings(service_settings, tmp_path / "storage", sim.base_url)
    async with running_archiver(settings) as h:
        event = completed_event(job.id, job.expires_at, org="globex")
        await h.publish(event)
        outcome = await h.next_outcome()

        assert isinstance(outcome, VideoStored), outcome
        assert outcome.video_id == event.video_id
        assert outcome.correlation_id == event.correlation_id
        # The completion's organization: in the event, its subject and the storage keys.
        assert outcome.org == "globex"
        assert h.subjects[outcome.event_id] == h.topology.subject("video.stored", "globex")
        assert outcome.provider_job_id == job.id
        assert outcome.video.bucket == "videos"
        assert outcome.video.key == video_key("globex", REQUESTED_AT, event.video_id)
        assert outcome.video.key.startswith("globex/2026/03/")
        assert outcome.video.content_type == "video/mp4"
        assert (outcome.video.bytes, outcome.video.sha256) == (served_size, served_sha)
        assert outcome.video.url is None  # private bucket: signed links only
        on_disk = h.storage.local_path("videos", outcome.video.key)
        assert sha256_file(on_disk) == served_sha
        assert outcome.thumbnail is not None
        assert outcome.thumbnail.bucket == "thumbnails"
        assert outcome.thumbnail.content_type == "image/webp"
        assert (outcome.thumbnail.bytes, outcome.thumbnail.sha256) == (thumb_size, thumb_sha)
        assert outcome.thumbnail.url is not None  # public bucket
        info = await h.settled()
        assert info.delivered.consumer_seq == 1  # delivered once, acked
    assert await sim.content_calls() == 2  # one video, one thumbnail download


async def test_redelivered_event_reuses_the_key_and_reports_the_same_result(
    sim: RunningSim, service_settings: ServiceSettings, tmp_path: Path
) -> None:
    job = await sim.completed_job()
    settings = archiver_settings(service_settings, tmp_path / "storage", sim.base_url)
    async with running_archiver(settings) as h:
        first_event = completed_event(job.id, job.expires_at)
        await h.publish(first_event)
        first = await h.next_outcome()
        # The same logical completion again, under another event id (a republish).
        await h.publish(first_event.model_copy(update={"event_id": uuid.uuid4()}))
        second = await h.next_outcome()

        assert isinstance(first, VideoStored)
        assert isinstance(second, VideoStored)
        assert second.event_id == first.event_id  # so JetStream drops it as a duplicate
        assert second.model_dump(exclude={"occurred_at"}) == first.model_dump(
            exclude={"occurred_at"})
        await h.settled()
        assert len(h.stored_files()) == 2  # one video, one thumbnail
        stream = await h.js.stream_info(h.topology.stream, subjects_filter=">")
        assert stream.state.subjects is not None
        assert stream.state.subjects.get(h.topology.subject("video.stored", "acme")) == 1
        assert h.topology.subject("video.failed", "acme") not in stream.state.subjects
    # Video twice (every delivery re-verifies against the provider), thumbnail once: the second
    # run finds it stored at its deterministic key and reuses it.
    assert await sim.content_calls() == 3


async def test_rearchive_request_goes_through_the_same_copy(
    sim: RunningSim, service_settings: ServiceSettings, tmp_path: Path
) -> None:
    job = await sim.completed_job()
    served_sha, _ = await sim.sha256(job.id)
    settings = archiver_settings(service_settings, tmp_path / "storage", sim.base_url)
    async with running_archiver(settings) as h:
        assert job.expires_at is not None
        request = VideoArchiveRequested.new(
            video_id=uuid.uuid4(), org="acme", correlation_id="corr-re", provider="openai",
            provider_job_id=job.id, expires_at=datetime.fromtimestamp(job.expires_at, UTC),
            requested_at=REQUESTED_AT,
        )
        await h.publish(request)
        outcome = await h.next_outcome()
        assert isinstance(outcome, VideoStored), outcome
        assert outcome.video_id == request.video_id
        assert outcome.video.sha256 == served_sha
        await h.settled("rearchive")


async def test_expired_source_fails_and_stores_nothing(
    service_settings: ServiceSettings, tmp_path: Path
) -> None:
    async with RunningSim(content_ttl_s=0.5) as short_lived:
        job = await short_lived.completed_job()
        assert job.expires_at is not None
        # Let the provider's own deadline pass.
        await asyncio.sleep(max(0.0, job.expires_at - time.time()) + 0.1)
        settings = archiver_settings(service_settings, tmp_path / "storage",
                                     short_lived.base_url)
        async with running_archiver(settings) as h:
            await h.publish(completed_event(job.id, job.expires_at))
            outcome = await h.next_outcome()

            assert isinstance(outcome, VideoFailed), outcome
            assert outcome.stage == "archive"
            assert outcome.code == "source_expired"
            assert not outcome.retryable
            assert outcome.provider_job_id == job.id
            assert job.id in outcome.message
            assert "expired at" in outcome.message
            await h.settled()
            assert h.stored_files() == []
        assert await short_lived.content_calls() == 0  # not even tried


async def test_download_cut_mid_body_is_retried_and_stored_intact(
    sim: RunningSim, service_settings: ServiceSettings, tmp_path: Path
) -> None:
    job = await sim.completed_job()
    served_sha, served_size = await sim.sha256(job.id)
    await sim.push_faults({"kind": "content_cut", "times": 2, "cut_fraction": 0.4})
    settings = archiver_settings(service_settings, tmp_path / "storage", sim.base_url)
    async with running_archiver(settings) as h:
        await h.publish(completed_event(job.id, job.expires_at))
        outcome = await h.next_outcome()

        assert isinstance(outcome, VideoStored), outcome
        assert (outcome.video.bytes, outcome.video.sha256) == (served_size, served_sha)
        assert sha256_file(h.storage.local_path("videos", outcome.video.key)) == served_sha
        info = await h.settled()
        assert info.delivered.consumer_seq == 3  # two naks, then the ack
        # No leftovers of the cut attempts.
        assert list((Path(settings.storage_dir) / ".tmp").iterdir()) == []
    faults = await sim.faults()
    assert faults["injected"].get("content_cut") == 2
    assert faults["pending"] == []


async def test_server_errors_and_rate_limits_on_content_are_retried(
    sim: RunningSim, service_settings: ServiceSettings, tmp_path: Path
) -> None:
    job = await sim.completed_job()
    served_sha, _ = await sim.sha256(job.id)
    await sim.push_faults(
        {"kind": "rate_limit", "route": "content", "times": 1, "retry_after_s": 0.2},
        {"kind": "content_error", "status": 502, "times": 2},
    )
    settings = archiver_settings(service_settings, tmp_path / "storage", sim.base_url)
    async with running_archiver(settings) as h:
        await h.publish(completed_event(job.id, job.expires_at))
        outcome = await h.next_outcome()
        assert isinstance(outcome, VideoStored), outcome
        assert outcome.video.sha256 == served_sha
        info = await h.settled()
        assert info.delivered.consumer_seq == 4  # 429, 502, 502, then stored
    faults = await sim.faults()
    assert faults["injected"].get("rate_limit") == 1
    assert faults["injected"].get("content_error") == 2
    assert await sim.content_calls() == 5  # 3 failed video downloads, then video + thumbnail


async def test_unknown_job_is_retried_then_reported_not_found(
    sim: RunningSim, service_settings: ServiceSettings, tmp_path: Path
) -> None:
    settings = archiver_settings(service_settings, tmp_path / "storage", sim.base_url,
                                 not_found_attempts=3)
    async with running_archiver(settings) as h:
        expires = datetime.now(UTC) + timedelta(hours=1)
        await h.publish(completed_event("video_0000doesnotexist", expires))
        outcome = await h.next_outcome()

        assert isinstance(outcome, VideoFailed), outcome
        assert outcome.code == "source_not_found"
        assert not outcome.retryable
        assert "video_0000doesnotexist" in outcome.message
        await h.settled()
        assert h.stored_files() == []
    assert await sim.content_calls() == 3


async def test_different_bytes_at_the_key_fail_with_object_conflict(
    sim: RunningSim, service_settings: ServiceSettings, tmp_path: Path
) -> None:
    job = await sim.completed_job()
    settings = archiver_settings(service_settings, tmp_path / "storage", sim.base_url)
    async with running_archiver(settings) as h:
        event = completed_event(job.id, job.expires_at)
        key = video_key("acme", REQUESTED_AT, event.video_id)

        async def other_bytes() -> AsyncIterator[bytes]:
            yield b"not the provider's video"

        await h.storage.put("videos", key, other_bytes(), "video/mp4")
        await h.publish(event)
        outcome = await h.next_outcome()

        assert isinstance(outcome, VideoFailed), outcome
        assert outcome.code == "object_conflict"
        assert f"videos/{key} already holds different bytes" in outcome.message
        assert not outcome.retryable
        await h.settled()
        stat = await h.storage.stat("videos", key)  # the earlier object is untouched
        assert stat is not None
        assert stat.sha256 == hashlib.sha256(b"not the provider's video").hexdigest()
