"""Orphaned uploads on a real JetStream, PostgreSQL (a running catalog, asked over NATS) and
filesystem storage, with injected time and two archiver replicas: one pass per interval across
both, and only the uploads older than the grace that no video (a deleted one included)
references are removed."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient
from reelvault_archiver.app import ArchiverService
from reelvault_archiver.orphans import CatalogReferences, NatsSweepLease, OrphanSweeper
from reelvault_archiver.settings import ArchiverSettings
from reelvault_catalog.app import CatalogService
from reelvault_catalog.settings import CatalogSettings
from reelvault_common.contracts.catalog import CreateOrg, RpcReply
from reelvault_common.contracts.events import ReferenceImage
from reelvault_common.messaging.topology import Topology
from reelvault_common.runtime.settings import ServiceSettings, StorageSettings
from reelvault_common.storage.filesystem import FilesystemStorage
from reelvault_common.storage.layout import Buckets, upload_key

from tests.support.catalog_events import VideoStory, sha256_of

pytestmark = pytest.mark.integration

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)
BUCKET = "hug-images"


@dataclass
class World:
    catalog: CatalogService
    storage: FilesystemStorage
    root: Path
    topology: Topology
    nats_url: str
    connections: list[NatsClient]

    async def upload(self, org: str, name: str, uploaded: datetime) -> str:
        key = upload_key(org, sha256_of(name), "png")

        async def chunks() -> AsyncIterator[bytes]:
            yield name.encode()

        await self.storage.put(BUCKET, key, chunks(), "image/png")
        stamp = uploaded.timestamp()
        os.utime(self.root / BUCKET / key, (stamp, stamp))
        return key

    async def video_referencing(self, org: str, *keys: str) -> VideoStory:
        story = VideoStory(org=org)
        refs = tuple(ReferenceImage(bucket=BUCKET, key=key, content_type="image/png")
                     for key in keys)
        await self.catalog.repository.apply(story.requested(images=0, reference_images=refs))
        return story

    def exists(self, key: str) -> bool:
        return (self.root / BUCKET / key).is_file()


@pytest.fixture
async def world(service_settings: ServiceSettings, database_url: str,
                tmp_path: Path) -> AsyncIterator[World]:
    settings = CatalogSettings(
        NATS_URL=service_settings.nats_url, namespace=service_settings.namespace,
        stream_duplicate_window_s=60, DATABASE_URL=database_url,
        retention_sweep_interval_s=0,
    )
    catalog = CatalogService(settings)
    await catalog.start()
    storage = FilesystemStorage(tmp_path / "storage", "http://127.0.0.1:8000", b"k" * 32)
    await storage.ensure_buckets(Buckets.from_settings(StorageSettings()).all())
    nc = await nats.connect(service_settings.nats_url)
    topology = Topology.from_settings(settings)
    world = World(catalog, storage, tmp_path / "storage", topology,
                  service_settings.nats_url, [nc])
    try:
        for org in ("acme", "globex"):
            raw = await nc.request(topology.rpc_subject(CreateOrg(slug=org)),
                                   CreateOrg(slug=org).model_dump_json().encode(), timeout=5)
            assert RpcReply.model_validate_json(raw.data).ok
        yield world
    finally:
        for connection in world.connections:
            await connection.close()
        await storage.aclose()
        await catalog.stop()


async def replica(world: World, clock: list[datetime], interval: timedelta) -> OrphanSweeper:
    """One archiver replica's sweeper: its own NATS connection, the shared lease bucket."""
    nc = await nats.connect(world.nats_url)
    world.connections.append(nc)
    lease = await NatsSweepLease.open(nc.jetstream(),
                                      world.topology.kv_bucket("archiver", "orphan_sweeps"),
                                      interval)
    return OrphanSweeper(world.storage, BUCKET, CatalogReferences(nc, world.topology, 5.0),
                         lease, grace_s=24 * 3600, batch_size=2, max_deletions_per_s=1000,
                         clock=lambda: clock[0])


async def test_two_replicas_remove_only_old_unreferenced_uploads(world: World) -> None:
    old, young = NOW - 25 * HOUR, NOW - 23 * HOUR
    orphan = await world.upload("acme", "orphan", old)
    orphan2 = await world.upload("acme", "orphan-two", old)
    used = await world.upload("acme", "used", old)
    used_by_deleted = await world.upload("acme", "used-by-deleted", old)
    fresh = await world.upload("acme", "fresh", young)
    other_orphan = await world.upload("globex", "orphan", old)
    # globex's video names acme's upload key: that is no reference for acme.
    await world.video_referencing("globex", orphan2)
    await world.video_referencing("acme", used)
    gone = await world.video_referencing("acme", used_by_deleted)
    assert await world.catalog.deletions.delete("acme", gone.video_id, "k1") is not None

    clock = [NOW]
    first, second = (await replica(world, clock, HOUR), await replica(world, clock, HOUR))
    results = await asyncio.gather(first.sweep_once(), second.sweep_once())

    assert sorted(r.skipped for r in results) == [False, True]
    [swept] = [r for r in results if not r.skipped]
    assert (swept.orgs, swept.candidates, swept.referenced, swept.removed) == (3, 5, 2, 3)
    assert not any(world.exists(k) for k in (orphan, orphan2, other_orphan))
    assert all(world.exists(k) for k in (used, used_by_deleted, fresh))

    # Within the interval neither replica sweeps again, whatever ages.
    clock[0] = NOW + HOUR / 2
    assert [(await s.sweep_once()).skipped for s in (first, second)] == [True, True]
    # An interval later one of them does, and the upload that came of age goes too.
    clock[0] = NOW + 2 * HOUR
    later = [await s.sweep_once() for s in (second, first)]
    assert [r.skipped for r in later] == [False, True]
    assert later[0].removed == 1
    assert not world.exists(fresh)
    assert world.exists(used) and world.exists(used_by_deleted)


async def test_the_archiver_service_sweeps_on_its_own(world: World, tmp_path: Path) -> None:
    """The wiring: a running ArchiverService with a zero grace removes an orphan and keeps a
    referenced upload."""
    orphan = await world.upload("acme", "orphan", datetime.now(UTC) - HOUR)
    used = await world.upload("acme", "used", datetime.now(UTC) - HOUR)
    await world.video_referencing("acme", used)
    settings = ArchiverSettings(
        NATS_URL=world.catalog.settings.nats_url, namespace=world.catalog.settings.namespace,
        storage_dir=world.root,
        storage_signing_key="k" * 32, orphan_upload_grace_s=0, orphan_sweep_interval_s=30,
        stream_duplicate_window_s=60,
    )
    service = ArchiverService(settings)
    await service.start()
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while world.exists(orphan):
            assert asyncio.get_running_loop().time() < deadline, "the orphan was never removed"
            await asyncio.sleep(0.1)
        assert world.exists(used)
    finally:
        await service.stop()
