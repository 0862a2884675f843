"""Row-level security on a real PostgreSQL: a transaction as ``reelvault_tenant`` sees nothing
without an organization, only its organization's rows with one, and can write nothing; the
catalog's own reads of videos go through it (another organization's video is not there)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from reelvault_catalog.migrate import migrate
from reelvault_catalog.repository import CatalogRepository
from reelvault_catalog.tenancy_repository import TenancyRepository
from reelvault_catalog.tenant import AS_TENANT, TENANT_ROLE, tenant_transaction
from reelvault_catalog.usage_repository import UsageRepository
from reelvault_catalog.webhooks.payloads import webhook_message
from reelvault_catalog.webhooks.repository import WebhookRepository
from reelvault_catalog.webhooks.settings import WebhookDeliverySettings
from reelvault_catalog.webhooks.signing import new_secret
from reelvault_common.contracts.catalog import QuotaLimits
from reelvault_common.contracts.tenancy import Scope
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.support.catalog_events import VideoStory

pytestmark = pytest.mark.integration

ORGS = ("acme", "globex")
TENANT_TABLES = ("organizations", "videos", "api_keys", "org_quotas", "usage_reservations",
                 "quota_notices", "webhook_endpoints", "webhook_deliveries")


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    # One connection: every transaction below reuses it, so nothing can leak between them.
    engine = create_async_engine(database_url, pool_size=1, max_overflow=0)
    await migrate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def videos(engine: AsyncEngine) -> dict[str, list[uuid.UUID]]:
    """Two videos, a key, limits, a reservation, a notice and two webhook endpoints with a
    delivery each in each of two organizations."""
    tenancy = TenancyRepository(engine)
    usage = UsageRepository(engine, {"sora-2": Decimal("1")})
    repository = CatalogRepository(engine, "http://gateway.test")
    webhooks = WebhookRepository(engine, WebhookDeliverySettings())
    made: dict[str, list[uuid.UUID]] = {}
    for org in ORGS:
        await tenancy.create_org(org)
        await tenancy.create_key(org, name="ci", scopes=[Scope.VIDEOS_READ], expires_at=None)
        await usage.set_quotas(org, QuotaLimits(videos_per_month=1))
        stories = [VideoStory(org=org) for _ in range(2)]
        for story in stories:
            await repository.apply(story.requested())
        # One reservation of one video: 100 % of the limit, so the notices are recorded too.
        assert (await usage.reserve(org, stories[0].video_id, model="sora-2", seconds=4)).admitted
        for name in ("a", "b"):
            await webhooks.create_endpoint(org, url=f"https://hooks.example.com/{org}/{name}",
                                           event_types=["video.completed"], description=name,
                                           secret=new_secret())
        message = webhook_message(stories[0].stored(), "http://gateway.test")
        assert message is not None and await webhooks.record(message) == 2
        made[org] = [story.video_id for story in stories]
    return made


async def count_as_tenant(engine: AsyncEngine, table: str, org: str | None) -> int:
    async with engine.begin() as conn:
        if org is None:
            await conn.execute(text(f"SELECT set_config('role', '{TENANT_ROLE}', true)"))
        else:
            await conn.execute(AS_TENANT, {"org": org})
        return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())


async def count_as_owner(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())


@pytest.mark.parametrize("table", TENANT_TABLES)
async def test_a_tenant_without_an_organization_sees_no_rows(
    engine: AsyncEngine, videos: dict[str, list[uuid.UUID]], table: str
) -> None:
    assert await count_as_owner(engine, table) >= 2  # the rows are there ...
    assert await count_as_tenant(engine, table, None) == 0  # ... and hidden


@pytest.mark.parametrize("table", TENANT_TABLES)
async def test_a_tenant_sees_its_own_organizations_rows_only(
    engine: AsyncEngine, videos: dict[str, list[uuid.UUID]], table: str
) -> None:
    everything = await count_as_owner(engine, table)
    mine = await count_as_tenant(engine, table, "acme")
    theirs = await count_as_tenant(engine, table, "globex")
    assert mine >= 1
    assert theirs >= 1
    # The two organizations' rows are all there is (the default org has none of these,
    # except itself in organizations).
    assert mine + theirs == everything - (1 if table == "organizations" else 0)
    assert await count_as_tenant(engine, table, "nobody") == 0


async def test_a_query_for_another_organization_finds_nothing(
    engine: AsyncEngine, videos: dict[str, list[uuid.UUID]]
) -> None:
    async with tenant_transaction(engine, "acme") as conn:
        asked = await conn.execute(text("SELECT id, org FROM videos WHERE org = 'globex'"))
        assert asked.all() == []
        seen = await conn.execute(text("SELECT DISTINCT org FROM videos"))
        assert [row[0] for row in seen] == ["acme"]


async def test_a_tenant_writes_nothing(
    engine: AsyncEngine, videos: dict[str, list[uuid.UUID]]
) -> None:
    with pytest.raises(DBAPIError, match="permission denied"):
        async with tenant_transaction(engine, "acme") as conn:
            await conn.execute(text("UPDATE videos SET prompt = 'x' WHERE org = 'acme'"))
    with pytest.raises(DBAPIError, match="permission denied"):
        async with tenant_transaction(engine, "acme") as conn:
            await conn.execute(text(
                "INSERT INTO usage_reservations (video_id, org, period_start, seconds, cost_usd)"
                " VALUES (:id, 'acme', :day, 1, 0)"), {"id": uuid.uuid4(),
                                                      "day": datetime.now(UTC).date()})
    with pytest.raises(DBAPIError, match="permission denied"):
        async with tenant_transaction(engine, "acme") as conn:
            await conn.execute(text("UPDATE webhook_endpoints SET url = 'https://evil.example'"
                                    " WHERE org = 'acme'"))


async def test_the_role_and_the_organization_end_with_the_transaction(
    engine: AsyncEngine, videos: dict[str, list[uuid.UUID]]
) -> None:
    async with tenant_transaction(engine, "acme") as conn:
        who = (await conn.execute(text(
            "SELECT current_user, current_setting('reelvault.org', true)"))).one()
        assert tuple(who) == (TENANT_ROLE, "acme")
    # The same (only) pooled connection, next transaction: the owner again, no organization.
    async with engine.connect() as conn:
        who = (await conn.execute(text(
            "SELECT current_user, coalesce(current_setting('reelvault.org', true), '')"))).one()
        assert who[0] != TENANT_ROLE
        assert who[1] == ""
        assert int((await conn.execute(text("SELECT count(*) FROM videos"))).scalar_one()) == 4


async def test_get_and_list_of_another_organization_find_nothing(
    engine: AsyncEngine, videos: dict[str, list[uuid.UUID]]
) -> None:
    repository = CatalogRepository(engine, "http://gateway.test")
    acme_video, globex_video = videos["acme"][0], videos["globex"][0]
    mine = await repository.get("acme", acme_video)
    assert mine is not None
    assert mine.org == "acme"
    assert await repository.get("acme", globex_video) is None
    assert await repository.get("globex", acme_video) is None
    listed = await repository.list("acme")
    assert sorted(item.id for item in listed.items) == sorted(videos["acme"])
    assert (await repository.list("nobody")).items == []
    assert (await repository.list("default")).items == []
