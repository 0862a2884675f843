"""Memory and throughput of a real archiver process copying a ~100 MB video.

The archiver runs as its own process (``python -m reelvault_archiver``), so its RSS is measured
without the simulator, which serves a video padded to 100 MB from this test's process. After
a warm-up copy the archiver's peak RSS is reset (``/proc/<pid>/clear_refs``); the growth of the
peak over the baseline while copying must stay far below the file size.

Run alone: ``pytest -m memory -s`` (prints the figures)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
import pytest
from reelvault_common.contracts.events import VideoCompleted, VideoFailed, VideoStored, parse_event
from reelvault_common.messaging.topology import Topology
from reelvault_common.runtime.settings import ServiceSettings

from tests.support.archiver_harness import API_KEY, RunningSim

pytestmark = [pytest.mark.integration, pytest.mark.memory, pytest.mark.timeout(60)]

MB = 1024 * 1024
VIDEO_BYTES = 100 * MB
# Peak RSS growth allowed while copying the 100 MB file (chunks are 1 MiB).
MAX_GROWTH = 32 * MB


def proc_status(pid: int) -> dict[str, int]:
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) * 1024
    return values


def reset_peak(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False  # then VmHWM is the lifetime peak: the check only gets stricter
    return True


async def test_memory_archiving_a_100mb_video_keeps_rss_flat(
    service_settings: ServiceSettings, tmp_path: Path
) -> None:
    async with RunningSim(pad_video_to_bytes=VIDEO_BYTES) as sim:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("REELVAULT_", "OPENAI_", "SUPABASE_"))}
        env.update({
            "NATS_URL": service_settings.nats_url,
            "REELVAULT_NAMESPACE": service_settings.namespace,
            "REELVAULT_STORAGE_DIR": str(tmp_path / "storage"),
            "REELVAULT_STORAGE_SIGNING_KEY": "memory-test",
            "OPENAI_BASE_URL": sim.base_url,
            "OPENAI_API_KEY": API_KEY,
            "REELVAULT_MAX_WORKERS": "1",
        })
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "reelvault_archiver", env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        log: list[str] = []
        ready = asyncio.Event()

        async def drain() -> None:
            assert proc.stderr is not None
            async for raw in proc.stderr:
                line = raw.decode(errors="replace").rstrip()
                log.append(line)
                if line.endswith("archiver ready"):
                    ready.set()

        drainer = asyncio.create_task(drain())
        topology = Topology.from_settings(service_settings)
        nc = await nats.connect(service_settings.nats_url)
        outcomes: asyncio.Queue[VideoStored | VideoFailed] = asyncio.Queue()

        async def collect(msg: Any) -> None:
            event = parse_event(msg.data)
            assert isinstance(event, VideoStored | VideoFailed)
            outcomes.put_nowait(event)

        async def archive() -> tuple[VideoStored, float, str]:
            job = await sim.completed_job()
            served_sha, served_size = await sim.sha256(job.id)
            assert served_size == VIDEO_BYTES
            assert job.expires_at is not None
            event = VideoCompleted.new(
                video_id=uuid.uuid4(), org="acme", correlation_id="mem", provider_job_id=job.id,
                provider="openai", source_url="unused",
                expires_at=datetime.fromtimestamp(job.expires_at, UTC),
                requested_at=datetime.now(UTC),
            )
            started = time.perf_counter()
            await nc.jetstream().publish(
                topology.subject(event.type, event.org), event.model_dump_json().encode(),
                headers={"Nats-Msg-Id": str(event.event_id)},
            )
            outcome = await asyncio.wait_for(outcomes.get(), 30)
            elapsed = time.perf_counter() - started
            assert isinstance(outcome, VideoStored), outcome
            return outcome, elapsed, served_sha

        try:
            await asyncio.wait_for(ready.wait(), 20)
            for cls in (VideoStored, VideoFailed):
                await nc.subscribe(topology.subject_for(cls), cb=collect)

            await archive()  # warm-up: imports, connections, first-use allocations
            baseline = proc_status(proc.pid)["VmRSS"]
            peak_was_reset = reset_peak(proc.pid)

            stored, elapsed, served_sha = await archive()
            growth = proc_status(proc.pid)["VmHWM"] - baseline
            assert stored.video.bytes == VIDEO_BYTES
            assert stored.video.sha256 == served_sha

            # For the throughput figure: a raw streamed loopback copy of the same bytes.
            raw_started = time.perf_counter()
            with (tmp_path / "raw.bin").open("wb") as out:
                async with sim.client.stream_content(stored.provider_job_id) as (_, chunks):
                    async for chunk in chunks:
                        out.write(chunk)
            raw_elapsed = time.perf_counter() - raw_started

            print(
                f"\n[archiver memory] {VIDEO_BYTES / MB:.0f} MB event->VideoStored in "
                f"{elapsed:.2f}s ({VIDEO_BYTES / MB / elapsed:.0f} MB/s); raw loopback copy "
                f"{raw_elapsed:.2f}s ({VIDEO_BYTES / MB / raw_elapsed:.0f} MB/s); ratio "
                f"{raw_elapsed / elapsed:.2f}; archiver peak RSS growth {growth / MB:.1f} MB "
                f"over a {baseline / MB:.1f} MB baseline (peak reset: {peak_was_reset})"
            )
            assert growth < MAX_GROWTH, f"peak RSS grew {growth / MB:.1f} MB for a 100 MB copy"
        finally:
            await nc.close()
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            returncode = await asyncio.wait_for(proc.wait(), 20)
            await drainer
    assert returncode == 0, "\n".join(log[-20:])
    assert any(line.endswith("archiver stopped") for line in log)
