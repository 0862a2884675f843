"""Helpers for the generator's integration tests (imported by name: pytest puts this
directory on sys.path; the unusual module name avoids clashes with other test dirs).

The peer is the real simulator (``reelvault_providersim``) served by uvicorn on a loopback port,
the broker the session's real NATS JetStream."""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
from nats.aio.client import Client as NatsClient
from nats.js.api import DeliverPolicy
from PIL import Image
from pydantic import BaseModel, SecretStr
from reelvault_common.contracts.events import (
    ReferenceImage,
    VideoCompleted,
    VideoEvent,
    VideoFailed,
    VideoRequested,
    parse_event,
)
from reelvault_common.messaging.setup import prepare_topology
from reelvault_common.messaging.topology import Topology
from reelvault_common.runtime.settings import ServiceSettings
from reelvault_generator.app import GeneratorService
from reelvault_providersim.app import create_app
from reelvault_providersim.settings import SimSettings

from tests.support.asgi_server import serve_app

API_KEY = "sk-test-generator-0123456789abcdef"

# make_generator(start=True, **settings overrides, provider=...) -> a started GeneratorService
GeneratorFactory = Callable[..., Awaitable[GeneratorService]]


@dataclass
class RunningSim:
    root_url: str

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    async def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        async with httpx.AsyncClient(base_url=self.root_url, timeout=10) as http:
            reply = await http.request(method, f"/_sim{path}", **kwargs)
            reply.raise_for_status()
            return reply.json()

    async def jobs(self) -> dict[str, Any]:
        return dict(await self.admin("GET", "/jobs"))

    async def jobs_for(self, prompt: str) -> list[dict[str, Any]]:
        return [job for job in (await self.jobs())["jobs"] if job["prompt"] == prompt]

    async def push_faults(self, *rules: dict[str, Any]) -> None:
        await self.admin("POST", "/faults", json={"rules": list(rules)})


@asynccontextmanager
async def run_sim(data_dir: Path, **overrides: Any) -> AsyncIterator[RunningSim]:
    values: dict[str, Any] = {
        "api_key": SecretStr(API_KEY),
        "generation_s": 1.0,
        "data_dir": data_dir,
        "seed": 11,
        "fps": 1,
    }
    values.update(overrides)
    async with serve_app(create_app(SimSettings(**values))) as root_url:
        yield RunningSim(root_url)


def png(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def video_request(
    prompt: str,
    *,
    size: str = "1280x720",
    seconds: str = "4",
    model: str = "sora-2",
    images: tuple[ReferenceImage, ...] = (),
) -> VideoRequested:
    return VideoRequested.new(
        video_id=uuid.uuid4(),
        correlation_id=f"corr-{uuid.uuid4().hex[:8]}",
        prompt=prompt,
        model=model,
        seconds=seconds,
        size=size,
        reference_images=images,
        org="acme",
    )


@dataclass
class StreamWatch:
    """Every lifecycle event on the namespace's stream, decoded, in stream order."""

    nc: NatsClient
    topology: Topology
    events: list[VideoEvent] = field(default_factory=list)
    subjects: dict[uuid.UUID, str] = field(default_factory=dict)  # event id -> its subject

    async def publish(self, event: BaseModel, *, msg_id: str | None = None) -> int:
        """Publish straight to JetStream; a different ``msg_id`` defeats the duplicate window
        (a redelivery from an upstream that re-sent the same event later). Returns the
        stream sequence."""
        js = self.nc.jetstream()
        ack = await js.publish(
            self.topology.subject(str(event.type), str(event.org)),  # type: ignore[attr-defined]
            event.model_dump_json().encode(),
            headers={"Nats-Msg-Id": msg_id or str(event.event_id)},  # type: ignore[attr-defined]
            stream=self.topology.stream,
        )
        return int(ack.seq)

    async def wait_consumed(self, durable: str, seq: int, *, timeout_s: float = 20.0) -> None:
        """Until the durable consumer has acked everything up to stream sequence ``seq``."""
        js = self.nc.jetstream()
        deadline = time.monotonic() + timeout_s
        while True:
            info = await js.consumer_info(self.topology.stream, durable)
            if info.ack_floor is not None and (info.ack_floor.stream_seq or 0) >= seq:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{durable} did not ack up to {seq} in {timeout_s}s: {info}")
            await asyncio.sleep(0.05)

    def of(self, video_id: uuid.UUID, kind: type[Any] | None = None) -> list[Any]:
        return [
            e for e in self.events
            if e.video_id == video_id and (kind is None or isinstance(e, kind))
        ]

    def types(self, video_id: uuid.UUID) -> list[str]:
        return [e.type for e in self.of(video_id)]

    async def wait_for(
        self, predicate: Callable[[], Any], *, timeout_s: float = 20.0, what: str = "condition"
    ) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
            await asyncio.sleep(0.05)

    async def outcome(self, video_id: uuid.UUID, *, timeout_s: float = 20.0) -> Any:
        """The video's VideoCompleted or VideoFailed."""

        def done() -> Any:
            found = self.of(video_id, VideoCompleted) + self.of(video_id, VideoFailed)
            return found[0] if found else None

        return await self.wait_for(done, timeout_s=timeout_s, what=f"outcome of {video_id}")


@asynccontextmanager
async def watch_stream(settings: ServiceSettings) -> AsyncIterator[StreamWatch]:
    topology = Topology.from_settings(settings)
    await prepare_topology(settings, topology)
    nc = await nats.connect(settings.nats_url)
    watch = StreamWatch(nc, topology)

    async def on_msg(msg: Any) -> None:
        event = parse_event(msg.data)
        watch.subjects[event.event_id] = msg.subject
        watch.events.append(event)

    sub = await nc.jetstream().subscribe(
        topology.video_events,
        stream=topology.stream,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
        cb=on_msg,
    )
    try:
        yield watch
    finally:
        await sub.unsubscribe()
        await nc.close()
