"""What the archiver's integration tests share: the Videos API simulator served on 127.0.0.1,
a running ArchiverService, and a way to publish inputs and hear its outcomes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats
import uvicorn
from nats.aio.client import Client
from pydantic import SecretStr
from reelvault_archiver.app import ArchiverService
from reelvault_archiver.settings import ArchiverSettings
from reelvault_common.contracts.events import (
    VideoArchiveRequested,
    VideoCompleted,
    VideoFailed,
    VideoStored,
    parse_event,
)
from reelvault_common.messaging.topology import Topology
from reelvault_common.providers.openai_videos import VideoJob, VideosClient
from reelvault_common.runtime.settings import ServiceSettings
from reelvault_common.storage.filesystem import FilesystemStorage
from reelvault_common.storage.layout import Buckets

API_KEY = "sk-archiver-test-key"
REQUESTED_AT = datetime(2026, 3, 14, 9, 26, tzinfo=UTC)


async def serve_asgi(
    app: Any, *, lifespan: str = "on"
) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    """Serve an ASGI app on 127.0.0.1 (a free port) inside the running loop."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, http="h11", lifespan=lifespan,
                            log_level="critical")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 15
    while not server.started:
        if task.done() or time.monotonic() > deadline:
            raise RuntimeError("ASGI server did not start")
        await asyncio.sleep(0.01)
    return server, task, server.servers[0].sockets[0].getsockname()[1]


class RunningSim:
    """``reelvault_providersim`` over real HTTP, plus its test-only ``/_sim`` admin routes."""

    def __init__(self, **settings: Any) -> None:
        from reelvault_providersim.settings import SimSettings

        self.settings = SimSettings(api_key=SecretStr(API_KEY), fast_mode=True, **settings)
        self.base_url = ""
        self.root_url = ""

    async def __aenter__(self) -> RunningSim:
        from reelvault_providersim.app import create_app

        self._server, self._task, port = await serve_asgi(create_app(self.settings))
        self.root_url = f"http://127.0.0.1:{port}"
        self.base_url = f"{self.root_url}/v1"
        self.client = VideosClient(self.base_url, SecretStr(API_KEY))
        self.admin = httpx.AsyncClient(base_url=f"{self.root_url}/_sim", timeout=30)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()
        await self.admin.aclose()
        self._server.should_exit = True
        await self._task

    async def completed_job(self, *, within_s: float = 20.0) -> VideoJob:
        job = await self.client.create(prompt="a lighthouse at dusk", model="sora-2",
                                       seconds="4", size="720x1280")
        deadline = time.monotonic() + within_s
        while True:
            job, _ = await self.client.retrieve(job.id)
            if job.is_terminal:
                assert job.status == "completed", job
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"simulator job did not complete: {job}")
            await asyncio.sleep(0.05)

    async def sha256(self, job_id: str, variant: str = "video") -> tuple[str, int]:
        reply = await self.admin.get(f"/jobs/{job_id}/sha256", params={"variant": variant})
        reply.raise_for_status()
        body = reply.json()
        return str(body["sha256"]), int(body["size"])

    async def push_faults(self, *rules: dict[str, Any]) -> None:
        (await self.admin.post("/faults", json={"rules": list(rules)})).raise_for_status()

    async def faults(self) -> dict[str, Any]:
        reply = await self.admin.get("/faults")
        reply.raise_for_status()
        return dict(reply.json())

    async def content_calls(self) -> int:
        reply = await self.admin.get("/jobs")
        reply.raise_for_status()
        return int(reply.json()["calls"].get("content", 0))


