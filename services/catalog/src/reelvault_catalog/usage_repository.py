"""Quotas and usage in the database: limits, reservations, the usage report, and which quota
levels were announced.

``reserve`` is atomic across catalog replicas: it locks the organization's row first, so the
reservations of one organization are decided one at a time (those of different organizations
do not wait for each other), each seeing every reservation committed before it. The lock is
``FOR NO KEY UPDATE``: it excludes other reservations of the org but not the projection's
inserts of the org's videos (their foreign-key checks take ``FOR KEY SHARE``).

Crossings (80 %, 100 %) are recorded in ``quota_notices`` in the same transaction; only the
ones that row did not exist for are returned, for the caller to publish after the commit (their
event ids are derived from org, quota, period and level, so a republish is dropped).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

from reelvault_common.contracts.catalog import (
    QUOTA_NAMES,
    QuotaExceededInfo,
    QuotaLimits,
    UsageReport,
)
from reelvault_common.contracts.events import OrgQuotaExceeded, OrgQuotaWarning
from sqlalchemy import func, literal, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reelvault_catalog.errors import Conflict, NotFound
from reelvault_catalog.models import (
    OrganizationRow,
    OrgQuotaRow,
    QuotaNoticeRow,
    UsageReservationRow,
    VideoRow,
)
from reelvault_catalog.quotas import (
    MONTHLY_QUOTAS,
    STORAGE_QUOTA,
    Crossing,
    Demand,
    Prices,
    Usage,
    cost_of,
    crossings,
    decide,
    period_start,
    price_of,
    usage_report,
)
from reelvault_catalog.tenant import tenant_transaction

log = logging.getLogger(__name__)

QuotaEvent = OrgQuotaWarning | OrgQuotaExceeded
_R = UsageReservationRow


@dataclass(frozen=True)
class Reservation:
    """What ``reserve`` decided: admitted (``exceeded`` is None) or which limit refused it, and
    the crossings to announce now that it is committed."""

    exceeded: QuotaExceededInfo | None
    notices: list[QuotaEvent] = field(default_factory=list)

    @property
    def admitted(self) -> bool:
        return self.exceeded is None


async def _org_id(conn: AsyncConnection, org: str, *, lock: bool = False) -> uuid.UUID:
    query = select(OrganizationRow.id).where(OrganizationRow.slug == org)
    if lock:
        query = query.with_for_update(key_share=True)  # FOR NO KEY UPDATE
    org_id = (await conn.execute(query)).scalar_one_or_none()
    if org_id is None:
        raise NotFound(f"no organization {org!r}")
    return org_id


async def _limits(conn: AsyncConnection, org_id: uuid.UUID) -> QuotaLimits:
    query = select(
        *(getattr(OrgQuotaRow, name) for name in QUOTA_NAMES)
    ).where(OrgQuotaRow.org_id == org_id)
    row = (await conn.execute(query)).mappings().one_or_none()
    return QuotaLimits() if row is None else QuotaLimits.model_validate(dict(row))


# What an organization keeps in storage: each stored video and its thumbnail (thumbnails
# stored before their size was recorded count as 0).
STORED_BYTES = func.coalesce(
    func.sum(func.coalesce(VideoRow.bytes, 0) + func.coalesce(VideoRow.thumbnail_bytes, 0)), 0
)


async def _usage(
    conn: AsyncConnection, org: str, period: date, *, with_storage: bool
) -> Usage:
    """This period's reservations that count (not released), and, when asked, the bytes of the
    organization's stored videos. One statement."""
    stored = (
        select(STORED_BYTES)
        .where(VideoRow.org == org, VideoRow.status == "completed")
        .scalar_subquery()
        if with_storage else literal(0)
    )
    query = select(
        func.count(), func.coalesce(func.sum(_R.seconds), 0),
        func.coalesce(func.sum(_R.cost_usd), 0), stored,
    ).where(_R.org == org, _R.period_start == period, _R.released_at.is_(None))
    videos, seconds, cost, stored_bytes = (await conn.execute(query)).one()
    return Usage(videos=int(videos), seconds=int(seconds), cost_usd=Decimal(cost),
                 stored_bytes=int(stored_bytes))


async def _record_notices(
    conn: AsyncConnection, org: str, found: list[Crossing]
) -> list[Crossing]:
    """Record ``found``; returns the ones recorded just now (not announced before)."""
    if not found:
        return []
    statement = (
        insert(QuotaNoticeRow)
        .values([{"org": org, "quota": c.quota, "period": c.period, "level": c.level}
                 for c in found])
        .on_conflict_do_nothing()
        .returning(QuotaNoticeRow.quota, QuotaNoticeRow.period, QuotaNoticeRow.level)
    )
    new = {tuple(row) for row in await conn.execute(statement)}
    return [c for c in found if (c.quota, c.period, c.level) in new]


