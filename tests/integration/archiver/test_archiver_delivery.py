"""Delivery edges of the archiver's consumers on a real JetStream: payloads nobody can read,
and a copy that keeps failing past the consumer's last allowed delivery."""

from __future__ import annotations

from pathlib import Path

import pytest
from reelvault_common.contracts.events import VideoFailed, VideoRequested, VideoStored
from reelvault_common.messaging.deadletter import list_dead_letters
from reelvault_common.runtime.settings import ServiceSettings

from tests.support.archiver_harness import (
    RunningSim,
    archiver_settings,
    completed_event,
    running_archiver,
)

pytestmark = pytest.mark.integration


async def test_undecodable_payloads_are_rejected_and_work_goes_on(
    sim: RunningSim, service_settings: ServiceSettings, tmp_path: Path
) -> None:
    job = await sim.completed_job()
    settings = archiver_settings(service_settings, tmp_path / "storage", sim.base_url)
    async with running_archiver(settings) as h:
        subject = h.topology.subject("video.completed", "acme")
        await h.js.publish(subject, b"{not json", headers={"Nats-Msg-Id": "bad-1"})
        # Valid JSON, but another event type on this subject.
        wrong = VideoRequested.new(video_id=completed_event(job.id, job.expires_at).video_id,
                                   org="acme", correlation_id="c", prompt="p", model="sora-2",
                                   seconds="4", size="720x1280")
        await h.js.publish(subject, wrong.model_dump_json().encode(),
                           headers={"Nats-Msg-Id": "bad-2"})
        await h.publish(completed_event(job.id, job.expires_at))

        outcome = await h.next_outcome()
        assert isinstance(outcome, VideoStored), outcome
        info = await h.settled()
        assert info.delivered.consumer_seq == 3  # each delivered once: rejected, not retried
        assert h.outcomes.empty()  # a reject publishes nothing


async def test_copy_failing_past_the_last_delivery_is_dead_lettered(
    sim: RunningSim, service_settings: ServiceSettings, tmp_path: Path
) -> None:
    job = await sim.completed_job()
    await sim.push_faults({"kind": "content_error", "status": 503, "times": 50})
    settings = archiver_settings(service_settings, tmp_path / "storage", sim.base_url,
                                 consumers={"max_deliver": 3})
    async with running_archiver(settings) as h:
        # No expires_at: no deadline ends the retries, only the delivery limit does.
        event = completed_event(job.id, None)
        await h.publish(event)
        outcome = await h.next_outcome()

        assert isinstance(outcome, VideoFailed), outcome
        assert outcome.video_id == event.video_id
        assert outcome.stage == "archive"
        assert outcome.code == "dead_lettered"
        assert outcome.retryable
        await h.settled()
        assert h.stored_files() == []
        letters = await list_dead_letters(settings.nats_url, h.topology)
        assert len(letters) == 1
        assert letters[0].letter.deliveries == 3
        assert letters[0].letter.subject == h.topology.subject("video.completed", "acme")
        assert "503" in letters[0].letter.error
    assert (await sim.faults())["injected"].get("content_error") == 3


async def test_start_refuses_a_bucket_with_other_rules(
    sim: RunningSim, service_settings: ServiceSettings, tmp_path: Path
) -> None:
    from reelvault_archiver.app import ArchiverService
    from reelvault_common.storage.filesystem import FilesystemStorage
    from reelvault_common.storage.interface import BucketRulesMismatch, BucketSpec

    storage_dir = tmp_path / "storage"
    existing = FilesystemStorage(storage_dir, "http://127.0.0.1:8000", b"k")
    await existing.ensure_buckets([BucketSpec("videos", True, None, None)])  # public, no limits
    service = ArchiverService(archiver_settings(service_settings, storage_dir, sim.base_url))
    with pytest.raises(BucketRulesMismatch, match="bucket videos exists with rules"):
        await service.start()
    await service.stop()  # still safe to call
