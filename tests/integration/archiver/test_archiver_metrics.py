"""The archiver's metrics after real archives (real JetStream, filesystem storage, the simulator
over HTTP), scraped over HTTP from the process's /metrics server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from reelvault_common.contracts.events import VideoFailed, VideoStored
from reelvault_common.runtime.settings import ServiceSettings

from tests.support.archiver_harness import (
    RunningSim,
    archiver_settings,
    completed_event,
    running_archiver,
)
from tests.support.metrics_scrape import Samples, value

pytestmark = pytest.mark.integration

# The ``scrape`` fixture comes from tests.support.metrics_scrape (a plugin of tests/conftest.py).


async def test_an_archive_is_measured_and_an_expired_job_is_not(
    sim: RunningSim, service_settings: ServiceSettings, tmp_path: Path,
    scrape: Callable[[], Awaitable[Samples]],
) -> None:
    job = await sim.completed_job()
    assert job.expires_at is not None
    settings = archiver_settings(service_settings, tmp_path / "storage", sim.base_url,
                                 metrics_interval_s=0.2)
    durable = f"{settings.namespace}-archiver-completed"
    async with running_archiver(settings) as h:
        before = await scrape()
        await h.publish(completed_event(job.id, job.expires_at))
        stored = await h.next_outcome()
        finished = datetime.now(UTC)
        assert isinstance(stored, VideoStored), stored
        assert stored.thumbnail is not None
        # A job whose provider copy expired before the run: nothing copied, nothing counted.
        await h.publish(completed_event(job.id, datetime.now(UTC) - timedelta(minutes=1)))
        assert isinstance(await h.next_outcome(), VideoFailed)
        await h.settled()
        deadline = time.monotonic() + 10
        while True:  # the lag is read periodically
            after = await scrape()
            labels = frozenset({("consumer", durable)})
            lag = (after.get(("reelvault_consumer_pending", labels)),
                   after.get(("reelvault_consumer_ack_pending", labels)))
            if lag == (0, 0):
                break
            assert time.monotonic() < deadline, lag
            await asyncio.sleep(0.1)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    files = stored.video.bytes + stored.thumbnail.bytes
    assert grew("reelvault_archive_bytes_total") == files
    assert grew("reelvault_archive_duration_seconds_count") == 1
    assert 0 < grew("reelvault_archive_duration_seconds_sum") < 60
    assert grew("reelvault_archive_margin_seconds_count") == 1
    expected_margin = (datetime.fromtimestamp(job.expires_at, UTC) - finished).total_seconds()
    assert grew("reelvault_archive_margin_seconds_sum") == pytest.approx(expected_margin, abs=5)
    assert grew("reelvault_storage_object_size_bytes_count", bucket="videos") == 1
    assert grew("reelvault_storage_object_size_bytes_sum", bucket="videos") == stored.video.bytes
    assert grew("reelvault_storage_object_size_bytes_count", bucket="thumbnails") == 1
    # The video and the thumbnail were downloaded, each once.
    assert grew("reelvault_provider_requests_total", provider="openai", route="content",
                code="200") == 2
    assert value(after, "reelvault_dead_letters") == 0
    assert (("reelvault_consumer_redeliveries_total", frozenset({("consumer", durable)}))
            in after)
