"""Organizations, keys and quotas through the running catalog on a real JetStream and
PostgreSQL, asked only over NATS: revocations reach ``key_changes``, quota crossings reach the
stream once, reads stay inside their organization, a failure gives its quota back."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from pydantic import BaseModel
from reelvault_catalog.app import CatalogService
from reelvault_catalog.settings import CatalogSettings
from reelvault_common.contracts.catalog import (
    CreateKey,
    CreateOrg,
    GetUsage,
    GetVideo,
    ListVideos,
    LookupKey,
    QuotaLimits,
    Reserve,
    RevokeKey,
    RpcReply,
    SetQuotas,
)
from reelvault_common.contracts.events import VideoFailed
from reelvault_common.contracts.tenancy import Scope
from reelvault_common.messaging.publisher import EventPublisher
from reelvault_common.messaging.topology import Topology
from reelvault_common.runtime.settings import ServiceSettings

from tests.support.catalog_events import VideoStory

pytestmark = pytest.mark.integration


@dataclass
class Operator:
    """Another service's view of the catalog: its RPC subjects and the stream."""

    topology: Topology
    nc: NatsClient
    publisher: EventPublisher

    async def ask(self, message: BaseModel) -> RpcReply:
        subject = self.topology.rpc_subject(message)
        reply = await self.nc.request(subject, message.model_dump_json().encode(), timeout=5)
        return RpcReply.model_validate_json(reply.data)

    async def ok(self, message: BaseModel) -> RpcReply:
        reply = await self.ask(message)
        assert reply.ok, reply
        return reply

    async def count(self, org: str, event_type: str) -> int:
        """How many events of ``event_type`` of ``org`` the stream holds."""
        subject = self.topology.subject(event_type, org)
        info = await self.nc.jetstream().stream_info(self.topology.stream,
                                                     subjects_filter=subject)
        return sum((info.state.subjects or {}).values())

    async def videos_used(self, org: str) -> int:
        usage = (await self.ok(GetUsage(org=org))).usage
        assert usage is not None
        return int(next(i.used for i in usage.items if i.quota == "videos_per_month"))


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.05)


@pytest.fixture
async def operator(service_settings: ServiceSettings, database_url: str
                   ) -> AsyncIterator[Operator]:
    settings = CatalogSettings(
        NATS_URL=service_settings.nats_url, namespace=service_settings.namespace,
        stream_duplicate_window_s=60, DATABASE_URL=database_url, projection={"workers": 4},
    )
    service = CatalogService(settings)
    await service.start()
    nc = await nats.connect(settings.nats_url)
    try:
        topology = Topology.from_settings(settings)
        operator = Operator(topology, nc, EventPublisher(nc, topology))
        for org in ("acme", "globex"):
            await operator.ok(CreateOrg(slug=org))
        yield operator
    finally:
        await nc.close()
        await service.stop()


async def test_a_duplicate_organization_is_already_exists(operator: Operator) -> None:
    reply = await operator.ask(CreateOrg(slug="acme", name="again"))
    assert reply.error is not None
    assert reply.error.code == "already_exists"


async def test_a_revoked_key_is_announced_and_looked_up_as_revoked(operator: Operator) -> None:
    created = (await operator.ok(CreateKey(org="acme", scopes=[Scope.VIDEOS_READ]))).created_key
    assert created is not None
    public_id = created.key.public_id
    found = (await operator.ok(LookupKey(public_id=public_id))).key_auth
    assert found is not None
    assert found.key.revoked_at is None
    assert found.key.last_used_at is not None

    changed: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_change(msg: Msg) -> None:
        await changed.put(msg.data)

    await operator.nc.subscribe(operator.topology.key_changes, cb=on_change)
    await operator.nc.flush()
    revoked = (await operator.ok(RevokeKey(key_or_id=created.secret))).key
    assert revoked is not None
    assert await asyncio.wait_for(changed.get(), 5) == public_id.encode()
    again = (await operator.ok(LookupKey(public_id=public_id))).key_auth
    assert again is not None
    assert again.key.revoked_at == revoked.revoked_at


async def test_quota_crossings_reach_the_stream_once(operator: Operator) -> None:
    await operator.ok(SetQuotas(org="acme", limits=QuotaLimits(videos_per_month=5)))
    videos = [uuid.uuid4() for _ in range(5)]
    for video_id in videos:
        await operator.ok(Reserve(org="acme", video_id=video_id, model="sora-2", seconds=4))
    # The 4th reached 80 %, the 5th 100 %: both announced before their replies.
    assert await operator.count("acme", "org.quota.warning") == 1
    assert await operator.count("acme", "org.quota.exceeded") == 1
    refused = await operator.ask(Reserve(org="acme", video_id=uuid.uuid4(), model="sora-2",
                                         seconds=4))
    assert refused.error is not None
    assert refused.error.code == "quota_exceeded"
    assert refused.quota is not None
    assert refused.quota.quota == "videos_per_month"
    await operator.ok(Reserve(org="acme", video_id=videos[0], model="sora-2", seconds=4))
    assert await operator.count("acme", "org.quota.warning") == 1
    assert await operator.count("acme", "org.quota.exceeded") == 1
    assert await operator.count("globex", "org.quota.warning") == 0


async def test_a_stored_video_announces_the_storage_levels_it_reaches(
    operator: Operator,
) -> None:
    await operator.ok(SetQuotas(org="acme", limits=QuotaLimits(storage_bytes=1000)))
    story = VideoStory(org="acme")
    await operator.publisher.publish(story.requested())
    await operator.publisher.publish(story.stored(size=1234))

    async def announced() -> bool:
        return (await operator.count("acme", "org.quota.exceeded") == 1
                and await operator.count("acme", "org.quota.warning") == 1)

    await eventually(announced)
    refused = await operator.ask(Reserve(org="acme", video_id=uuid.uuid4(), model="sora-2",
                                         seconds=4))
    assert refused.quota is not None
    assert refused.quota.quota == "storage_bytes"


async def test_reads_stay_inside_their_organization(operator: Operator) -> None:
    story = VideoStory(org="acme")
    await operator.publisher.publish(story.requested())

    async def recorded() -> bool:
        return (await operator.ask(GetVideo(org="acme", video_id=story.video_id))).ok

    await eventually(recorded)
    other = await operator.ask(GetVideo(org="globex", video_id=story.video_id))
    assert other.error is not None
    assert other.error.code == "not_found"
    theirs = (await operator.ok(ListVideos(org="globex"))).page
    assert theirs is not None
    assert theirs.items == []
    mine = (await operator.ok(ListVideos(org="acme"))).page
    assert mine is not None
    assert [item.id for item in mine.items] == [story.video_id]


async def test_a_video_the_provider_never_took_gives_its_quota_back(operator: Operator) -> None:
    story = VideoStory(org="acme")
    await operator.ok(Reserve(org="acme", video_id=story.video_id, model="sora-2", seconds=4))
    assert await operator.videos_used("acme") == 1
    await operator.publisher.publish(story.requested())
    await operator.publisher.publish(VideoFailed.new(
        video_id=story.video_id, org="acme", correlation_id=story.correlation_id,
        stage="generation", code="provider_refused", message="refused before any job"))

    async def released() -> bool:
        return await operator.videos_used("acme") == 0

    await eventually(released)
