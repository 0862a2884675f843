"""Deleting videos in a real PostgreSQL: the tombstone, the announcements (cancel first for an
unfinished video), idempotence, reads answering nothing afterwards, stored bytes going down,
and the retention sweeper (injected time) on two replicas taking disjoint batches."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from reelvault_catalog.deletion import RETENTION, Deletions
from reelvault_catalog.errors import NotFound
from reelvault_catalog.migrate import migrate
from reelvault_catalog.repository import CatalogRepository
from reelvault_catalog.tenancy_repository import TenancyRepository
from reelvault_catalog.usage_repository import UsageRepository
from reelvault_common.contracts.events import VideoCancelRequested, VideoDeleted
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.support.catalog_events import VideoStory

pytestmark = pytest.mark.integration

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


class Recorder:
    """Stands in for the stream: keeps what was published, in order."""

    def __init__(self) -> None:
        self.events: list[VideoDeleted | VideoCancelRequested] = []

    async def __call__(self, event: VideoDeleted | VideoCancelRequested) -> None:
        await asyncio.sleep(0)  # a publish yields, like the real one
        self.events.append(event)

    def of(self, kind: type) -> list[VideoDeleted | VideoCancelRequested]:
        return [event for event in self.events if isinstance(event, kind)]


@pytest.fixture
async def engines(database_url: str) -> AsyncIterator[list[AsyncEngine]]:
    engines = [create_async_engine(database_url, pool_size=5) for _ in range(2)]
    await migrate(engines[0])
    tenancy = TenancyRepository(engines[0])
    await tenancy.create_org("acme")
    await tenancy.create_org("globex")
    yield engines
    for engine in engines:
        await engine.dispose()


async def stored_video(repo: CatalogRepository, org: str, *, days_old: float = 0,
                       size: int = 1000) -> VideoStory:
    story = VideoStory(org=org, start=NOW - timedelta(days=days_old))
    for event in (story.requested(), story.started(), story.completed(),
                  story.stored(size=size)):
        await repo.apply(event)
    return story


async def test_delete_keeps_a_tombstone_announces_once_and_hides_the_video(
    engines: list[AsyncEngine],
) -> None:
    repo = CatalogRepository(engines[0], "http://gw.test")
    usage = UsageRepository(engines[0], {"sora-2": Decimal("0.1")})
    published = Recorder()
    deletions = Deletions(engines[0], published, clock=lambda: NOW)
    story = await stored_video(repo, "acme", size=5000)
    kept = await stored_video(repo, "acme", size=700)
    before = await usage.usage("acme", now=NOW)

    first = await deletions.delete("acme", story.video_id, "k1")
    again = await deletions.delete("acme", story.video_id, "k2")

    assert first is not None and again == first
    assert (first.status, first.deleted_at, first.deleted_by) == ("deleted", NOW, "k1")
    [event] = published.of(VideoDeleted)
    assert isinstance(event, VideoDeleted)
    assert event.video_id == story.video_id and event.org == "acme"
    assert {(o.bucket, o.key.rsplit("/", 1)[-1]) for o in event.objects} == {
        ("videos", "video.mp4"), ("thumbnails", "thumbnail.webp")}
    assert event.bytes == 5000 + 99
    assert published.of(VideoCancelRequested) == []  # it had finished
    assert await repo.get("acme", story.video_id) is None
    assert [v.id for v in (await repo.list("acme")).items] == [kept.video_id]
    stored_before = next(i.used for i in before.items if i.quota == "storage_bytes")
    after = await usage.usage("acme", now=NOW)
    stored_after = next(i.used for i in after.items if i.quota == "storage_bytes")
    assert stored_before - stored_after == 5000 + 99
    async with engines[0].connect() as conn:
        row = (await conn.execute(text(
            "SELECT status, deleted_by, deletion_announced_at FROM videos WHERE id = :id"),
            {"id": story.video_id})).one()
    assert row.status == "deleted" and row.deleted_by == "k1"
    assert row.deletion_announced_at is not None
    # Events still on their way change nothing on the tombstone.
    await repo.apply(story.failed(at=50))
    assert await repo.get("acme", story.video_id) is None


async def test_another_organizations_video_is_not_found_and_untouched(
    engines: list[AsyncEngine],
) -> None:
    repo = CatalogRepository(engines[0], "http://gw.test")
    published = Recorder()
    deletions = Deletions(engines[0], published, clock=lambda: NOW)
    story = await stored_video(repo, "acme")
    assert await deletions.delete("globex", story.video_id, "k9") is None
    assert await deletions.delete("acme", uuid.uuid4(), "k1") is None
    assert await repo.get("acme", story.video_id) is not None
    assert published.events == []


async def test_an_unfinished_video_is_canceled_before_its_tombstone(
    engines: list[AsyncEngine],
) -> None:
    repo = CatalogRepository(engines[0], "http://gw.test")
    published = Recorder()
    deletions = Deletions(engines[0], published, clock=lambda: NOW)
    story = VideoStory(org="acme", start=NOW)
    await repo.apply(story.requested())
    await repo.apply(story.started())

    deleted = await deletions.delete("acme", story.video_id, "k1")

    assert deleted is not None
    assert [type(e) for e in published.events] == [VideoCancelRequested, VideoDeleted]
    cancel, gone = published.events
    assert isinstance(cancel, VideoCancelRequested) and cancel.requested_by == "k1"
    assert isinstance(gone, VideoDeleted) and gone.objects == ()
    # The generator's later report does not bring it back.
    await repo.apply(story.stored(at=30))
    assert await repo.get("acme", story.video_id) is None


async def test_a_lost_announcement_is_made_again_by_the_sweeper(
    engines: list[AsyncEngine],
) -> None:
    repo = CatalogRepository(engines[0], "http://gw.test")
    story = await stored_video(repo, "acme")

    class Down(Exception):
        pass

    async def broken(event: object) -> None:
        raise Down

    with pytest.raises(Down):
        await Deletions(engines[0], broken, clock=lambda: NOW).delete(
            "acme", story.video_id, "k1")
    assert await repo.get("acme", story.video_id) is None  # the tombstone is committed

    published = Recorder()
    sweeper = Deletions(engines[0], published, announce_grace_s=60)
    assert (await sweeper.sweep_once(NOW + timedelta(seconds=30))).announced == 0
    assert (await sweeper.sweep_once(NOW + timedelta(seconds=90))).announced == 1
    assert (await sweeper.sweep_once(NOW + timedelta(seconds=150))).announced == 0
    assert [e.video_id for e in published.of(VideoDeleted)] == [story.video_id]


async def test_retention_sweep_on_two_replicas_deletes_each_expired_video_once(
    engines: list[AsyncEngine],
) -> None:
    repo = CatalogRepository(engines[0], "http://gw.test")
    usage = UsageRepository(engines[0], {})
    published = Recorder()
    replicas = [Deletions(engine, published, batch_size=7) for engine in engines]
    assert (await replicas[0].set_retention("acme", 30)).delete_after_days == 30
    with pytest.raises(NotFound):
        await replicas[0].set_retention("nobody", 3)
    expired = [await stored_video(repo, "acme", days_old=31 + i / 10) for i in range(40)]
    young = [await stored_video(repo, "acme", days_old=29) for _ in range(3)]
    # An organization without retention keeps everything, however old.
    other = [await stored_video(repo, "globex", days_old=400) for _ in range(3)]
    unfinished = VideoStory(org="acme", start=NOW - timedelta(days=40))
    await repo.apply(unfinished.requested())

    async def drain(replica: Deletions) -> int:
        total = 0
        while (done := (await replica.sweep_once(NOW)).deleted):
            total += done
        return total

    counts = await asyncio.gather(drain(replicas[0]), drain(replicas[1]))

    assert sum(counts) == 41
    deleted = Counter(e.video_id for e in published.of(VideoDeleted))
    assert set(deleted) == {s.video_id for s in expired} | {unfinished.video_id}
    assert set(deleted.values()) == {1}
    assert [e.video_id for e in published.of(VideoCancelRequested)] == [unfinished.video_id]
    assert all(isinstance(e, VideoDeleted) and e.deleted_by == RETENTION
               for e in published.of(VideoDeleted))
    listed = {v.id for v in (await repo.list("acme", limit=100)).items}
    assert listed == {s.video_id for s in young}
    assert len((await repo.list("globex", limit=100)).items) == len(other)
    report = await usage.usage("acme", now=NOW)
    [stored] = [i.used for i in report.items if i.quota == "storage_bytes"]
    assert stored == 3 * (1000 + 99)
    # Back to forever: nothing more is deleted even long after.
    await replicas[0].set_retention("acme", 0)
    assert (await replicas[0].sweep_once(NOW + timedelta(days=100))).deleted == 0
