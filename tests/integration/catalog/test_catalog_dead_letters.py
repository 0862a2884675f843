"""Poison events in the catalog: an event that parses but that the database refuses is retried
with growing delays (never in a hot loop), ends after ``max_deliver`` in the dead-letter stream
with its payload and the database's error, and its video becomes ``failed`` with a reason that
says so. Once the cause is fixed, ``reelvault dead-letters replay`` re-drives it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import nats
import pytest
from nats.aio.client import Client as NatsClient
from reelvault_catalog.app import CatalogService
from reelvault_catalog.settings import CatalogSettings
from reelvault_common.contracts.catalog import GetVideo, RpcReply, VideoRecord
from reelvault_common.contracts.events import parse_event
from reelvault_common.messaging.deadletter import list_dead_letters
from reelvault_common.messaging.publisher import EventPublisher
from reelvault_common.messaging.topology import Topology
from reelvault_common.runtime.settings import ServiceSettings
from sqlalchemy.engine import make_url

from tests.support.catalog_events import VideoStory

pytestmark = pytest.mark.integration

MAX_DELIVER = 3


@pytest.fixture
async def catalog(service_settings: ServiceSettings, database_url: str
                  ) -> AsyncIterator[CatalogService]:
    service = CatalogService(CatalogSettings(
        NATS_URL=service_settings.nats_url, namespace=service_settings.namespace,
        DATABASE_URL=database_url, stream_duplicate_window_s=60,
        projection={"max_deliver": MAX_DELIVER, "retry_base_s": 0.4, "retry_max_s": 1.0,
                    "ack_wait_s": 10},
    ))
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


class Producer(EventPublisher):
    """Another service: publishes lifecycle events, reads the catalog over request/reply."""

    def __init__(self, nc: NatsClient, topology: Topology) -> None:
        super().__init__(nc, topology)
        self.nc = nc


@pytest.fixture
async def publisher(service_settings: ServiceSettings) -> AsyncIterator[Producer]:
    nc = await nats.connect(service_settings.nats_url)
    try:
        yield Producer(nc, Topology.from_settings(service_settings))
    finally:
        await nc.close()


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def video_of(publisher: Producer, topology: Topology, video_id: uuid.UUID
                   ) -> VideoRecord | None:
    request = GetVideo(org="default", video_id=video_id).model_dump_json().encode()
    reply = await publisher.nc.request(topology.rpc_get, request, timeout=5)
    answer = RpcReply.model_validate_json(reply.data)
    return answer.video


async def status_is(publisher: Producer, topology: Topology, video_id: uuid.UUID,
                    status: str) -> bool:
    video = await video_of(publisher, topology, video_id)
    return video is not None and video.status == status


async def test_a_nul_byte_the_database_cannot_store_is_dead_lettered_and_fails_the_video(
    catalog: CatalogService, publisher: Producer, service_settings: ServiceSettings
) -> None:
    # A provider's error text is free text from a third party; PostgreSQL text cannot hold
    # U+0000, JSON and the contract can. Retrying cannot help: it is a poison message.
    topology = catalog.topology
    story = VideoStory()
    await publisher.publish(story.requested())
    await eventually(lambda: status_is(publisher, topology, story.video_id, "queued"))
    poison = story.failed(message="moderation said \x00 no")
    started = time.monotonic()
    await publisher.publish(poison)

    await eventually(lambda: status_is(publisher, topology, story.video_id, "failed"))
    letters = await list_dead_letters(service_settings.nats_url, topology)
    [stored] = letters
    elapsed = time.monotonic() - started
    letter = stored.letter
    assert letter.consumer == catalog.policy.durable
    assert letter.deliveries == MAX_DELIVER
    assert parse_event(letter.payload) == poison  # the original payload, byte for byte decodable
    assert "CharacterNotInRepertoireError" in letter.error, letter.error
    assert "0x00" in letter.error
    assert "[SQL:" not in letter.error  # no statement text, no parameters
    assert letter.video_id == story.video_id
    # Two retries with growing delays (>= 0.2 s and >= 0.4 s with full jitter): no hot loop.
    assert elapsed >= 0.6

    video = await video_of(publisher, topology, story.video_id)
    assert video is not None
    assert (video.error_code, video.error_stage) == ("dead_lettered", "generation")
    assert video.error_message is not None
    assert f"gave up after {MAX_DELIVER} deliveries" in video.error_message
    assert "0x00" in video.error_message

    # Nothing keeps going round: the consumer has no message pending any more.
    info = await publisher.nc.jetstream().consumer_info(topology.stream, catalog.policy.durable)
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_an_event_violating_a_constraint_is_replayed_once_the_schema_is_fixed(
    catalog: CatalogService, publisher: Producer, service_settings: ServiceSettings,
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    # An operator's migration capped stored videos at 5 MB (the images bucket's limit, copied
    # by mistake); a 12 s sora-2-pro video is larger. The event parses, the database refuses it.
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(
        hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("ALTER TABLE videos ADD CONSTRAINT ck_videos_bytes_cap "
                           "CHECK (bytes <= 5000000)")
    finally:
        await conn.close()
    topology = catalog.topology
    story = VideoStory()
    for event in (story.requested(), story.started(), story.completed()):
        await publisher.publish(event)
    await eventually(lambda: status_is(publisher, topology, story.video_id, "processing"))
    stored_event = story.stored(size=48_000_000)
    await publisher.publish(stored_event)

    await eventually(lambda: status_is(publisher, topology, story.video_id, "failed"))
    [dead] = await list_dead_letters(service_settings.nats_url, topology)
    assert parse_event(dead.letter.payload) == stored_event
    assert "CheckViolationError" in dead.letter.error, dead.letter.error
    assert "ck_videos_bytes_cap" in dead.letter.error
    video = await video_of(publisher, topology, story.video_id)
    assert video is not None and video.error_code == "dead_lettered"
    assert video.error_stage == "archive"

    # The fix: the constraint goes. Then the operator replays the dead letter.
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("ALTER TABLE videos DROP CONSTRAINT ck_videos_bytes_cap")
    finally:
        await conn.close()
    from reelvault.cli import main

    monkeypatch.setenv("NATS_URL", service_settings.nats_url)
    monkeypatch.setenv("REELVAULT_NAMESPACE", service_settings.namespace)

    def replay() -> str:
        with pytest.raises(SystemExit) as exit_info:
            main(["dead-letters", "replay", "--seq", str(dead.sequence)])
        assert exit_info.value.code in (0, None)
        return capsys.readouterr().out

    out = await asyncio.to_thread(replay)
    assert f"replayed 1: {dead.sequence}" in out
    await eventually(lambda: status_is(publisher, topology, story.video_id, "completed"))
    video = await video_of(publisher, topology, story.video_id)
    assert video is not None
    assert video.bytes == 48_000_000 and video.error_code is None
    assert await list_dead_letters(service_settings.nats_url, topology) == []