def archiver_settings(
    service_settings: ServiceSettings,
    storage_dir: Path,
    base_url: str,
    *,
    consumers: dict[str, Any] | None = None,
    **overrides: Any,
) -> ArchiverSettings:
    """Settings for a test archiver; ``consumers`` (``ConsumerSettings`` fields, e.g.
    ``{"ack_wait_s": 1.5}``) applies to both of its consumers, over fast test retries."""
    rules: dict[str, Any] = {
        "ack_wait_s": 5.0, "retry_base_s": 0.05, "retry_max_s": 0.3, **(consumers or {})
    }
    fields: dict[str, Any] = {
        "NATS_URL": service_settings.nats_url,
        "namespace": service_settings.namespace,
        "stream_duplicate_window_s": service_settings.stream_duplicate_window_s,
        "storage_dir": storage_dir,
        "storage_signing_key": "test-signing-key",
        "OPENAI_BASE_URL": base_url,
        "OPENAI_API_KEY": API_KEY,
        "completed": rules,
        "rearchive": dict(rules),
        "max_workers": 2,
    }
    fields.update(overrides)
    return ArchiverSettings(**fields)


class Harness:
    """A running archiver plus what a test needs around it: publish events, hear outcomes."""

    def __init__(self, settings: ArchiverSettings, nc: Client) -> None:
        self.settings = settings
        self.topology = Topology.from_settings(settings)
        self.nc = nc
        self.js = nc.jetstream()
        self.outcomes: asyncio.Queue[VideoStored | VideoFailed] = asyncio.Queue()
        # Event id -> the subject it was published on.
        self.subjects: dict[uuid.UUID, str] = {}
        # A second handle on the same directory: the tests' view of what was stored.
        self.storage = FilesystemStorage(settings.storage_dir, "http://127.0.0.1:8000", b"k")
        self.buckets = Buckets.from_settings(settings)

    async def listen(self) -> None:
        async def collect(msg: Any) -> None:
            event = parse_event(msg.data)
            assert isinstance(event, VideoStored | VideoFailed)
            self.subjects[event.event_id] = msg.subject
            self.outcomes.put_nowait(event)

        # Core subscriptions see every publish, duplicates inside the window included.
        for cls in (VideoStored, VideoFailed):
            await self.nc.subscribe(self.topology.subject_for(cls), cb=collect)
        await self.nc.flush()

    async def publish(self, event: VideoCompleted | VideoArchiveRequested) -> None:
        await self.js.publish(
            self.topology.subject(event.type, event.org), event.model_dump_json().encode(),
            headers={"Nats-Msg-Id": str(event.event_id)},
        )

    async def next_outcome(self, within_s: float = 15.0) -> VideoStored | VideoFailed:
        return await asyncio.wait_for(self.outcomes.get(), within_s)

    async def settled(self, purpose: str = "completed", within_s: float = 10.0) -> Any:
        """Consumer info once nothing is pending or unacked (polls with a deadline)."""
        durable = self.topology.durable("archiver", purpose)
        deadline = time.monotonic() + within_s
        while True:
            info = await self.js.consumer_info(self.topology.stream, durable)
            if info.num_pending == 0 and info.num_ack_pending == 0:
                return info
            if time.monotonic() > deadline:
                raise AssertionError(f"consumer {durable} did not settle: {info}")
            await asyncio.sleep(0.05)

    def stored_files(self) -> list[Path]:
        """Objects in storage (bucket folders only, not the backend's own bookkeeping)."""
        root = Path(self.settings.storage_dir)
        return sorted(
            p for p in root.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
        )


@asynccontextmanager
async def running_archiver(settings: ArchiverSettings) -> AsyncIterator[Harness]:
    service = ArchiverService(settings)
    await service.start()
    nc = await nats.connect(settings.nats_url)
    try:
        harness = Harness(settings, nc)
        await harness.listen()
        yield harness
    finally:
        await nc.close()
        await service.stop()


def completed_event(
    job_id: str, expires_at: datetime | int | None, *, video_id: uuid.UUID | None = None,
    org: str = "acme",
) -> VideoCompleted:
    if isinstance(expires_at, int):
        expires_at = datetime.fromtimestamp(expires_at, UTC)
    return VideoCompleted.new(
        video_id=video_id or uuid.uuid4(),
        org=org,
        correlation_id=f"corr-{job_id}",
        provider_job_id=job_id,
        provider="openai",
        # Never fetched: the archiver builds its own URL from OPENAI_BASE_URL.
        source_url=f"http://198.51.100.7/v1/videos/{job_id}/content",
        expires_at=expires_at,
        requested_at=REQUESTED_AT,
    )
