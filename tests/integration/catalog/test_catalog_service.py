"""The catalog as a running service on a real JetStream and a real PostgreSQL: events published
with ``EventPublisher`` become rows, read back only through the NATS request/reply API."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NatsClient
from pydantic import BaseModel
from reelvault_catalog.app import CatalogService
from reelvault_catalog.settings import CatalogSettings
from reelvault_common.contracts.catalog import GetVideo, ListVideos, RpcReply, VideoRecord
from reelvault_common.messaging.publisher import EventPublisher
from reelvault_common.messaging.topology import Topology
from reelvault_common.runtime.settings import ServiceSettings

from tests.support.catalog_events import VideoStory, sha256_of

pytestmark = pytest.mark.integration

BASE = "http://gateway.test:8000"


@dataclass
class CatalogClient:
    """What another service sees of the catalog: the stream to publish to and the RPC subjects."""

    topology: Topology
    nc: NatsClient
    publisher: EventPublisher
    durable: str

    async def publish(self, *events: BaseModel) -> None:
        for event in events:
            await self.publisher.publish(event)

    async def republish_as_new(self, *events: BaseModel) -> None:
        """The same facts under a new event id: JetStream's duplicate window lets them through,
        as it does for a redelivery after the window or a retried publish with a new id."""
        for event in events:
            await self.publisher.publish(event.model_copy(update={"event_id": uuid.uuid4()}))

    async def call(self, subject: str, payload: BaseModel | bytes) -> RpcReply:
        data = payload if isinstance(payload, bytes) else payload.model_dump_json().encode()
        reply = await self.nc.request(subject, data, timeout=5)
        return RpcReply.model_validate_json(reply.data)

    async def get(self, video_id: uuid.UUID, org: str = "default") -> RpcReply:
        return await self.call(self.topology.rpc_get, GetVideo(org=org, video_id=video_id))

    async def video(self, video_id: uuid.UUID) -> VideoRecord:
        reply = await self.get(video_id)
        assert reply.ok, reply
        assert reply.video is not None
        return reply.video

    async def list_all(self, org: str = "default", **params: Any
                       ) -> tuple[list[VideoRecord], int]:
        """Every page in turn; returns the items and how many pages it took."""
        items: list[VideoRecord] = []
        cursor = None
        for pages in range(1, 1000):
            reply = await self.call(self.topology.rpc_list,
                                    ListVideos(org=org, cursor=cursor, **params))
            assert reply.ok, reply
            assert reply.page is not None
            items.extend(reply.page.items)
            cursor = reply.page.next_cursor
            if cursor is None:
                return items, pages
        raise AssertionError("pagination never ended")

    async def wait_for(
        self, video_id: uuid.UUID, check: Callable[[VideoRecord], bool], timeout_s: float = 20.0
    ) -> VideoRecord:
        deadline = time.monotonic() + timeout_s
        last: RpcReply | None = None
        while time.monotonic() < deadline:
            last = await self.get(video_id)
            if last.ok and last.video is not None and check(last.video):
                return last.video
            await asyncio.sleep(0.05)
        raise AssertionError(f"video {video_id} never matched; last reply {last}")

    async def drained(self, timeout_s: float = 20.0) -> None:
        """Wait until the catalog's consumer has been handed, and has settled, every message."""
        js = self.nc.jetstream()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            stream = await js.stream_info(self.topology.stream)
            info = await js.consumer_info(self.topology.stream, self.durable)
            if (info.delivered.stream_seq >= stream.state.last_seq
                    and info.num_pending == 0 and info.num_ack_pending == 0):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"consumer not drained: {info}")


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.05)


@pytest.fixture
def catalog_settings(service_settings: ServiceSettings, database_url: str) -> CatalogSettings:
    return CatalogSettings(
        NATS_URL=service_settings.nats_url,
        namespace=service_settings.namespace,
        stream_duplicate_window_s=60,
        DATABASE_URL=database_url,
        public_base_url=BASE,
        projection={"workers": 4},
    )


