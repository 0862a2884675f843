"""Quota reservations in a real PostgreSQL: exact under concurrency across two replicas,
idempotent per video, given back by a release or by a failure the provider never saw, counted
per calendar month; crossings recorded once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from reelvault_catalog.errors import Conflict, NotFound
from reelvault_catalog.migrate import migrate
from reelvault_catalog.repository import CatalogRepository
from reelvault_catalog.tenancy_repository import TenancyRepository
from reelvault_catalog.usage_repository import UsageRepository
from reelvault_common.contracts.catalog import QuotaLimits, UsageReport
from reelvault_common.contracts.events import OrgQuotaExceeded, OrgQuotaWarning, VideoFailed
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.support.catalog_events import VideoStory

pytestmark = pytest.mark.integration

PRICES = {"sora-2": Decimal("0.10"), "sora-2-pro": Decimal("0.30")}
MID_MAY = datetime(2026, 5, 15, 12, tzinfo=UTC)


@pytest.fixture
async def engines(database_url: str) -> AsyncIterator[list[AsyncEngine]]:
    engines = [create_async_engine(database_url, pool_size=10) for _ in range(2)]
    await migrate(engines[0])
    await TenancyRepository(engines[0]).create_org("acme")
    yield engines
    for engine in engines:
        await engine.dispose()


@pytest.fixture
def usage(engines: list[AsyncEngine]) -> UsageRepository:
    return UsageRepository(engines[0], PRICES)


def used(report: UsageReport, quota: str) -> Decimal:
    [item] = [item for item in report.items if item.quota == quota]
    return item.used


async def test_fifty_concurrent_reservations_on_two_replicas_admit_exactly_the_limit(
    engines: list[AsyncEngine], usage: UsageRepository
) -> None:
    await usage.set_quotas("acme", QuotaLimits(videos_per_month=10))
    replicas = [UsageRepository(engine, PRICES) for engine in engines]
    results = await asyncio.gather(*(
        replicas[i % 2].reserve("acme", uuid.uuid4(), model="sora-2", seconds=4, now=MID_MAY)
        for i in range(50)
    ))
    admitted = [r for r in results if r.admitted]
    assert len(admitted) == 10
    refused = [r.exceeded for r in results if r.exceeded is not None]
    assert len(refused) == 40
    assert {(e.quota, e.used, e.limit) for e in refused} == {
        ("videos_per_month", Decimal(10), Decimal(10))}
    # Each level announced by exactly one reservation (the 8th and the 10th).
    notices = [n for r in results for n in r.notices]
    assert sorted((n.type, n.quota, n.period) for n in notices) == [
        ("org.quota.exceeded", "videos_per_month", "2026-05"),
        ("org.quota.warning", "videos_per_month", "2026-05"),
    ]
    report = await usage.usage("acme", now=MID_MAY)
    assert used(report, "videos_per_month") == 10
    assert used(report, "generation_seconds_per_month") == 40
    assert used(report, "cost_usd_per_month") == Decimal("4.00")


async def test_a_reservation_is_counted_once_however_often_it_is_made(
    usage: UsageRepository,
) -> None:
    await usage.set_quotas("acme", QuotaLimits(videos_per_month=1))
    video = uuid.uuid4()
    for _ in range(3):  # at the limit after the first: still admitted, not counted again
        assert (await usage.reserve("acme", video, model="sora-2", seconds=8,
                                    now=MID_MAY)).admitted
    report = await usage.usage("acme", now=MID_MAY)
    assert used(report, "videos_per_month") == 1
    assert used(report, "generation_seconds_per_month") == 8
    other = await usage.reserve("acme", uuid.uuid4(), model="sora-2", seconds=8, now=MID_MAY)
    assert other.exceeded is not None


async def test_a_release_gives_the_reservation_back_and_it_can_be_made_again(
    usage: UsageRepository,
) -> None:
    await usage.set_quotas("acme", QuotaLimits(videos_per_month=1))
    video = uuid.uuid4()
    assert (await usage.reserve("acme", video, model="sora-2", seconds=4, now=MID_MAY)).admitted
    assert await usage.release("acme", video) is True
    assert await usage.release("acme", video) is True  # idempotent
    assert used(await usage.usage("acme", now=MID_MAY), "videos_per_month") == 0
    # The freed place can be taken, by another video or by the same one again.
    assert (await usage.reserve("acme", video, model="sora-2", seconds=4, now=MID_MAY)).admitted
    assert used(await usage.usage("acme", now=MID_MAY), "videos_per_month") == 1
    assert await usage.release("acme", uuid.uuid4()) is False  # nothing was counted
    assert await usage.release("globex", video) is False  # not that organization's


async def test_a_video_of_another_organization_or_an_unknown_organization_is_refused(
    engines: list[AsyncEngine], usage: UsageRepository
) -> None:
    await TenancyRepository(engines[0]).create_org("globex")
    video = uuid.uuid4()
    assert (await usage.reserve("acme", video, model="sora-2", seconds=4)).admitted
    with pytest.raises(Conflict):
        await usage.reserve("globex", video, model="sora-2", seconds=4)
    with pytest.raises(NotFound):
        await usage.reserve("nobody", uuid.uuid4(), model="sora-2", seconds=4)
    with pytest.raises(NotFound):
        await usage.usage("nobody")
    with pytest.raises(NotFound):
        await usage.set_quotas("nobody", QuotaLimits(videos_per_month=1))


async def test_monthly_usage_starts_again_with_each_utc_month(usage: UsageRepository) -> None:
    await usage.set_quotas("acme", QuotaLimits(generation_seconds_per_month=12))
    late_december = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
    new_year = datetime(2027, 1, 1, 0, 0, tzinfo=UTC)
    assert (await usage.reserve("acme", uuid.uuid4(), model="sora-2", seconds=12,
                                now=late_december)).admitted
    refused = await usage.reserve("acme", uuid.uuid4(), model="sora-2", seconds=4,
                                  now=late_december)
    assert refused.exceeded is not None
    assert refused.exceeded.resets_at == new_year
    assert (await usage.reserve("acme", uuid.uuid4(), model="sora-2", seconds=12,
                                now=new_year)).admitted
    report = await usage.usage("acme", now=new_year)
    assert report.period_start == new_year
    assert used(report, "generation_seconds_per_month") == 12


async def test_cost_counts_the_price_of_each_model_to_the_cent(usage: UsageRepository) -> None:
    await usage.set_quotas("acme", QuotaLimits(cost_usd_per_month=Decimal("2.50")))
    for model in ("sora-2-pro", "sora-2", "unknown-model"):  # 1.20 + 0.40 + 0
        assert (await usage.reserve("acme", uuid.uuid4(), model=model, seconds=4,
                                    now=MID_MAY)).admitted
    refused = await usage.reserve("acme", uuid.uuid4(), model="sora-2-pro", seconds=4,
                                  now=MID_MAY)
    assert refused.exceeded is not None
    assert (refused.exceeded.quota, refused.exceeded.used, refused.exceeded.requested) == (
        "cost_usd_per_month", Decimal("1.60"), Decimal("1.20"))
    assert (await usage.reserve("acme", uuid.uuid4(), model="sora-2", seconds=8,
                                now=MID_MAY)).admitted  # 1.60 + 0.80 = 2.40 <= 2.50


async def test_limits_are_set_one_by_one_and_removed_with_null(usage: UsageRepository) -> None:
    await usage.set_quotas("acme", QuotaLimits(videos_per_month=5, storage_bytes=1000))
    report = await usage.set_quotas("acme", QuotaLimits(generation_seconds_per_month=60))
    limits = {item.quota: item.limit for item in report.items}
    assert limits == {"videos_per_month": 5, "generation_seconds_per_month": 60,
                      "cost_usd_per_month": None, "storage_bytes": 1000}
    report = await usage.set_quotas("acme", QuotaLimits(videos_per_month=None))
    assert {item.quota: item.limit for item in report.items}["videos_per_month"] is None
    resets = {item.quota: item.resets_at for item in report.items}
    assert resets["storage_bytes"] is None
    assert resets["videos_per_month"] is not None


async def test_a_failure_before_the_provider_took_the_job_gives_the_reservation_back(
    engines: list[AsyncEngine], usage: UsageRepository
) -> None:
    repository = CatalogRepository(engines[0], "http://gateway.test")
    never_started, started = VideoStory(org="acme"), VideoStory(org="acme")
    for story in (never_started, started):
        assert (await usage.reserve("acme", story.video_id, model="sora-2", seconds=4)).admitted
        await repository.apply(story.requested())
    refused = VideoFailed.new(video_id=never_started.video_id, org="acme",
                              correlation_id="c", stage="request", code="refused",
                              message="the provider refused the request")
    await repository.apply(refused)
    await repository.apply(refused)  # redelivered: nothing more
    await repository.apply(started.started())
    await repository.apply(started.failed(stage="generation"))
    async with engines[0].connect() as conn:
        rows = (await conn.execute(text(
            "SELECT video_id, released_at IS NOT NULL FROM usage_reservations"))).all()
    assert dict(rows) == {never_started.video_id: True, started.video_id: False}
    assert used(await usage.usage("acme"), "videos_per_month") == 1


async def test_storage_refuses_new_videos_once_full_and_is_announced_once(
    engines: list[AsyncEngine], usage: UsageRepository
) -> None:
    repository = CatalogRepository(engines[0], "http://gateway.test")
    await usage.set_quotas("acme", QuotaLimits(storage_bytes=1000))
    assert await usage.storage_notices("acme") == []
    story = VideoStory(org="acme")
    await repository.apply(story.requested())
    await repository.apply(story.stored(size=751))  # and its 99-byte thumbnail: 850
    [warning] = await usage.storage_notices("acme")
    assert isinstance(warning, OrgQuotaWarning)
    assert (warning.quota, warning.period, warning.used, warning.limit) == (
        "storage_bytes", "total", Decimal(850), Decimal(1000))
    assert (await usage.reserve("acme", uuid.uuid4(), model="sora-2", seconds=4)).admitted
    other = VideoStory(org="acme")
    await repository.apply(other.requested())
    await repository.apply(other.stored(size=51))  # 150 with its thumbnail
    [exceeded] = await usage.storage_notices("acme")
    assert isinstance(exceeded, OrgQuotaExceeded)
    assert await usage.storage_notices("acme") == []  # announced once
    refused = await usage.reserve("acme", uuid.uuid4(), model="sora-2", seconds=4)
    assert refused.exceeded is not None
    assert (refused.exceeded.quota, refused.exceeded.used, refused.exceeded.resets_at) == (
        "storage_bytes", Decimal(1000), None)
    assert used(await usage.usage("acme"), "storage_bytes") == 1000
