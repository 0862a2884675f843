"""Organizations and their API keys in the database.

A key is stored as its public id and the SHA-256 of the whole key (``contracts/tenancy.py``);
the secret itself is returned once, by ``create_key``, and never again. Revocation keeps the
row (``revoked_at``): a lookup of a revoked key still answers, so the gateway can tell
"revoked" from "unknown" and refuse it either way.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from reelvault_common.contracts.catalog import (
    ApiKeyInfo,
    CreatedKey,
    KeyAuth,
    OrgInfo,
)
from reelvault_common.contracts.tenancy import (
    Scope,
    generate_key,
    hash_key,
    looks_like_public_id,
    public_id_of,
)
from sqlalchemy import ColumnElement, and_, case, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from reelvault_catalog.errors import AlreadyExists, NotFound
from reelvault_catalog.models import ApiKeyRow, OrganizationRow
from reelvault_catalog.tenant import tenant_transaction

_ORG_COLUMNS = (
    OrganizationRow.id, OrganizationRow.slug, OrganizationRow.name, OrganizationRow.created_at,
    OrganizationRow.delete_after_days,
)
# What ``ApiKeyInfo`` shows (never the hash); ``org`` is the organization's slug.
_KEY_OWN_COLUMNS = (
    ApiKeyRow.id,
    ApiKeyRow.public_id,
    ApiKeyRow.name,
    ApiKeyRow.scopes,
    ApiKeyRow.expires_at,
    ApiKeyRow.created_at,
    ApiKeyRow.last_used_at,
    ApiKeyRow.revoked_at,
)
_KEY_COLUMNS = (*_KEY_OWN_COLUMNS, OrganizationRow.slug.label("org"))


def _org(row: Mapping[Any, Any]) -> OrgInfo:
    return OrgInfo.model_validate(dict(row))


def _key(row: Mapping[Any, Any]) -> ApiKeyInfo:
    return ApiKeyInfo.model_validate({name: row[name] for name in ApiKeyInfo.model_fields})


def stored_scopes(scopes: Iterable[Scope]) -> list[str]:
    """Each scope once, in a stable order."""
    wanted = set(scopes)
    return [scope.value for scope in Scope if scope in wanted]


def key_filter(key_or_id: str) -> ColumnElement[bool] | None:
    """Which key ``key_or_id`` names: a whole key (its hash must match too: a forged key with
    a real public id names nothing), a public id or a row id. None: it names no key."""
    public_id = public_id_of(key_or_id)
    if public_id is not None:
        return and_(ApiKeyRow.public_id == public_id, ApiKeyRow.key_hash == hash_key(key_or_id))
    if looks_like_public_id(key_or_id):
        return ApiKeyRow.public_id == key_or_id
    try:
        row_id = uuid.UUID(key_or_id)
    except ValueError:
        return None
    return ApiKeyRow.id == row_id


class TenancyRepository:
    """Organizations and API keys (system-wide: these calls come from operators and the
    gateway's key checks, not from one tenant's reads, except ``list_keys``)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    # --- organizations ----------------------------------------------------------------------
    async def create_org(self, slug: str, name: str = "") -> OrgInfo:
        statement = (
            insert(OrganizationRow)
            .values(slug=slug, name=name)
            .on_conflict_do_nothing(index_elements=[OrganizationRow.slug])
            .returning(*_ORG_COLUMNS)
        )
        async with self._engine.begin() as conn:
            row = (await conn.execute(statement)).mappings().one_or_none()
        if row is None:
            raise AlreadyExists(f"an organization {slug!r} exists already")
        return _org(row)

    async def list_orgs(self) -> list[OrgInfo]:
        query = select(*_ORG_COLUMNS).order_by(OrganizationRow.slug)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_org(row) for row in rows]

    # --- keys -------------------------------------------------------------------------------
    async def create_key(
        self, org: str, *, name: str, scopes: Iterable[Scope], expires_at: datetime | None
    ) -> CreatedKey:
        """A new key of ``org``; the secret is in the answer only. ``NotFound``: no such org."""
        new = generate_key()
        async with self._engine.begin() as conn:
            org_id = (await conn.execute(
                select(OrganizationRow.id).where(OrganizationRow.slug == org)
            )).scalar_one_or_none()
            if org_id is None:
                raise NotFound(f"no organization {org!r}")
            statement = (
                insert(ApiKeyRow)
                .values(public_id=new.public_id, org_id=org_id, name=name,
                        scopes=stored_scopes(scopes), key_hash=new.key_hash,
                        expires_at=expires_at)
                .returning(*_KEY_OWN_COLUMNS)
            )
            row = (await conn.execute(statement)).mappings().one()
        return CreatedKey(key=_key({**row, "org": org}), secret=new.key)

    async def list_keys(self, org: str) -> list[ApiKeyInfo]:
        """``org``'s keys, oldest first, revoked ones included (read as that tenant)."""
        query = (
            select(*_KEY_COLUMNS)
            .join(OrganizationRow, OrganizationRow.id == ApiKeyRow.org_id)
            .where(OrganizationRow.slug == org)
            .order_by(ApiKeyRow.created_at, ApiKeyRow.id)
        )
        async with tenant_transaction(self._engine, org) as conn:
            known = (await conn.execute(
                select(OrganizationRow.id).where(OrganizationRow.slug == org)
            )).scalar_one_or_none()
            if known is None:
                raise NotFound(f"no organization {org!r}")
            rows = (await conn.execute(query)).mappings().all()
        return [_key(row) for row in rows]

    async def revoke_key(self, key_or_id: str) -> ApiKeyInfo:
        """Revoke the key (idempotent: a second revocation keeps the first time).
        ``NotFound`` when ``key_or_id`` names no key."""
        which = key_filter(key_or_id)
        if which is None:
            raise NotFound("no such key")
        statement = (
            update(ApiKeyRow)
            .where(which, ApiKeyRow.org_id == OrganizationRow.id)
            .values(revoked_at=func.coalesce(ApiKeyRow.revoked_at, func.now()))
            .returning(*_KEY_COLUMNS)
        )
        async with self._engine.begin() as conn:
            row = (await conn.execute(statement)).mappings().one_or_none()
        if row is None:
            raise NotFound("no such key")
        return _key(row)

    async def lookup_key(self, public_id: str) -> KeyAuth | None:
        """The key with this public id and its hash, for the gateway to check a presented key
        (revoked and expired keys too: the gateway refuses them). A usable key is recorded as
        used now: the gateway asks only when its cache misses, so ``last_used_at`` is as
        accurate as that cache's lifetime."""
        usable = and_(
            ApiKeyRow.revoked_at.is_(None),
            or_(ApiKeyRow.expires_at.is_(None), ApiKeyRow.expires_at > func.now()),
        )
        statement = (
            update(ApiKeyRow)
            .where(ApiKeyRow.public_id == public_id, ApiKeyRow.org_id == OrganizationRow.id)
            .values(last_used_at=case((usable, func.now()), else_=ApiKeyRow.last_used_at))
            .returning(*_KEY_COLUMNS, ApiKeyRow.key_hash)
        )
        async with self._engine.begin() as conn:
            row = (await conn.execute(statement)).mappings().one_or_none()
        if row is None:
            return None
        return KeyAuth(key=_key(row), key_hash=row["key_hash"])