@pytest.fixture
async def catalog(catalog_settings: CatalogSettings) -> AsyncIterator[CatalogService]:
    service = CatalogService(catalog_settings)
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
async def client(
    catalog: CatalogService, catalog_settings: CatalogSettings
) -> AsyncIterator[CatalogClient]:
    topology = Topology.from_settings(catalog_settings)
    nc = await nats.connect(catalog_settings.nats_url)
    try:
        yield CatalogClient(topology, nc, EventPublisher(nc, topology), catalog.policy.durable)
    finally:
        await nc.close()


# --- the lifecycle -------------------------------------------------------------------------

async def test_a_full_lifecycle_becomes_one_completed_row(client: CatalogClient) -> None:
    story = VideoStory()
    requested = story.requested()
    await client.publish(requested)
    queued = await client.wait_for(story.video_id, lambda v: v.status == "queued")
    assert queued.prompt == "two friends hug"
    assert queued.image1_url == "http://files.test/hug-images/0.png"
    assert queued.reference_image_keys == ["default/uploads/0.png", "default/uploads/1.png"]
    assert queued.created_at == requested.occurred_at

    await client.publish(story.started(), story.progressed(30))
    processing = await client.wait_for(story.video_id, lambda v: v.progress == 30)
    assert processing.status == "processing"
    assert processing.provider_job_id == "video_job_1"
    assert processing.provider == "openai"

    completed_event = story.completed()
    await client.publish(completed_event)
    generated = await client.wait_for(story.video_id, lambda v: v.openai_url is not None)
    assert generated.status == "processing"  # generated is not yet stored
    assert generated.expires_at == completed_event.expires_at

    stored_event = story.stored()
    await client.publish(stored_event)
    video = await client.wait_for(story.video_id, lambda v: v.status == "completed")
    assert video.progress == 100
    assert video.video_url == f"{BASE}/v1/videos/{story.video_id}/content"
    assert video.openai_url == completed_event.source_url
    assert (video.video_bucket, video.video_key) == ("videos", stored_event.video.key)
    assert video.bytes == 1234
    assert video.sha256 == sha256_of("video bytes")
    assert video.thumbnail_key == stored_event.thumbnail.key  # type: ignore[union-attr]
    assert video.thumbnail_url == f"{BASE}/v1/videos/{story.video_id}/content?variant=thumbnail"
    assert video.stored_at == stored_event.occurred_at
    assert video.created_at == requested.occurred_at
    assert video.updated_at > video.created_at
    assert video.error_code is None


async def test_redelivered_events_never_duplicate_or_regress(client: CatalogClient) -> None:
    story = VideoStory()
    events = [story.requested(), story.started(), story.progressed(40), story.completed(),
              story.stored()]
    await client.publish(*events)
    done = await client.wait_for(story.video_id, lambda v: v.status == "completed")

    # Every event again under a new id, in reverse order, twice over.
    await client.republish_as_new(*reversed(events))
    await client.republish_as_new(*events)
    await client.drained()

    again = await client.video(story.video_id)
    assert again == done  # not even updated_at moved: nothing changed
    items, _ = await client.list_all()
    assert [item.id for item in items] == [story.video_id]


async def test_stored_before_started_ends_completed(client: CatalogClient) -> None:
    story = VideoStory()
    await client.publish(story.requested(), story.stored())
    await client.wait_for(story.video_id, lambda v: v.status == "completed")
    await client.publish(story.started(), story.progressed(50), story.completed())
    await client.drained()
    video = await client.video(story.video_id)
    assert video.status == "completed"
    assert video.progress == 100
    assert video.provider == "openai"  # the late started event filled the gap
    assert video.openai_url is not None


async def test_events_before_their_request_wait_for_it(client: CatalogClient) -> None:
    story = VideoStory()
    await client.publish(story.stored(), story.started(), story.progressed(20))
    await client.publish(story.requested())
    # The three early events come back together after their wait; stored may land a moment
    # before started, so wait for both facts rather than for the first of them.
    video = await client.wait_for(
        story.video_id, lambda v: v.status == "completed" and v.provider is not None)
    assert video.progress == 100
    assert video.provider == "openai"
    await client.drained()