class UsageRepository:
    def __init__(self, engine: AsyncEngine, prices: Prices) -> None:
        self._engine = engine
        self._prices = dict(prices)
        self._unpriced: set[str] = set()

    def demand(self, model: str, seconds: int) -> Demand:
        """What a video of ``model`` and ``seconds`` adds (an unknown model is free: warned
        about once per process, so the price table gets fixed rather than videos refused)."""
        if price_of(model, self._prices) is None and model not in self._unpriced:
            self._unpriced.add(model)
            log.warning("no price for model %r (REELVAULT_PRICES_USD_PER_SECOND): its videos "
                        "count as costing nothing", model)
        return Demand(seconds=seconds, cost_usd=cost_of(model, seconds, self._prices))

    async def set_quotas(
        self, org: str, limits: QuotaLimits, *, now: datetime | None = None
    ) -> UsageReport:
        """Set the limits explicitly given in ``limits`` (None there removes one); the others
        stay. Answers the usage report with the new limits. ``NotFound``: no such org."""
        values = {name: getattr(limits, name) for name in QUOTA_NAMES
                  if name in limits.model_fields_set}
        async with self._engine.begin() as conn:
            org_id = await _org_id(conn, org)
            if values:
                await conn.execute(
                    insert(OrgQuotaRow).values(org_id=org_id, **values)
                    .on_conflict_do_update(index_elements=[OrgQuotaRow.org_id], set_=values)
                )
        return await self.usage(org, now=now)

    async def usage(self, org: str, *, now: datetime | None = None) -> UsageReport:
        """``org``'s usage this month and its limits (read as that tenant)."""
        moment = now or datetime.now(UTC)
        async with tenant_transaction(self._engine, org) as conn:
            org_id = await _org_id(conn, org)
            limits = await _limits(conn, org_id)
            used = await _usage(conn, org, period_start(moment), with_storage=True)
        return usage_report(org, limits, used, now=moment)

    async def reserve(
        self, org: str, video_id: uuid.UUID, *, model: str, seconds: int,
        now: datetime | None = None,
    ) -> Reservation:
        """Count ``video_id`` against ``org``'s quotas, or say which limit refuses it.
        Idempotent: a video already reserved (and not released) is admitted again without
        counting twice. ``NotFound``: no such org; ``Conflict``: the video id is another
        organization's."""
        moment = now or datetime.now(UTC)
        demand = self.demand(model, seconds)
        period = period_start(moment)
        async with self._engine.begin() as conn:
            org_id = await _org_id(conn, org, lock=True)
            held = (await conn.execute(
                select(_R.org, _R.released_at).where(_R.video_id == video_id)
            )).one_or_none()
            if held is not None and held.org != org:
                raise Conflict(f"video {video_id} is reserved by another organization")
            if held is not None and held.released_at is None:
                return Reservation(exceeded=None)
            limits = await _limits(conn, org_id)
            # Without limits nothing can be exceeded or crossed: the usage (a sum over the
            # month's reservations) is not worth reading on every request.
            limited = any(getattr(limits, name) is not None for name in QUOTA_NAMES)
            used = Usage()
            if limited:
                used = await _usage(conn, org, period,
                                    with_storage=limits.storage_bytes is not None)
                exceeded = decide(limits, used, demand, now=moment)
                if exceeded is not None:
                    return Reservation(exceeded=exceeded)
            counted = {"period_start": period, "seconds": demand.seconds,
                       "cost_usd": demand.cost_usd, "created_at": moment, "released_at": None}
            await conn.execute(
                insert(_R).values(video_id=video_id, org=org, **counted)
                .on_conflict_do_update(index_elements=[_R.video_id], set_=counted)
            )
            new = await _record_notices(
                conn, org, crossings(limits, used.plus(demand), MONTHLY_QUOTAS, now=moment)
            ) if limited else []
        return Reservation(exceeded=None, notices=[c.event(org) for c in new])

    async def release(self, org: str, video_id: uuid.UUID) -> bool:
        """Give ``video_id``'s reservation back; False when ``org`` has none for it (nothing
        was counted, so nothing is owed: not an error). Idempotent."""
        statement = (
            update(_R)
            .where(_R.video_id == video_id, _R.org == org)
            .values(released_at=func.coalesce(_R.released_at, func.now()))
            .returning(_R.video_id)
        )
        async with self._engine.begin() as conn:
            return (await conn.execute(statement)).one_or_none() is not None

    async def storage_notices(
        self, org: str, *, now: datetime | None = None
    ) -> list[QuotaEvent]:
        """After a video of ``org`` was stored: the storage levels reached and not announced
        yet. One cheap read when the organization has no storage limit."""
        moment = now or datetime.now(UTC)
        stored = (
            select(STORED_BYTES)
            .where(VideoRow.org == org, VideoRow.status == "completed")
            .scalar_subquery()
        )
        query = (
            select(OrgQuotaRow.storage_bytes, stored)
            .join(OrganizationRow, OrganizationRow.id == OrgQuotaRow.org_id)
            .where(OrganizationRow.slug == org, OrgQuotaRow.storage_bytes.is_not(None))
        )
        async with self._engine.begin() as conn:
            row = (await conn.execute(query)).one_or_none()
            if row is None:
                return []
            limit, total = row
            found = crossings(QuotaLimits(storage_bytes=limit), Usage(stored_bytes=int(total)),
                              (STORAGE_QUOTA,), now=moment)
            new = await _record_notices(conn, org, found)
        return [c.event(org) for c in new]
