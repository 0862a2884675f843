"""Thin handlers of the organizations, keys, quotas and usage RPCs: decode, call the
repository, reply; then announce what changed once it is committed:

- a revoked key's public id on ``Topology.key_changes`` (core NATS), so every gateway drops it
  from its cache at once instead of when the cache entry expires;
- quota crossings as ``OrgQuotaWarning`` / ``OrgQuotaExceeded`` events (after ``reserve``, and
  after a video is stored for the storage limit).

An announcement that fails is logged and does not change the reply: the change itself is
committed (a gateway's cache expires on its own; a crossing is recorded as announced).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Protocol

from reelvault_common.contracts.catalog import (
    ApiKeyInfo,
    CatalogErrorCode,
    CatalogRpc,
    CreatedKey,
    CreateKey,
    CreateOrg,
    GetUsage,
    KeyAuth,
    ListKeys,
    ListOrgs,
    LookupKey,
    OrgInfo,
    QuotaLimits,
    Release,
    Reserve,
    RevokeKey,
    RpcErrorBody,
    RpcReply,
    SetQuotas,
    UsageReport,
)
from reelvault_common.contracts.tenancy import Scope

from reelvault_catalog.replies import Answer, answer_with, error_reply
from reelvault_catalog.usage_repository import QuotaEvent, Reservation

log = logging.getLogger(__name__)


class AccountsStore(Protocol):
    """Organizations and keys (``TenancyRepository`` in production)."""

    async def create_org(self, slug: str, name: str = ...) -> OrgInfo: ...
    async def list_orgs(self) -> list[OrgInfo]: ...
    async def create_key(
        self, org: str, *, name: str, scopes: Iterable[Scope], expires_at: datetime | None
    ) -> CreatedKey: ...
    async def list_keys(self, org: str) -> list[ApiKeyInfo]: ...
    async def revoke_key(self, key_or_id: str) -> ApiKeyInfo: ...
    async def lookup_key(self, public_id: str) -> KeyAuth | None: ...


class UsageStore(Protocol):
    """Quotas and usage (``UsageRepository`` in production)."""

    async def set_quotas(self, org: str, limits: QuotaLimits) -> UsageReport: ...
    async def usage(self, org: str) -> UsageReport: ...
    async def reserve(
        self, org: str, video_id: uuid.UUID, *, model: str, seconds: int
    ) -> Reservation: ...
    async def release(self, org: str, video_id: uuid.UUID) -> bool: ...
    async def storage_notices(self, org: str) -> list[QuotaEvent]: ...


PublishEvent = Callable[[QuotaEvent], Awaitable[object]]
KeyChanged = Callable[[str], Awaitable[None]]


class TenancyHandlers:
    def __init__(
        self,
        accounts: AccountsStore,
        usage: UsageStore,
        *,
        publish: PublishEvent,
        key_changed: KeyChanged,
    ) -> None:
        self._accounts = accounts
        self._usage = usage
        self._publish = publish
        self._key_changed = key_changed

    def answers(self) -> dict[CatalogRpc, Answer]:
        return {
            CatalogRpc.ORGS_CREATE: self.answer_create_org,
            CatalogRpc.ORGS_LIST: self.answer_list_orgs,
            CatalogRpc.KEYS_CREATE: self.answer_create_key,
            CatalogRpc.KEYS_LIST: self.answer_list_keys,
            CatalogRpc.KEYS_REVOKE: self.answer_revoke_key,
            CatalogRpc.KEYS_LOOKUP: self.answer_lookup_key,
            CatalogRpc.QUOTAS_SET: self.answer_set_quotas,
            CatalogRpc.USAGE_GET: self.answer_usage,
            CatalogRpc.USAGE_RESERVE: self.answer_reserve,
            CatalogRpc.USAGE_RELEASE: self.answer_release,
        }

    # --- organizations and keys -------------------------------------------------------------
    async def answer_create_org(self, body: bytes) -> RpcReply:
        async def act(request: CreateOrg) -> RpcReply:
            return RpcReply(ok=True, org=await self._accounts.create_org(request.slug,
                                                                         request.name))
        return await answer_with(CreateOrg, body, act)

    async def answer_list_orgs(self, body: bytes) -> RpcReply:
        async def act(request: ListOrgs) -> RpcReply:
            return RpcReply(ok=True, orgs=await self._accounts.list_orgs())
        return await answer_with(ListOrgs, body, act)

    async def answer_create_key(self, body: bytes) -> RpcReply:
        async def act(request: CreateKey) -> RpcReply:
            created = await self._accounts.create_key(
                request.org, name=request.name, scopes=request.scopes,
                expires_at=request.expires_at,
            )
            return RpcReply(ok=True, created_key=created)
        return await answer_with(CreateKey, body, act)

    async def answer_list_keys(self, body: bytes) -> RpcReply:
        async def act(request: ListKeys) -> RpcReply:
            return RpcReply(ok=True, keys=await self._accounts.list_keys(request.org))
        return await answer_with(ListKeys, body, act)

    async def answer_revoke_key(self, body: bytes) -> RpcReply:
        async def act(request: RevokeKey) -> RpcReply:
            key = await self._accounts.revoke_key(request.key_or_id)
            await self._tell_key_changed(key.public_id)
            return RpcReply(ok=True, key=key)
        return await answer_with(RevokeKey, body, act)

    async def answer_lookup_key(self, body: bytes) -> RpcReply:
        async def act(request: LookupKey) -> RpcReply:
            found = await self._accounts.lookup_key(request.public_id)
            if found is None:
                return error_reply(CatalogErrorCode.NOT_FOUND, "no such key")
            return RpcReply(ok=True, key_auth=found)
        return await answer_with(LookupKey, body, act)

    # --- quotas and usage -------------------------------------------------------------------
    async def answer_set_quotas(self, body: bytes) -> RpcReply:
        async def act(request: SetQuotas) -> RpcReply:
            return RpcReply(ok=True,
                            usage=await self._usage.set_quotas(request.org, request.limits))
        return await answer_with(SetQuotas, body, act)

    async def answer_usage(self, body: bytes) -> RpcReply:
        async def act(request: GetUsage) -> RpcReply:
            return RpcReply(ok=True, usage=await self._usage.usage(request.org))
        return await answer_with(GetUsage, body, act)

    async def answer_reserve(self, body: bytes) -> RpcReply:
        async def act(request: Reserve) -> RpcReply:
            reservation = await self._usage.reserve(
                request.org, request.video_id, model=request.model, seconds=request.seconds)
            await self._announce(reservation.notices)
            exceeded = reservation.exceeded
            if exceeded is None:
                return RpcReply(ok=True)
            message = (f"{exceeded.quota}: {exceeded.used} used of {exceeded.limit}, "
                       f"{exceeded.requested} more requested")
            return RpcReply(ok=False, quota=exceeded, error=RpcErrorBody(
                code=CatalogErrorCode.QUOTA_EXCEEDED, message=message))
        return await answer_with(Reserve, body, act)

    async def answer_release(self, body: bytes) -> RpcReply:
        async def act(request: Release) -> RpcReply:
            await self._usage.release(request.org, request.video_id)
            return RpcReply(ok=True)
        return await answer_with(Release, body, act)

    # --- after the projection ---------------------------------------------------------------
    async def after_stored(self, org: str) -> None:
        """A video of ``org`` was stored: announce the storage levels it made ``org`` reach.
        Best effort: the next stored video of ``org`` looks again."""
        try:
            notices = await self._usage.storage_notices(org)
        except Exception as exc:
            log.warning("could not check the storage quota of %s: %r", org, exc)
            return
        await self._announce(notices)

    # --- announcements ----------------------------------------------------------------------
    async def _announce(self, notices: Iterable[QuotaEvent]) -> None:
        for event in notices:
            try:
                await self._publish(event)
            except Exception as exc:
                log.warning("could not announce %s of %s (%s, %s): %r", event.type, event.org,
                            event.quota, event.period, exc)

    async def _tell_key_changed(self, public_id: str) -> None:
        try:
            await self._key_changed(public_id)
        except Exception as exc:
            log.warning("could not announce the revocation of key %s: %r", public_id, exc)
