"""Webhook endpoints and their delivery log in PostgreSQL.

Reads on behalf of one organization run as that tenant (row-level security); writes name the
organization explicitly. The dispatcher's calls (``claim``, ``finish``) are system-wide.

A delivery is claimed by setting ``lease_until``: ``FOR UPDATE SKIP LOCKED`` lets replicas
claim side by side without taking the same one, and a replica that dies mid-attempt leaves a
lease that simply runs out (the delivery is then tried again: at least once, and receivers
deduplicate on the ``webhook-id``).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reelvault_common.contracts.catalog import (
    CreatedWebhookEndpoint,
    WebhookDeliveryInfo,
    WebhookEndpointInfo,
    WebhookEventType,
)
from sqlalchemy import Row, delete, func, literal, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reelvault_catalog.errors import CatalogRefusal, NotFound
from reelvault_catalog.models import OrganizationRow, WebhookDeliveryRow, WebhookEndpointRow
from reelvault_catalog.tenant import tenant_transaction
from reelvault_catalog.webhooks.payloads import WebhookMessage, delivery_id
from reelvault_catalog.webhooks.schedule import after_failure, should_disable
from reelvault_catalog.webhooks.settings import WebhookDeliverySettings

_ENDPOINT_COLUMNS = (
    WebhookEndpointRow.id,
    WebhookEndpointRow.org,
    WebhookEndpointRow.url,
    WebhookEndpointRow.description,
    WebhookEndpointRow.event_types,
    WebhookEndpointRow.enabled,
    WebhookEndpointRow.disabled_reason,
    WebhookEndpointRow.disabled_at,
    WebhookEndpointRow.consecutive_failures,
    WebhookEndpointRow.failing_since,
    WebhookEndpointRow.created_at,
)
_DELIVERY_COLUMNS = (
    WebhookDeliveryRow.id,
    WebhookDeliveryRow.endpoint_id,
    WebhookDeliveryRow.event_id,
    WebhookDeliveryRow.event_type,
    WebhookDeliveryRow.status,
    WebhookDeliveryRow.attempts,
    WebhookDeliveryRow.last_attempt_at,
    WebhookDeliveryRow.last_response_code,
    WebhookDeliveryRow.last_error,
    WebhookDeliveryRow.next_attempt_at,
    WebhookDeliveryRow.delivered_at,
    WebhookDeliveryRow.created_at,
)
# What a recorded error may take (a receiver's answer is not ours to store whole).
ERROR_CHARS = 500

# Due deliveries, at most ``per_endpoint`` of each enabled endpoint not in ``busy``, at most
# ``total`` in all, leased for ``lease_s``.
_CLAIM = text("""
WITH due_endpoints AS (
    SELECT DISTINCT d.endpoint_id FROM webhook_deliveries d
    WHERE d.status = 'pending' AND d.next_attempt_at <= now()
      AND NOT (d.endpoint_id = ANY(:busy))
), picked AS (
    SELECT x.id FROM due_endpoints de
    JOIN webhook_endpoints e ON e.id = de.endpoint_id AND e.enabled
    CROSS JOIN LATERAL (
        SELECT id FROM webhook_deliveries
        WHERE endpoint_id = de.endpoint_id AND status = 'pending'
          AND next_attempt_at <= now() AND (lease_until IS NULL OR lease_until <= now())
        ORDER BY next_attempt_at
        LIMIT :per_endpoint
        FOR UPDATE SKIP LOCKED
    ) x
    LIMIT :total
)
UPDATE webhook_deliveries w
SET lease_until = now() + make_interval(secs => :lease_s)
FROM picked, webhook_endpoints e
WHERE w.id = picked.id AND e.id = w.endpoint_id
RETURNING w.id, w.endpoint_id, w.org, w.payload, w.attempts, w.max_attempts, e.url, e.secret
""")


def _endpoint(row: Mapping[Any, Any]) -> WebhookEndpointInfo:
    return WebhookEndpointInfo.model_validate(dict(row))


def _delivery(row: Mapping[Any, Any]) -> WebhookDeliveryInfo:
    return WebhookDeliveryInfo.model_validate(dict(row))


@dataclass(frozen=True)
class Claimed:
    """A delivery leased for one attempt, with what the attempt needs."""

    id: uuid.UUID
    endpoint_id: uuid.UUID
    org: str
    payload: str
    attempts: int
    max_attempts: int
    url: str
    secret: str

    @classmethod
    def of(cls, row: Row[Any]) -> Claimed:
        return cls(row.id, row.endpoint_id, row.org, row.payload, row.attempts,
                   row.max_attempts, row.url, row.secret)


@dataclass(frozen=True)
class Attempt:
    """How one attempt went: a 2xx answer, or not (its status code, if any, and why)."""

    succeeded: bool
    response_code: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class Disabled:
    """An endpoint this attempt disabled (to be announced)."""

    org: str
    endpoint_id: uuid.UUID
    consecutive_failures: int
    failing_since: datetime | None
    disabled_at: datetime


class WebhookRepository:
    def __init__(self, engine: AsyncEngine, settings: WebhookDeliverySettings) -> None:
        self._engine = engine
        self._settings = settings

    # --- endpoints --------------------------------------------------------------------------
    async def create_endpoint(
        self, org: str, *, url: str, event_types: Iterable[WebhookEventType], description: str,
        secret: str,
    ) -> CreatedWebhookEndpoint:
        """``NotFound``: no such organization; refused past ``max_endpoints_per_org``."""
        kinds = list(dict.fromkeys(event_types))
        async with self._engine.begin() as conn:
            # Locks the organization's row: concurrent creates count one after the other.
            known = (await conn.execute(
                select(OrganizationRow.id).where(OrganizationRow.slug == org).with_for_update()
            )).scalar_one_or_none()
            if known is None:
                raise NotFound(f"no organization {org!r}")
            count = (await conn.execute(
                select(func.count()).select_from(WebhookEndpointRow)
                .where(WebhookEndpointRow.org == org)
            )).scalar_one()
            if count >= self._settings.max_endpoints_per_org:
                raise CatalogRefusal(
                    f"an organization has at most {self._settings.max_endpoints_per_org} "
                    "webhook endpoints")
            row = (await conn.execute(
                insert(WebhookEndpointRow)
                .values(org=org, url=url, event_types=kinds, description=description,
                        secret=secret)
                .returning(*_ENDPOINT_COLUMNS)
            )).mappings().one()
        return CreatedWebhookEndpoint(endpoint=_endpoint(row), secret=secret)

    async def list_endpoints(self, org: str) -> list[WebhookEndpointInfo]:
        query = (select(*_ENDPOINT_COLUMNS).where(WebhookEndpointRow.org == org)
                 .order_by(WebhookEndpointRow.created_at, WebhookEndpointRow.id))
        async with tenant_transaction(self._engine, org) as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_endpoint(row) for row in rows]

    async def get_endpoint(self, org: str, endpoint_id: uuid.UUID) -> WebhookEndpointInfo:
        async with tenant_transaction(self._engine, org) as conn:
            return _endpoint(await self._endpoint_row(conn, org, endpoint_id))

    @staticmethod
    async def _endpoint_row(conn: AsyncConnection, org: str, endpoint_id: uuid.UUID
                            ) -> Mapping[Any, Any]:
        row = (await conn.execute(
            select(*_ENDPOINT_COLUMNS)
            .where(WebhookEndpointRow.id == endpoint_id, WebhookEndpointRow.org == org)
        )).mappings().one_or_none()
        if row is None:
            raise NotFound("no such webhook endpoint")
        return row

    async def delete_endpoint(self, org: str, endpoint_id: uuid.UUID) -> WebhookEndpointInfo:
        """Delete it and its delivery log (attempts in flight finish, their result is lost)."""
        statement = (
            delete(WebhookEndpointRow)
            .where(WebhookEndpointRow.id == endpoint_id, WebhookEndpointRow.org == org)
            .returning(*_ENDPOINT_COLUMNS)
        )
        async with self._engine.begin() as conn:
            row = (await conn.execute(statement)).mappings().one_or_none()
        if row is None:
            raise NotFound("no such webhook endpoint")
        return _endpoint(row)

    # --- the delivery log -------------------------------------------------------------------
    async def list_deliveries(self, org: str, endpoint_id: uuid.UUID, limit: int
                              ) -> list[WebhookDeliveryInfo]:
        query = (
            select(*_DELIVERY_COLUMNS)
            .where(WebhookDeliveryRow.endpoint_id == endpoint_id, WebhookDeliveryRow.org == org)
            .order_by(WebhookDeliveryRow.created_at.desc(), WebhookDeliveryRow.id)
            .limit(limit)
        )
        async with tenant_transaction(self._engine, org) as conn:
            await self._endpoint_row(conn, org, endpoint_id)
            rows = (await conn.execute(query)).mappings().all()
        return [_delivery(row) for row in rows]

    async def replay(self, org: str, endpoint_id: uuid.UUID, delivery: uuid.UUID
                     ) -> WebhookDeliveryInfo:
        """Due now, for one more attempt, with the same id; the endpoint is enabled again
        (its run of failures forgotten): replaying is how an operator says it is fixed."""
        async with self._engine.begin() as conn:
            row = (await conn.execute(
                update(WebhookDeliveryRow)
                .where(WebhookDeliveryRow.id == delivery,
                       WebhookDeliveryRow.endpoint_id == endpoint_id,
                       WebhookDeliveryRow.org == org)
                .values(status="pending", next_attempt_at=func.now(), lease_until=None,
                        max_attempts=WebhookDeliveryRow.attempts + 1)
                .returning(*_DELIVERY_COLUMNS)
            )).mappings().one_or_none()
            if row is None:
                raise NotFound("no such webhook delivery")
            await conn.execute(
                update(WebhookEndpointRow)
                .where(WebhookEndpointRow.id == endpoint_id, WebhookEndpointRow.org == org)
                .values(enabled=True, disabled_reason=None, disabled_at=None,
                        consecutive_failures=0, failing_since=None)
            )
        return _delivery(row)

    async def record(self, message: WebhookMessage) -> int:
        """One pending delivery of ``message`` per enabled endpoint of its organization that
        takes its type; a delivery recorded before stays as it is. How many are new."""
        endpoints = (
            select(WebhookEndpointRow.id)
            .where(WebhookEndpointRow.org == message.org, WebhookEndpointRow.enabled,
                   WebhookEndpointRow.event_types.contains([message.type]))
        )
        async with self._engine.begin() as conn:
            ids = list((await conn.execute(endpoints)).scalars())
            if not ids:
                return 0
            rows = [
                {"id": delivery_id(message.event_id, endpoint), "endpoint_id": endpoint,
                 "org": message.org, "event_id": message.event_id, "event_type": message.type,
                 "payload": message.body, "max_attempts": self._settings.max_attempts,
                 "next_attempt_at": func.now()}
                for endpoint in ids
            ]
            statement = (
                insert(WebhookDeliveryRow)
                .values(rows)
                .on_conflict_do_nothing(index_elements=[WebhookDeliveryRow.id])
                .returning(WebhookDeliveryRow.id)
            )
            return len((await conn.execute(statement)).all())

    # --- the dispatcher's calls -------------------------------------------------------------
    async def claim(self, *, total: int, per_endpoint: int, busy: Sequence[uuid.UUID]
                    ) -> list[Claimed]:
        if total <= 0:
            return []
        async with self._engine.begin() as conn:
            rows = (await conn.execute(_CLAIM, {
                "busy": list(busy), "per_endpoint": per_endpoint, "total": total,
                "lease_s": self._settings.lease_s,
            })).all()
        return [Claimed.of(row) for row in rows]

    async def release(self, deliveries: Iterable[uuid.UUID]) -> None:
        """Give leases back unattempted (claimed beyond what this replica may start now)."""
        ids = list(deliveries)
        if not ids:
            return
        async with self._engine.begin() as conn:
            await conn.execute(update(WebhookDeliveryRow)
                               .where(WebhookDeliveryRow.id.in_(ids))
                               .values(lease_until=None))

    async def finish(self, claimed: Claimed, attempt: Attempt, *,
                     rand: random.Random | None = None) -> Disabled | None:
        """Record the attempt on the delivery and its endpoint; the endpoint this disabled,
        if any. A delivery deleted meanwhile (with its endpoint) records nothing."""
        async with self._engine.begin() as conn:
            now: datetime = (await conn.execute(select(func.now()))).scalar_one()
            current = (await conn.execute(
                select(WebhookDeliveryRow.attempts, WebhookDeliveryRow.max_attempts)
                .where(WebhookDeliveryRow.id == claimed.id).with_for_update()
            )).one_or_none()
            if current is None:
                return None
            values: dict[str, Any] = {
                "lease_until": None, "last_attempt_at": now,
                "last_response_code": attempt.response_code,
                "last_error": None if attempt.error is None else attempt.error[:ERROR_CHARS],
            }
            if attempt.succeeded:
                values |= {"status": "succeeded", "attempts": current.attempts + 1,
                           "delivered_at": now, "next_attempt_at": None}
            else:
                after = after_failure(current.attempts, current.max_attempts, now,
                                      self._settings, rand)
                values |= {"attempts": after.attempts, "next_attempt_at": after.next_attempt_at,
                           "status": "failed" if after.given_up else "pending"}
            await conn.execute(update(WebhookDeliveryRow)
                               .where(WebhookDeliveryRow.id == claimed.id).values(**values))
            return await self._count_on_endpoint(conn, claimed.endpoint_id, attempt, now)

    async def _count_on_endpoint(self, conn: AsyncConnection, endpoint_id: uuid.UUID,
                                 attempt: Attempt, now: datetime) -> Disabled | None:
        table = WebhookEndpointRow
        if attempt.succeeded:
            await conn.execute(update(table).where(table.id == endpoint_id)
                               .values(consecutive_failures=0, failing_since=None))
            return None
        row = (await conn.execute(
            update(table).where(table.id == endpoint_id)
            .values(consecutive_failures=table.consecutive_failures + 1,
                    failing_since=func.coalesce(table.failing_since, literal(now)))
            .returning(table.org, table.enabled, table.consecutive_failures,
                       table.failing_since)
        )).one_or_none()
        if row is None or not row.enabled:
            return None
        if not should_disable(row.consecutive_failures, row.failing_since, now, self._settings):
            return None
        await conn.execute(update(table).where(table.id == endpoint_id)
                           .values(enabled=False, disabled_reason="failing", disabled_at=now))
        return Disabled(org=row.org, endpoint_id=endpoint_id,
                        consecutive_failures=row.consecutive_failures,
                        failing_since=row.failing_since, disabled_at=now.astimezone(UTC))
