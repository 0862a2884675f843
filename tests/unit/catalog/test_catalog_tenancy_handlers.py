"""The organizations, keys and usage RPC handlers without a broker or a database: what each
reply carries, how refusals become codes, what is announced after a change, and that every
``CatalogRpc`` has a subscriber."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from reelvault_catalog.deletion import DeletionHandlers
from reelvault_catalog.errors import AlreadyExists, NotFound
from reelvault_catalog.handlers import CatalogHandlers, register_rpc
from reelvault_catalog.quotas import Crossing
from reelvault_catalog.storage_audit import StorageAuditHandlers
from reelvault_catalog.tenancy_handlers import TenancyHandlers
from reelvault_catalog.usage_repository import QuotaEvent, Reservation
from reelvault_catalog.webhooks.addresses import AddressPolicy
from reelvault_catalog.webhooks.handlers import WebhookHandlers
from reelvault_common.contracts.catalog import (
    ApiKeyInfo,
    CatalogRpc,
    CreatedKey,
    KeyAuth,
    OrgInfo,
    QuotaExceededInfo,
    QuotaLimits,
    UsageReport,
)
from reelvault_common.contracts.tenancy import Scope
from reelvault_common.messaging.topology import Topology

NOW = datetime(2026, 5, 15, tzinfo=UTC)


def key_info(public_id: str = "0123456789abcdef", revoked: bool = False) -> ApiKeyInfo:
    return ApiKeyInfo(id=uuid.uuid4(), public_id=public_id, org="acme", name="ci",
                      scopes=[Scope.VIDEOS_READ], expires_at=None, created_at=NOW,
                      last_used_at=None, revoked_at=NOW if revoked else None)


def crossing(level: str) -> QuotaEvent:
    return Crossing(quota="videos_per_month", level=level,  # type: ignore[arg-type]
                    period="2026-05", used=Decimal(10), limit=Decimal(10),
                    resets_at=None).event("acme")


@dataclass
class FakeAccounts:
    orgs: set[str] = field(default_factory=lambda: {"default"})

    async def create_org(self, slug: str, name: str = "") -> OrgInfo:
        if slug in self.orgs:
            raise AlreadyExists(f"an organization {slug!r} exists already")
        self.orgs.add(slug)
        return OrgInfo(id=uuid.uuid4(), slug=slug, name=name, created_at=NOW)

    async def list_orgs(self) -> list[OrgInfo]:
        return [OrgInfo(id=uuid.uuid4(), slug=s, name="", created_at=NOW)
                for s in sorted(self.orgs)]

    async def create_key(self, org: str, *, name: str, scopes: Iterable[Scope],
                         expires_at: datetime | None) -> CreatedKey:
        if org not in self.orgs:
            raise NotFound(f"no organization {org!r}")
        return CreatedKey(key=key_info(), secret="rvk_0123456789abcdef_" + "s" * 43)

    async def list_keys(self, org: str) -> list[ApiKeyInfo]:
        return [key_info()]

    async def revoke_key(self, key_or_id: str) -> ApiKeyInfo:
        if key_or_id != "0123456789abcdef":
            raise NotFound("no such key")
        return key_info(revoked=True)

    async def lookup_key(self, public_id: str) -> KeyAuth | None:
        return None if public_id != "0123456789abcdef" else KeyAuth(key=key_info(),
                                                                      key_hash="h")


@dataclass
class FakeUsage:
    reservation: Reservation = field(default_factory=lambda: Reservation(exceeded=None))
    notices: list[QuotaEvent] = field(default_factory=list)
    released: list[tuple[str, uuid.UUID]] = field(default_factory=list)

    async def set_quotas(self, org: str, limits: QuotaLimits) -> UsageReport:
        return await self.usage(org)

    async def usage(self, org: str) -> UsageReport:
        return UsageReport(org=org, period_start=NOW, items=[])

    async def reserve(self, org: str, video_id: uuid.UUID, *, model: str, seconds: int
                      ) -> Reservation:
        return self.reservation

    async def release(self, org: str, video_id: uuid.UUID) -> bool:
        self.released.append((org, video_id))
        return False

    async def storage_notices(self, org: str) -> list[QuotaEvent]:
        return self.notices


@dataclass
class Announcements:
    events: list[Any] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    broken: bool = False

    async def publish(self, event: QuotaEvent) -> None:
        if self.broken:
            raise ConnectionError("no stream")
        self.events.append(event)

    async def key_changed(self, public_id: str) -> None:
        if self.broken:
            raise ConnectionError("no connection")
        self.keys.append(public_id)


def tenancy_for(usage: FakeUsage | None = None, told: Announcements | None = None
                ) -> TenancyHandlers:
    told = told or Announcements()
    return TenancyHandlers(FakeAccounts(), usage or FakeUsage(), publish=told.publish,
                           key_changed=told.key_changed)


async def test_organizations_are_created_once() -> None:
    handlers = tenancy_for()
    created = await handlers.answer_create_org(b'{"slug": "acme", "name": "Acme"}')
    assert created.ok
    assert created.org is not None
    assert created.org.slug == "acme"
    again = await handlers.answer_create_org(b'{"slug": "acme"}')
    assert again.error is not None
    assert again.error.code == "already_exists"
    listed = await handlers.answer_list_orgs(b"")
    assert [org.slug for org in listed.orgs or []] == ["acme", "default"]


async def test_a_key_of_an_unknown_organization_is_not_found() -> None:
    reply = await tenancy_for().answer_create_key(
        b'{"org": "nobody", "scopes": ["videos:read"]}')
    assert reply.error is not None
    assert reply.error.code == "not_found"
    created = await tenancy_for().answer_create_key(
        b'{"org": "default", "scopes": ["videos:read"]}')
    assert created.created_key is not None


async def test_a_revocation_is_announced_by_public_id() -> None:
    told = Announcements()
    reply = await tenancy_for(told=told).answer_revoke_key(b'{"key_or_id": "0123456789abcdef"}')
    assert reply.ok
    assert reply.key is not None
    assert reply.key.revoked_at is not None
    assert told.keys == ["0123456789abcdef"]
    missing = await tenancy_for(told=told).answer_revoke_key(b'{"key_or_id": "nope"}')
    assert missing.error is not None
    assert missing.error.code == "not_found"
    assert told.keys == ["0123456789abcdef"]  # nothing revoked, nothing announced


async def test_a_revocation_stands_when_its_announcement_fails() -> None:
    told = Announcements(broken=True)
    reply = await tenancy_for(told=told).answer_revoke_key(b'{"key_or_id": "0123456789abcdef"}')
    assert reply.ok


async def test_a_lookup_answers_the_key_or_not_found() -> None:
    found = await tenancy_for().answer_lookup_key(b'{"public_id": "0123456789abcdef"}')
    assert found.key_auth is not None
    unknown = await tenancy_for().answer_lookup_key(b'{"public_id": "fedcba9876543210"}')
    assert unknown.error is not None
    assert unknown.error.code == "not_found"


async def test_a_refused_reservation_says_which_quota_and_crossings_are_announced() -> None:
    exceeded = QuotaExceededInfo(quota="videos_per_month", used=Decimal(10), limit=Decimal(10),
                                 requested=Decimal(1), resets_at=NOW)
    told = Announcements()
    refused = await tenancy_for(FakeUsage(Reservation(exceeded=exceeded)), told).answer_reserve(
        f'{{"org": "acme", "video_id": "{uuid.uuid4()}", "model": "sora-2", "seconds": 4}}'
        .encode())
    assert not refused.ok
    assert refused.error is not None
    assert refused.error.code == "quota_exceeded"
    assert refused.quota == exceeded
    notices = [crossing("warning"), crossing("exceeded")]
    admitted = await tenancy_for(FakeUsage(Reservation(None, notices)), told).answer_reserve(
        f'{{"org": "acme", "video_id": "{uuid.uuid4()}", "model": "sora-2", "seconds": 4}}'
        .encode())
    assert admitted.ok
    assert told.events == notices


async def test_an_admitted_reservation_stands_when_its_announcement_fails() -> None:
    usage = FakeUsage(Reservation(None, [crossing("warning")]))
    reply = await tenancy_for(usage, Announcements(broken=True)).answer_reserve(
        f'{{"org": "acme", "video_id": "{uuid.uuid4()}", "model": "sora-2", "seconds": 4}}'
        .encode())
    assert reply.ok


async def test_a_release_of_nothing_is_fine() -> None:
    usage = FakeUsage()
    video_id = uuid.uuid4()
    reply = await tenancy_for(usage).answer_release(
        f'{{"org": "acme", "video_id": "{video_id}"}}'.encode())
    assert reply.ok
    assert usage.released == [("acme", video_id)]


async def test_storage_crossings_are_announced_after_a_stored_video() -> None:
    told = Announcements()
    await tenancy_for(FakeUsage(notices=[crossing("exceeded")]), told).after_stored("acme")
    assert [event.type for event in told.events] == ["org.quota.exceeded"]


@pytest.mark.parametrize(("answer", "payload"), [
    ("answer_create_org", b'{"slug": "Not A Slug"}'),
    ("answer_create_org", b"{not json"),
    ("answer_create_key", b'{"org": "acme", "scopes": []}'),
    ("answer_create_key", b'{"org": "acme", "scopes": ["root"]}'),
    ("answer_list_keys", b""),
    ("answer_revoke_key", b'{"key_or_id": ""}'),
    ("answer_lookup_key", b'{"public_id": "rvk_whole_key"}'),
    ("answer_set_quotas", b'{"org": "acme", "limits": {"videos_per_month": -1}}'),
    ("answer_set_quotas", b'{"org": "acme", "limits": {"cost_usd_per_month": "0.00001"}}'),
    ("answer_usage", b"{}"),
    ("answer_reserve", b'{"org": "acme", "video_id": "x", "model": "m", "seconds": 4}'),
    ("answer_reserve", f'{{"org": "acme", "video_id": "{uuid.uuid4()}", "model": "m",'
                       f' "seconds": -1}}'.encode()),
    ("answer_release", b'{"org": "acme"}'),
])
async def test_bad_requests_are_invalid_request(answer: str, payload: bytes) -> None:
    reply = await getattr(tenancy_for(), answer)(payload)
    assert not reply.ok
    assert reply.error is not None
    assert reply.error.code == "invalid_request"
    assert reply.error.message


@dataclass
class FakeBroker:
    subjects: list[str] = field(default_factory=list)

    def subscriber(self, subject: str, **options: Any) -> Any:
        self.subjects.append(subject)
        return lambda handler: handler


def test_every_catalog_rpc_has_its_subscriber() -> None:
    broker = FakeBroker()
    topology = Topology(namespace="ns")
    handlers = CatalogHandlers(None)  # type: ignore[arg-type]
    deletions = DeletionHandlers(None).answers()  # type: ignore[arg-type]
    deletions.update(StorageAuditHandlers(None).answers())  # type: ignore[arg-type]
    deletions.update(WebhookHandlers(None, AddressPolicy()).answers())  # type: ignore[arg-type]
    register_rpc(broker, topology, handlers, tenancy_for(), rpc_workers=2,  # type: ignore[arg-type]
                 more=deletions)
    assert sorted(broker.subjects) == sorted(topology.rpc(name) for name in CatalogRpc)
