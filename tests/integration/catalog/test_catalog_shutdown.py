"""Graceful shutdown of ``python -m reelvault_catalog``: on SIGTERM it takes no new messages,
lets the event it is applying finish within ``REELVAULT_SHUTDOWN_GRACE_S`` -- or hands it back
when it cannot (here: its row is locked by someone else) -- and exits 0. Nothing is lost: a
handed-back event is applied by the next catalog at once, long before ``ack_wait``."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import nats
import pytest
from nats.aio.client import Client as NatsClient
from reelvault_common.messaging.setup import prepare_topology
from reelvault_common.messaging.topology import Topology
from reelvault_common.runtime.settings import ServiceSettings
from sqlalchemy.engine import make_url

from tests.support.catalog_events import VideoStory
from tests.support.service_process import service_process

pytestmark = pytest.mark.integration

GRACE_S = 1.5
ACK_WAIT_S = 120  # a redelivery within seconds can only be a hand-back


def catalog_env(settings: ServiceSettings, database_url: str) -> dict[str, str]:
    return {
        "NATS_URL": settings.nats_url,
        "DATABASE_URL": database_url,
        "REELVAULT_NAMESPACE": settings.namespace,
        "REELVAULT_STREAM_DUPLICATE_WINDOW_S": "60",
        "REELVAULT_SHUTDOWN_GRACE_S": str(GRACE_S),
        "REELVAULT_PROJECTION__ACK_WAIT_S": str(ACK_WAIT_S),
    }


@pytest.fixture
async def nc(service_settings: ServiceSettings) -> AsyncIterator[NatsClient]:
    await prepare_topology(service_settings, Topology.from_settings(service_settings))
    client = await nats.connect(service_settings.nats_url)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(
        hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def publish(nc: NatsClient, topology: Topology, event: object) -> None:
    await nc.jetstream().publish(
        topology.subject(str(event.type), str(event.org)),  # type: ignore[attr-defined]
        event.model_dump_json().encode(),  # type: ignore[attr-defined]
        stream=topology.stream, headers={"Nats-Msg-Id": str(event.event_id)})  # type: ignore[attr-defined]


async def status_of(db: asyncpg.Connection, video_id: uuid.UUID) -> str | None:
    return await db.fetchval("SELECT status FROM videos WHERE id = $1", video_id)  # type: ignore[no-any-return]


async def until(check: object, timeout_s: float, what: str) -> float:
    began = time.monotonic()
    while not await check():  # type: ignore[operator]
        assert time.monotonic() - began < timeout_s, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
    return time.monotonic() - began


async def blocked_on_a_lock(db: asyncpg.Connection) -> bool:
    """Some other session of this database waits for a row lock (the catalog's handler)."""
    waiting = await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock'")
    return bool(waiting)


async def hold_row_and_send_started(
    nc: NatsClient, topology: Topology, db: asyncpg.Connection, story: VideoStory
) -> asyncpg.transaction.Transaction:
    """Lock the video's row from another session, then publish an event for it: the catalog's
    handler blocks on the lock (in flight, unacked)."""
    tx = db.transaction()
    await tx.start()
    await db.execute("SELECT 1 FROM videos WHERE id = $1 FOR UPDATE", story.video_id)
    await publish(nc, topology, story.started())
    await until(lambda: blocked_on_a_lock(db), 20, "the catalog to wait for the row lock")
    return tx


async def test_sigterm_hands_back_what_it_cannot_finish_and_exits_0(
    service_settings: ServiceSettings, database_url: str, nc: NatsClient,
    db: asyncpg.Connection, tmp_path: Path,
) -> None:
    topology = Topology.from_settings(service_settings)
    env = catalog_env(service_settings, database_url)
    story = VideoStory()
    async with service_process("catalog-1", "reelvault_catalog", env, tmp_path) as first:
        await first.wait_for_log("catalog ready")
        await publish(nc, topology, story.requested())
        await until(lambda: _is(db, story.video_id, "queued"), 20, "the row")
        tx = await hold_row_and_send_started(nc, topology, db, story)

        sent = first.terminate()
        code = await first.exit_code(timeout_s=GRACE_S + 8)
        stopped_after = time.monotonic() - sent
        assert code == 0, first.log()[-3000:]
        assert stopped_after < GRACE_S + 5, stopped_after
        assert "handing back" in first.log()
        await tx.rollback()  # the lock holder goes away

    assert await status_of(db, story.video_id) == "queued"  # not applied by the stopped one
    async with service_process("catalog-2", "reelvault_catalog", env, tmp_path) as second:
        await second.wait_for_log("catalog ready")
        took = await until(lambda: _is(db, story.video_id, "processing"), 20,
                           "the handed-back event to be applied")
        assert took < 20 < ACK_WAIT_S  # redelivered at once, not after ack_wait
        second.terminate()
        assert await second.exit_code(timeout_s=GRACE_S + 8) == 0


async def test_sigterm_lets_the_event_in_flight_finish_within_the_grace_period(
    service_settings: ServiceSettings, database_url: str, nc: NatsClient,
    db: asyncpg.Connection, tmp_path: Path,
) -> None:
    topology = Topology.from_settings(service_settings)
    durable = topology.durable("catalog", "projection")
    story = VideoStory()
    env = {**catalog_env(service_settings, database_url), "REELVAULT_SHUTDOWN_GRACE_S": "6"}
    async with service_process("catalog", "reelvault_catalog", env, tmp_path) as catalog:
        await catalog.wait_for_log("catalog ready")
        await publish(nc, topology, story.requested())
        await until(lambda: _is(db, story.video_id, "queued"), 20, "the row")
        tx = await hold_row_and_send_started(nc, topology, db, story)

        sent = catalog.terminate()
        await asyncio.sleep(1.0)
        assert catalog.process.poll() is None  # still finishing its work
        await tx.rollback()  # the lock goes: the handler completes
        assert await catalog.exit_code(timeout_s=10) == 0, catalog.log()[-3000:]
        assert time.monotonic() - sent < 6 + 3

    assert await status_of(db, story.video_id) == "processing"  # done by the stopping catalog
    info = await nc.jetstream().consumer_info(topology.stream, durable)
    assert info.num_ack_pending == 0 and info.num_pending == 0  # and acked


async def _is(db: asyncpg.Connection, video_id: uuid.UUID, status: str) -> bool:
    return await status_of(db, video_id) == status

