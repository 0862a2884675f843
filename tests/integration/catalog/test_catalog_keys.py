"""Organizations and API keys in a real PostgreSQL: slugs are unique, a key's secret is shown
once and only its hash is kept, lookups record use, revocation is idempotent and visible."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from reelvault_catalog.errors import AlreadyExists, NotFound
from reelvault_catalog.migrate import migrate
from reelvault_catalog.tenancy_repository import TenancyRepository
from reelvault_common.contracts.tenancy import Scope, key_matches, public_id_of
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url)
    await migrate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def tenancy(engine: AsyncEngine) -> TenancyRepository:
    return TenancyRepository(engine)


READ = [Scope.VIDEOS_READ]


async def test_an_organization_slug_is_taken_once(tenancy: TenancyRepository) -> None:
    created = await tenancy.create_org("acme", "Acme Inc.")
    assert (created.slug, created.name) == ("acme", "Acme Inc.")
    with pytest.raises(AlreadyExists, match="acme"):
        await tenancy.create_org("acme", "Another Acme")
    with pytest.raises(AlreadyExists):
        await tenancy.create_org("default")
    orgs = await tenancy.list_orgs()
    assert [(org.slug, org.name) for org in orgs] == [("acme", "Acme Inc."),
                                                     ("default", "Default")]


async def test_a_new_key_is_shown_once_and_stored_as_its_hash(
    engine: AsyncEngine, tenancy: TenancyRepository
) -> None:
    await tenancy.create_org("acme")
    created = await tenancy.create_key(
        "acme", name="ci", scopes=[Scope.VIDEOS_WRITE, Scope.VIDEOS_READ, Scope.VIDEOS_READ],
        expires_at=None)
    key = created.key
    assert public_id_of(created.secret) == key.public_id
    assert (key.org, key.name, key.revoked_at, key.last_used_at) == ("acme", "ci", None, None)
    assert key.scopes == [Scope.VIDEOS_READ, Scope.VIDEOS_WRITE]  # once each, stable order
    async with engine.connect() as conn:
        stored = (await conn.execute(text("SELECT api_keys::text FROM api_keys"))).scalar_one()
    secret_part = created.secret.rsplit("_", 1)[1]
    assert secret_part not in stored
    found = await tenancy.lookup_key(key.public_id)
    assert found is not None
    assert key_matches(created.secret, found.key_hash)
    assert not key_matches(created.secret + "x", found.key_hash)


async def test_a_key_for_an_unknown_organization_is_not_found(tenancy: TenancyRepository) -> None:
    with pytest.raises(NotFound, match="nobody"):
        await tenancy.create_key("nobody", name="", scopes=READ, expires_at=None)
    with pytest.raises(NotFound):
        await tenancy.list_keys("nobody")


async def test_keys_are_listed_per_organization(tenancy: TenancyRepository) -> None:
    for org in ("acme", "globex"):
        await tenancy.create_org(org)
    first = await tenancy.create_key("acme", name="one", scopes=READ, expires_at=None)
    second = await tenancy.create_key("acme", name="two", scopes=[Scope.ADMIN], expires_at=None)
    await tenancy.create_key("globex", name="theirs", scopes=READ, expires_at=None)
    listed = await tenancy.list_keys("acme")
    assert [k.public_id for k in listed] == [first.key.public_id, second.key.public_id]
    assert [k.name for k in await tenancy.list_keys("globex")] == ["theirs"]
    assert await tenancy.list_keys("default") == []


async def test_a_lookup_records_use_of_a_usable_key_only(tenancy: TenancyRepository) -> None:
    await tenancy.create_org("acme")
    live = await tenancy.create_key("acme", name="", scopes=READ, expires_at=None)
    expired = await tenancy.create_key(
        "acme", name="", scopes=READ, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    before = datetime.now(UTC)
    found = await tenancy.lookup_key(live.key.public_id)
    assert found is not None
    assert found.key.last_used_at is not None
    assert found.key.last_used_at >= before - timedelta(seconds=1)
    stale = await tenancy.lookup_key(expired.key.public_id)
    assert stale is not None
    assert stale.key.expires_at is not None
    assert stale.key.last_used_at is None
    assert await tenancy.lookup_key("0123456789abcdef") is None


async def test_revocation_by_key_public_id_or_row_id_is_idempotent(
    tenancy: TenancyRepository,
) -> None:
    await tenancy.create_org("acme")
    keys = [await tenancy.create_key("acme", name=str(i), scopes=READ, expires_at=None)
            for i in range(3)]
    names = [keys[0].secret, keys[1].key.public_id, str(keys[2].key.id)]
    for created, name in zip(keys, names, strict=True):
        revoked = await tenancy.revoke_key(name)
        assert revoked.public_id == created.key.public_id
        assert revoked.revoked_at is not None
        again = await tenancy.revoke_key(name)
        assert again.revoked_at == revoked.revoked_at  # the first revocation stands
        # A lookup still finds it, revoked, so the gateway can refuse it; not recorded as used.
        found = await tenancy.lookup_key(created.key.public_id)
        assert found is not None
        assert found.key.revoked_at == revoked.revoked_at
        assert found.key.last_used_at is None
    assert all(k.revoked_at is not None for k in await tenancy.list_keys("acme"))


@pytest.mark.parametrize("name", [
    "0123456789abcdef", str(uuid.uuid4()), "not a key", "rvk_0000000000000000_" + "A" * 43,
])
async def test_revoking_what_names_no_key_is_not_found(
    tenancy: TenancyRepository, name: str
) -> None:
    with pytest.raises(NotFound):
        await tenancy.revoke_key(name)


async def test_a_forged_key_with_a_real_public_id_revokes_nothing(
    tenancy: TenancyRepository,
) -> None:
    await tenancy.create_org("acme")
    created = await tenancy.create_key("acme", name="", scopes=READ, expires_at=None)
    forged = f"rvk_{created.key.public_id}_{'B' * 43}"
    with pytest.raises(NotFound):
        await tenancy.revoke_key(forged)
    found = await tenancy.lookup_key(created.key.public_id)
    assert found is not None
    assert found.key.revoked_at is None
