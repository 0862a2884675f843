"""``GET /v1/events`` on a real gateway process and a real JetStream: each organization sees its
own events and nothing else, a client that comes back with ``Last-Event-ID`` gets every event
it missed exactly once, the type filter, the per-organization bound, a revoked key's stream
ends, and SIGTERM ends open streams at once (exit 0 well within the grace period).
A catalog double answers key lookups."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import nats
import pytest
from nats.aio.client import Client
from pydantic import BaseModel
from reelvault_common.contracts.events import VideoFailed, VideoGenerationProgressed
from reelvault_common.messaging.topology import Topology, ensure_stream

from reelvault.embedded import free_port
from tests.support.gateway_fakes import (
    KEYS_AND_QUOTAS,
    CatalogDouble,
    ServedDouble,
    serve_catalog_double,
)
from tests.support.service_process import ServiceProcess, service_process
from tests.support.sse import open_sse

pytestmark = pytest.mark.integration


@dataclass
class Setup:
    base: str
    gateway: ServiceProcess
    nc: Client
    topology: Topology
    keys: dict[str, str]
    served: ServedDouble

    async def publish(self, event: BaseModel) -> str:
        """Publish as the services do; the event's id."""
        event_id = str(getattr(event, "event_id"))  # noqa: B009
        await self.nc.jetstream().publish(
            self.topology.subject(str(getattr(event, "type")), str(getattr(event, "org"))),  # noqa: B009
            event.model_dump_json().encode(), stream=self.topology.stream,
            headers={"Nats-Msg-Id": event_id},
        )
        return event_id

    async def progress(self, org: str, video: uuid.UUID, percent: int) -> str:
        return await self.publish(VideoGenerationProgressed.new(
            video_id=video, org=org, correlation_id="live-test", provider_job_id=f"job-{video}",
            progress=percent))

    def auth(self, org: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[org]}"}


@pytest.fixture
def env_extra() -> dict[str, str]:
    return {}


@pytest.fixture
async def setup(
    nats_url: str, namespace: str, tmp_path: Path, env_extra: dict[str, str]
) -> AsyncIterator[Setup]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "NATS_URL": nats_url,
        "REELVAULT_NAMESPACE": namespace,
        "REELVAULT_PORT": str(port),
        "REELVAULT_STORAGE_DIR": str(tmp_path / "storage"),
        "REELVAULT_PUBLIC_BASE_URL": base,
        "REELVAULT_STORAGE_SIGNING_KEY": "live-events-test-signing-key-0123456789",
        "REELVAULT_SHUTDOWN_GRACE_S": "8",
        **env_extra,
    }
    double = CatalogDouble()
    keys = {org: double.add_key(org) for org in ("acme", "globex")}
    topology = Topology(namespace=namespace)
    nc = await nats.connect(nats_url)
    try:
        await ensure_stream(nc.jetstream(), topology)
        async with (serve_catalog_double(nats_url, namespace, double, KEYS_AND_QUOTAS) as served,
                    service_process("gateway", "reelvault_gateway", env, tmp_path) as gateway):
            await gateway.wait_http(f"{base}/healthz")
            yield Setup(base, gateway, nc, topology, keys, served)
    finally:
        await nc.close()