async def test_a_failure_is_recorded_and_a_re_archive_completes_it(client: CatalogClient) -> None:
    story = VideoStory()
    await client.publish(story.requested(), story.started(), story.completed(),
                         story.failed(stage="archive", code="copy_failed", message="timeout", at=5))
    failed = await client.wait_for(story.video_id, lambda v: v.status == "failed")
    assert (failed.error_stage, failed.error_code, failed.error_message) == (
        "archive", "copy_failed", "timeout")

    await client.publish(story.archive_requested(at=6), story.stored(at=7))
    video = await client.wait_for(story.video_id, lambda v: v.status == "completed")
    assert (video.error_stage, video.error_code, video.error_message) == (None, None, None)

    await client.republish_as_new(story.failed(stage="archive", code="copy_failed", at=8))
    await client.drained()
    assert (await client.video(story.video_id)).status == "completed"


# --- reads ----------------------------------------------------------------------------------

async def test_list_pages_newest_first_each_row_exactly_once(client: CatalogClient) -> None:
    stories = [VideoStory(start=VideoStory().at(i // 2)) for i in range(25)]  # pairs share a time
    for story in stories:
        await client.publish(story.requested())
    for i, story in enumerate(stories):
        if i % 3 == 0:
            await client.publish(story.failed(at=1))
        elif i % 3 == 1:
            await client.publish(story.stored(at=1))
    await client.drained()

    def newest_first(subset: list[VideoStory]) -> list[uuid.UUID]:
        return [s.video_id for s in sorted(subset, key=lambda s: (s.start, s.video_id),
                                           reverse=True)]

    items, pages = await client.list_all(limit=7)
    assert pages == 4
    assert [item.id for item in items] == newest_first(stories)

    items, pages = await client.list_all(limit=25)  # exactly one full page: no next cursor
    assert pages == 1
    assert len(items) == 25

    failed, _ = await client.list_all(limit=3, status="failed")
    assert [item.id for item in failed] == newest_first(stories[0::3])
    assert {item.status for item in failed} == {"failed"}
    queued, _ = await client.list_all(limit=2, status="queued")
    assert [item.id for item in queued] == newest_first(stories[2::3])


async def test_stats_count_by_status_and_sum_stored_bytes(client: CatalogClient) -> None:
    a, b, c, d = (VideoStory() for _ in range(4))
    await client.publish(a.requested(), b.requested(), c.requested(), d.requested())
    await client.publish(a.stored(size=1000), b.stored(size=234), c.failed(), d.started())
    await client.drained()
    reply = await client.call(client.topology.rpc_stats, b"")
    assert reply.ok
    assert reply.stats is not None
    assert reply.stats.by_status == {"queued": 0, "processing": 1, "completed": 2, "failed": 1}
    assert reply.stats.total == 4
    assert reply.stats.stored_bytes == 1234


async def test_a_waiting_video_shows_its_estimate_and_counts_as_waiting(
    client: CatalogClient,
) -> None:
    a, b, c = (VideoStory() for _ in range(3))
    await client.publish(a.requested(), b.requested(), c.requested())
    waiting = a.waiting(starts_in=240, position=12)
    await client.publish(waiting, b.waiting(), c.waiting(), c.started())
    await client.drained()
    reply = await client.call(client.topology.rpc_stats, b"")
    assert reply.stats is not None
    assert reply.stats.waiting_by_provider == {"openai": 2}
    video = await client.video(a.video_id)
    assert (video.status, video.estimated_start_at, video.queue_position, video.provider) == (
        "queued", waiting.estimated_start_at, 12, "openai")


async def test_ping_answers_ok(client: CatalogClient) -> None:
    reply = await client.call(client.topology.rpc_ping, b"")
    assert reply.ok
    assert reply.error is None


async def test_unknown_id_is_not_found(client: CatalogClient) -> None:
    reply = await client.get(uuid.uuid4())
    assert not reply.ok
    assert reply.error is not None
    assert reply.error.code == "not_found"


@pytest.mark.parametrize("cursor", ["garbage", "Zm9vYmFy", ""])
async def test_a_bad_cursor_is_invalid_cursor(client: CatalogClient, cursor: str) -> None:
    reply = await client.call(client.topology.rpc_list, ListVideos(org="default", cursor=cursor))
    assert not reply.ok
    assert reply.error is not None
    assert reply.error.code == "invalid_cursor"


@pytest.mark.parametrize(("rpc", "payload"), [
    ("get", b"not json"),
    ("get", b'{"org": "default", "video_id": "not-a-uuid"}'),
    ("get", b""),
    ("list", b""),
    ("list", b'{"org": "default", "limit": 0}'),
    ("list", b'{"org": "default", "limit": 101}'),
    ("list", b'{"org": "default", "status": "archived"}'),
    ("list", b"[1, 2"),
    ("stats", b"\xff\xfe"),
])
async def test_invalid_requests_get_invalid_request(
    client: CatalogClient, rpc: str, payload: bytes
) -> None:
    subject = {"get": client.topology.rpc_get, "list": client.topology.rpc_list,
               "stats": client.topology.rpc_stats}[rpc]
    reply = await client.call(subject, payload)
    assert not reply.ok
    assert reply.error is not None
    assert reply.error.code == "invalid_request"
    assert reply.error.message


# --- poison ---------------------------------------------------------------------------------

async def test_a_poison_payload_is_rejected_and_does_not_block_later_events(
    client: CatalogClient, caplog: pytest.LogCaptureFixture
) -> None:
    # The runner terminates what does not decode (``parse_event``) and says why -- without
    # echoing the payload (a prompt may carry anything).
    caplog.set_level(logging.ERROR, logger="reelvault_common.messaging.consumer")
    js = client.nc.jetstream()
    subject = client.topology.subject("video.requested", "default")
    secret = "sk-live-should-not-be-logged"
    for payload in (b"{not json at all", b'{"type": "video.requested", "prompt": ""}',
                    f'{{"type": "video.requested", "prompt": "{secret}"}}'.encode()):
        await js.publish(subject, payload, headers={"content-type": "application/json",
                                                    "Nats-Msg-Id": str(uuid.uuid4())})
    story = VideoStory()
    await client.publish(story.requested())
    await client.wait_for(story.video_id, lambda v: v.status == "queued")
    await client.drained()

    info = await js.consumer_info(client.topology.stream, client.durable)
    assert info.num_redelivered == 0  # terminated at once, not retried
    rejected = [r for r in caplog.records
                if "terminating an undecodable message" in r.getMessage()]
    assert len(rejected) == 3
    assert all(subject in r.getMessage() for r in rejected)
    assert all(client.durable in r.getMessage() for r in rejected)
    assert secret not in caplog.text


# --- replicas -------------------------------------------------------------------------------

async def test_two_replicas_started_together_share_the_work(
    catalog_settings: CatalogSettings, client: CatalogClient
) -> None:
    # ``client`` already runs one replica; two more start at the same moment (migration race).
    extra = [CatalogService(catalog_settings) for _ in range(2)]
    await asyncio.gather(*(service.start() for service in extra))
    try:
        stories = [VideoStory() for _ in range(12)]
        for story in stories:
            await client.publish(story.requested(), story.started(), story.progressed(50),
                                 story.completed(), story.stored())
        await client.drained()
        for story in stories:
            video = await client.video(story.video_id)
            assert video.status == "completed"
            assert video.progress == 100
        reply = await client.call(client.topology.rpc_stats, b"{}")
        assert reply.stats is not None
        assert reply.stats.total == 12
        assert reply.stats.by_status["completed"] == 12
    finally:
        await asyncio.gather(*(service.stop() for service in extra))
