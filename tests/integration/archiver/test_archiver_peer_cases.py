"""Provider behaviours the simulator does not produce on demand, against a small in-test
peer that follows the Videos API doc (tests/support/videos_peer.py): a provider with no
thumbnail (404 on ``variant=thumbnail``), and a download slower than ack_wait."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from reelvault_common.contracts.events import VideoStored
from reelvault_common.runtime.settings import ServiceSettings

from tests.support.archiver_harness import (
    API_KEY,
    archiver_settings,
    completed_event,
    running_archiver,
)
from tests.support.videos_peer import CHUNK, VideosPeer

pytestmark = pytest.mark.integration


@pytest.fixture
async def peer() -> AsyncIterator[VideosPeer]:
    async with VideosPeer(API_KEY) as running:
        yield running


async def test_provider_without_thumbnail_stores_the_video_alone(
    peer: VideosPeer, service_settings: ServiceSettings, tmp_path: Path
) -> None:
    job = peer.add_job(thumbnail=False)
    settings = archiver_settings(service_settings, tmp_path / "storage", peer.base_url)
    async with running_archiver(settings) as h:
        await h.publish(completed_event(job.id, int(job.expires_at)))
        outcome = await h.next_outcome()
        assert isinstance(outcome, VideoStored), outcome
        assert outcome.video.sha256 == job.sha256("video")
        # The peer's "video" is synthetic bytes, so no frame can be extracted either: the video
        # is still reported stored (tests/integration/archiver/test_archiver_thumbnails.py
        # covers the extraction from a real MP4).
        assert outcome.thumbnail is None
        await h.settled()
        assert [p.name for p in h.stored_files()] == ["video.mp4"]
    assert peer.downloads(job, "thumbnail") == [404]  # asked once, not retried


async def test_heartbeat_keeps_a_copy_longer_than_ack_wait_from_being_redelivered(
    service_settings: ServiceSettings, tmp_path: Path
) -> None:
    # ~2.4 s of streaming against a 1.5 s ack_wait: without the runner's in_progress() the
    # server would hand the message to the second worker mid-copy, and the video would be
    # downloaded twice.
    async with VideosPeer(API_KEY, chunk_delay_s=0.3) as slow_peer:
        job = slow_peer.add_job(video_bytes=8 * CHUNK)
        settings = archiver_settings(service_settings, tmp_path / "storage", slow_peer.base_url,
                                     consumers={"ack_wait_s": 1.5})
        async with running_archiver(settings) as h:
            await h.publish(completed_event(job.id, int(job.expires_at)))
            outcome = await h.next_outcome(within_s=20)
            assert isinstance(outcome, VideoStored), outcome
            info = await h.settled()
            assert info.delivered.consumer_seq == 1
        assert slow_peer.downloads(job) == [200]