async def test_each_organization_sees_its_own_events_and_resumes_without_loss_or_repeat(
    setup: Setup,
) -> None:
    acme_video, globex_video = uuid.uuid4(), uuid.uuid4()
    async with httpx.AsyncClient(base_url=setup.base, timeout=10) as http:
        async with (open_sse(http, "/v1/events", setup.auth("acme")) as acme,
                    open_sse(http, "/v1/events", setup.auth("globex")) as globex):
            acme_ids, globex_ids = [], []
            for percent in range(1, 7):  # interleaved, one stream sequence
                acme_ids.append(await setup.progress("acme", acme_video, percent))
                globex_ids.append(await setup.progress("globex", globex_video, percent))
            first = await acme.events(3)
            seen_globex = await globex.events(6)
        # acme went away after 3 events; more happen meanwhile, in both organizations.
        for percent in range(7, 11):
            acme_ids.append(await setup.progress("acme", acme_video, percent))
            globex_ids.append(await setup.progress("globex", globex_video, percent))
        failed = VideoFailed.new(video_id=acme_video, org="acme", correlation_id="live-test",
                                 stage="generation", code="moderation", message="blocked")
        acme_ids.append(await setup.publish(failed))

        resumed_from = first[-1].id
        headers = {**setup.auth("acme"), "Last-Event-ID": resumed_from}
        async with open_sse(http, "/v1/events", headers) as again:
            rest = await again.events(len(acme_ids) - 3)
            assert await again.events(1, timeout_s=1.0, allow_fewer=True) == []  # nothing more

        # Every acme event exactly once, in order; ids are increasing stream sequences.
        received = [e.json()["event_id"] for e in first + rest]
        assert received == acme_ids
        sequences = [int(e.id) for e in first + rest]
        assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
        assert int(rest[0].id) > int(resumed_from)
        assert [e.event for e in first + rest] == (
            ["video.generation.progress"] * 10 + ["video.failed"])
        assert all(e.json()["org"] == "acme" for e in first + rest)
        # globex saw its own six and none of acme's.
        assert [e.json()["event_id"] for e in seen_globex] == globex_ids[:6]
        assert not {str(acme_video)} & {e.json()["video_id"] for e in seen_globex}

        # A filter on types, replaying from the stream's start (Last-Event-ID 0).
        query = "/v1/events?types=video.failed&after=0"
        async with open_sse(http, query, setup.auth("acme")) as only_failed:
            got = await only_failed.events(1)
            assert await only_failed.events(1, timeout_s=1.0, allow_fewer=True) == []
        assert [e.json()["event_id"] for e in got] == [acme_ids[-1]]
        async with open_sse(http, query, setup.auth("globex")) as other:
            assert await other.events(1, timeout_s=1.0, allow_fewer=True) == []

        # Bad requests are JSON errors before any stream opens.
        for path, headers, status in (
            ("/v1/events", {}, 401),
            ("/v1/events", {**setup.auth("acme"), "Last-Event-ID": "12abc"}, 400),
            ("/v1/events?types=video.nope", setup.auth("acme"), 422),
        ):
            answer = await http.get(path, headers=headers)
            assert answer.status_code == status, (path, answer.text)
            assert answer.json()["error"]["code"]


@pytest.mark.parametrize("env_extra", [{
    "REELVAULT_EVENTS_MAX_STREAMS_PER_ORG": "2",
    "REELVAULT_EVENTS_KEEPALIVE_S": "0.5",
    "REELVAULT_EVENTS_RECHECK_S": "0.5",
}])
async def test_streams_are_bounded_kept_alive_end_on_revocation_and_on_shutdown(
    setup: Setup,
) -> None:
    async with httpx.AsyncClient(base_url=setup.base, timeout=10) as http:
        async with (open_sse(http, "/v1/events", setup.auth("acme")) as one,
                    open_sse(http, "/v1/events", setup.auth("acme")) as two,
                    open_sse(http, "/v1/events", setup.auth("globex")) as other):
            third = await http.get("/v1/events", headers=setup.auth("acme"))
            assert third.status_code == 429, third.text
            assert third.json()["error"]["code"] == "too_many_streams"
            assert await one.comment("keep-alive", timeout_s=3.0)

            # Revoking globex's key ends its stream within the key cache's few seconds.
            await setup.served.revoke(setup.keys["globex"])
            assert await other.ended(timeout_s=6.0)
            assert not two.closed

        # A closed stream gives its slot back.
        async with open_sse(http, "/v1/events", setup.auth("acme"), retry_429_s=5) as again:
            assert again.status == 200
            # SIGTERM: open streams end at once, the process exits 0 well within the grace.
            sent = setup.gateway.terminate()
            assert await again.ended(timeout_s=4.0)
        code = await setup.gateway.exit_code(timeout_s=8)
        assert code == 0, setup.gateway.log()[-3000:]
        assert time.monotonic() - sent < 5, "the open stream held the shutdown up"


@pytest.mark.parametrize("env_extra", [{"REELVAULT_EVENTS_MAX_STREAMS_PER_ORG": "1"}])
async def test_a_reader_that_drops_gives_its_slot_back(setup: Setup) -> None:
    async with httpx.AsyncClient(base_url=setup.base, timeout=10) as http:
        for _ in range(3):  # each needs the one slot the last one held
            async with open_sse(http, "/v1/events", setup.auth("acme"), retry_429_s=5) as s:
                assert s.status == 200
