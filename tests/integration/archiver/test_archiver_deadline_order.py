"""Work ordered by deadline, through a real JetStream: of several pending VideoCompleted events,
the archiver copies the earliest-expiring first, and messages waiting for a copy slot are
heartbeated (not redelivered) however long they wait."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
from reelvault_archiver.copier import VideoCopier
from reelvault_archiver.jobs import ArchiveJob
from reelvault_common.contracts.events import VideoStored
from reelvault_common.messaging.setup import prepare_topology
from reelvault_common.messaging.topology import Topology
from reelvault_common.runtime.settings import ServiceSettings

from tests.support.archiver_harness import (
    RunningSim,
    archiver_settings,
    completed_event,
    running_archiver,
)

pytestmark = pytest.mark.integration


async def publish_pending(settings: Any, events: list[Any]) -> None:
    """Publish before the archiver runs: all of them are pending when it starts."""
    topology = Topology.from_settings(settings)
    await prepare_topology(settings, topology)
    nc = await nats.connect(settings.nats_url)
    try:
        js = nc.jetstream()
        for event in events:
            await js.publish(topology.subject(event.type, event.org),
                             event.model_dump_json().encode(),
                             headers={"Nats-Msg-Id": str(event.event_id)})
    finally:
        await nc.close()


async def test_the_earliest_expiring_video_is_copied_first(
    sim: RunningSim, service_settings: ServiceSettings, tmp_path: Path
) -> None:
    jobs = [await sim.completed_job() for _ in range(5)]
    now = datetime.now(UTC)
    # Published latest-expiring first, so stream order is the opposite of deadline order.
    minutes = [50, 40, 30, 20, 10]
    events = [
        completed_event(job.id, now + timedelta(minutes=m), video_id=uuid.uuid4())
        for job, m in zip(jobs, minutes, strict=True)
    ]
    settings = archiver_settings(service_settings, tmp_path / "storage", sim.base_url,
                                 max_workers=1)
    await publish_pending(settings, events)
    async with running_archiver(settings) as h:
        outcomes = [await h.next_outcome(within_s=30) for _ in events]
        assert all(isinstance(o, VideoStored) for o in outcomes), outcomes
        by_deadline = sorted(events, key=lambda e: e.expires_at)
        assert [o.video_id for o in outcomes] == [e.video_id for e in by_deadline]
        await h.settled()


async def test_waiting_messages_are_heartbeated_not_redelivered(
    sim: RunningSim,
    service_settings: ServiceSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    copy_s = 1.2
    real_archive = VideoCopier.archive
    started: list[str] = []

    async def slow_archive(self: VideoCopier, job: ArchiveJob, *, attempt: int = 1) -> Any:
        started.append(job.provider_job_id)
        await asyncio.sleep(copy_s)  # a long copy: the others wait for the single slot
        return await real_archive(self, job, attempt=attempt)

    monkeypatch.setattr(VideoCopier, "archive", slow_archive)
    jobs = [await sim.completed_job() for _ in range(4)]
    now = datetime.now(UTC)
    events = [completed_event(job.id, now + timedelta(minutes=30)) for job in jobs]
    # The last one waits about 3 x 1.2 s, well past ack_wait: only heartbeats keep it.
    settings = archiver_settings(service_settings, tmp_path / "storage", sim.base_url,
                                 max_workers=1, consumers={"ack_wait_s": 1.5})
    await publish_pending(settings, events)
    async with running_archiver(settings) as h:
        outcomes = [await h.next_outcome(within_s=30) for _ in events]
        assert all(isinstance(o, VideoStored) for o in outcomes), outcomes
        info = await h.settled(within_s=15)
        assert info.delivered.consumer_seq == len(events)  # each delivered exactly once
        assert info.num_redelivered == 0
    assert sorted(started) == sorted(job.id for job in jobs)
    assert len(started) == len(jobs)  # no copy ran twice


async def test_stopping_hands_waiting_messages_back_at_once(
    sim: RunningSim,
    service_settings: ServiceSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_archive = VideoCopier.archive
    started: list[str] = []
    slow = True

    async def archive(self: VideoCopier, job: ArchiveJob, *, attempt: int = 1) -> Any:
        started.append(job.provider_job_id)
        if slow:
            await asyncio.sleep(30)  # still copying when the archiver stops
        return await real_archive(self, job, attempt=attempt)

    monkeypatch.setattr(VideoCopier, "archive", archive)
    jobs = [await sim.completed_job() for _ in range(3)]
    now = datetime.now(UTC)
    events = [completed_event(job.id, now + timedelta(minutes=10 * (i + 1)))
              for i, job in enumerate(jobs)]
    ack_wait_s = 8.0
    settings = archiver_settings(service_settings, tmp_path / "storage", sim.base_url,
                                 max_workers=1, consumers={"ack_wait_s": ack_wait_s})
    await publish_pending(settings, events)
    async with running_archiver(settings):
        deadline = asyncio.get_running_loop().time() + 15
        while not started:
            assert asyncio.get_running_loop().time() < deadline, "no copy started"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # the other two are waiting for the slot by now
    stopped_at = asyncio.get_running_loop().time()
    assert started == [jobs[0].id]  # earliest deadline first; the others never started

    slow = False
    async with running_archiver(settings) as h:
        arrived: dict[uuid.UUID, float] = {}
        while len(arrived) < len(events):
            outcome = await h.next_outcome(within_s=ack_wait_s + 15)
            assert isinstance(outcome, VideoStored), outcome
            arrived[outcome.video_id] = asyncio.get_running_loop().time() - stopped_at
    # The two that were waiting were handed back (nak) at stop: redelivered at once, not after
    # ack_wait. (The copy cut off mid-way comes back too, at the latest after ack_wait.)
    for event in events[1:]:
        assert arrived[event.video_id] < ack_wait_s - 1, arrived
