"""Graceful shutdown of ``python -m reelvault_archiver`` with a download in flight (the
simulator holds the content request): SIGTERM lets the copy finish within the grace period and
exits 0 -- or hands the message back when the grace period is shorter, exits 0, and the next
archiver copies the video at once (well before ``ack_wait``). Nothing lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from reelvault_common.contracts.events import VideoStored, parse_event
from reelvault_common.messaging.setup import prepare_topology
from reelvault_common.messaging.topology import Topology
from reelvault_common.runtime.settings import ServiceSettings

from tests.support.archiver_harness import API_KEY, RunningSim, completed_event
from tests.support.service_process import service_process

pytestmark = pytest.mark.integration

ACK_WAIT_S = 120  # a redelivery within seconds can only be a hand-back


@pytest.fixture
async def nc(service_settings: ServiceSettings) -> AsyncIterator[Client]:
    await prepare_topology(service_settings, Topology.from_settings(service_settings))
    client = await nats.connect(service_settings.nats_url)
    try:
        yield client
    finally:
        await client.close()


def archiver_env(settings: ServiceSettings, sim: RunningSim, storage: Path, grace_s: float
                 ) -> dict[str, str]:
    return {
        "NATS_URL": settings.nats_url,
        "REELVAULT_NAMESPACE": settings.namespace,
        "REELVAULT_STREAM_DUPLICATE_WINDOW_S": "60",
        "REELVAULT_STORAGE_DIR": str(storage),
        "REELVAULT_STORAGE_SIGNING_KEY": "shutdown-test-signing-key",
        "OPENAI_BASE_URL": sim.base_url,
        "OPENAI_API_KEY": API_KEY,
        "REELVAULT_SHUTDOWN_GRACE_S": str(grace_s),
        "REELVAULT_COMPLETED__ACK_WAIT_S": str(ACK_WAIT_S),
        "REELVAULT_REARCHIVE__ACK_WAIT_S": str(ACK_WAIT_S),
    }


async def stored_events(nc: Client, topology: Topology) -> list[VideoStored]:
    found: list[VideoStored] = []

    async def collect(msg: object) -> None:
        event = parse_event(msg.data)  # type: ignore[attr-defined]
        assert isinstance(event, VideoStored)
        found.append(event)

    await nc.subscribe(topology.subject_for(VideoStored), cb=collect)
    await nc.flush()
    return found


async def until(check: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_sigterm_lets_a_download_in_flight_finish_and_exits_0(
    service_settings: ServiceSettings, sim: RunningSim, nc: Client, tmp_path: Path
) -> None:
    topology = Topology.from_settings(service_settings)
    stored = await stored_events(nc, topology)
    job = await sim.completed_job()
    env = archiver_env(service_settings, sim, tmp_path / "storage", grace_s=8)
    async with service_process("archiver", "reelvault_archiver", env, tmp_path) as archiver:
        await archiver.wait_for_log("archiver ready")
        await sim.push_faults({"kind": "slow_response", "route": "content", "delay_s": 2.0})
        event = completed_event(job.id, job.expires_at, video_id=None)
        await nc.jetstream().publish(topology.subject(event.type, event.org),
                                     event.model_dump_json().encode(),
                                     headers={"Nats-Msg-Id": str(event.event_id)})

        async def downloading() -> bool:
            return await sim.content_calls() > 0

        await until(downloading, 20, "the download")
        sent = archiver.terminate()
        code = await archiver.exit_code(timeout_s=15)
        assert code == 0, archiver.log()[-3000:]
        assert 1.0 < time.monotonic() - sent < 8 + 3  # waited for the copy, not the grace

    [done] = [e for e in stored if e.video_id == event.video_id]
    assert (done.video.sha256, done.video.bytes) == await sim.sha256(job.id)
    info = await nc.jetstream().consumer_info(topology.stream,
                                              topology.durable("archiver", "completed"))
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_sigterm_hands_back_a_download_longer_than_the_grace(
    service_settings: ServiceSettings, sim: RunningSim, nc: Client, tmp_path: Path
) -> None:
    topology = Topology.from_settings(service_settings)
    stored = await stored_events(nc, topology)
    job = await sim.completed_job()
    env = archiver_env(service_settings, sim, tmp_path / "storage", grace_s=1)
    event = completed_event(job.id, job.expires_at)
    async with service_process("archiver-1", "reelvault_archiver", env, tmp_path) as first:
        await first.wait_for_log("archiver ready")
        await sim.push_faults({"kind": "slow_response", "route": "content", "delay_s": 8.0})
        await nc.jetstream().publish(topology.subject(event.type, event.org),
                                     event.model_dump_json().encode(),
                                     headers={"Nats-Msg-Id": str(event.event_id)})

        async def downloading() -> bool:
            return await sim.content_calls() > 0

        await until(downloading, 20, "the download")
        sent = first.terminate()
        code = await first.exit_code(timeout_s=10)
        assert code == 0, first.log()[-3000:]
        assert time.monotonic() - sent < 1 + 4
        assert "handing back" in first.log()
    assert not [e for e in stored if e.video_id == event.video_id]

    began = time.monotonic()
    async with service_process("archiver-2", "reelvault_archiver", env, tmp_path) as second:
        await second.wait_for_log("archiver ready")

        async def copied() -> bool:
            return any(e.video_id == event.video_id for e in stored)

        await until(copied, 30, "the handed-back copy")
        assert time.monotonic() - began < 30 < ACK_WAIT_S
        second.terminate()
        assert await second.exit_code(timeout_s=10) == 0
    [done] = [e for e in stored if e.video_id == event.video_id]
    assert (done.video.sha256, done.video.bytes) == await sim.sha256(job.id)
