"""Quota arithmetic: limits + usage + one more video -> admitted, or the first limit it breaks;
and which warning (80 %) and exceeded (100 %) levels a usage has reached.

Pure (no I/O, no clock: the caller passes ``now``). Monthly quotas count calendar months in
UTC; stored bytes are a running total, checked before a video is admitted (a video's size is
only known once it is stored, so a create is refused when the total is already at the limit).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Literal

from reelvault_common.contracts.catalog import (
    QUOTA_NAMES,
    QuotaExceededInfo,
    QuotaLimits,
    QuotaName,
    UsageItem,
    UsageReport,
)
from reelvault_common.contracts.events import OrgQuotaExceeded, OrgQuotaWarning

MONTHLY_QUOTAS: tuple[QuotaName, ...] = (
    "videos_per_month",
    "generation_seconds_per_month",
    "cost_usd_per_month",
)
STORAGE_QUOTA: QuotaName = "storage_bytes"
# The period of a running total (stored bytes): each level is announced once, ever.
TOTAL_PERIOD = "total"
WARNING_PERCENT = 80
# numeric(12,4): what the database keeps of a cost.
COST_QUANTUM = Decimal("0.0001")

Level = Literal["warning", "exceeded"]
Prices = Mapping[str, Decimal]


def period_start(now: datetime) -> date:
    """The first day of ``now``'s calendar month in UTC."""
    utc = now.astimezone(UTC)
    return date(utc.year, utc.month, 1)


def next_period(now: datetime) -> datetime:
    """The first instant of the next UTC month: when the monthly quotas reset."""
    start = period_start(now)
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


def period_label(now: datetime) -> str:
    """``YYYY-MM`` of ``now``'s UTC month (the ``period`` of crossing events)."""
    return period_start(now).strftime("%Y-%m")


def price_of(model: str, prices: Prices) -> Decimal | None:
    """USD per generated second of ``model``; None when the price table does not know it."""
    return prices.get(model)


def cost_of(model: str, seconds: int, prices: Prices) -> Decimal:
    """What ``seconds`` of ``model`` cost (an unknown model costs nothing: the caller warns)."""
    price = price_of(model, prices) or Decimal(0)
    return (price * seconds).quantize(COST_QUANTUM)


@dataclass(frozen=True)
class Demand:
    """What admitting one video adds to the monthly usage."""

    seconds: int
    cost_usd: Decimal


@dataclass(frozen=True)
class Usage:
    """An organization's usage: this month's (not released) reservations and its stored bytes."""

    videos: int = 0
    seconds: int = 0
    cost_usd: Decimal = Decimal(0)
    stored_bytes: int = 0

    def of(self, quota: QuotaName) -> Decimal:
        values: dict[QuotaName, Decimal | int] = {
            "videos_per_month": self.videos,
            "generation_seconds_per_month": self.seconds,
            "cost_usd_per_month": self.cost_usd,
            "storage_bytes": self.stored_bytes,
        }
        return Decimal(values[quota])

    def plus(self, demand: Demand) -> Usage:
        return Usage(
            videos=self.videos + 1,
            seconds=self.seconds + demand.seconds,
            cost_usd=self.cost_usd + demand.cost_usd,
            stored_bytes=self.stored_bytes,
        )


def limit_of(limits: QuotaLimits, quota: QuotaName) -> Decimal | None:
    value: Decimal | int | None = getattr(limits, quota)
    return None if value is None else Decimal(value)


def requested_of(demand: Demand, quota: QuotaName) -> Decimal:
    """How much of ``quota`` one more video asks for (stored bytes: nothing known yet)."""
    asked: dict[QuotaName, Decimal] = {
        "videos_per_month": Decimal(1),
        "generation_seconds_per_month": Decimal(demand.seconds),
        "cost_usd_per_month": demand.cost_usd,
        "storage_bytes": Decimal(0),
    }
    return asked[quota]


def resets_at(quota: QuotaName, now: datetime) -> datetime | None:
    return None if quota == STORAGE_QUOTA else next_period(now)


def decide(
    limits: QuotaLimits, usage: Usage, demand: Demand, *, now: datetime
) -> QuotaExceededInfo | None:
    """None: admit the video. Otherwise the first limit (in ``QUOTA_NAMES`` order) it breaks:
    a monthly one when usage + the video would go past the limit (reaching it exactly is
    allowed), stored bytes when the total is already at or past the limit."""
    for quota in QUOTA_NAMES:
        limit = limit_of(limits, quota)
        if limit is None:
            continue
        used = usage.of(quota)
        requested = requested_of(demand, quota)
        refused = used >= limit if quota == STORAGE_QUOTA else used + requested > limit
        if refused:
            return QuotaExceededInfo(
                quota=quota, used=used, limit=limit, requested=requested,
                resets_at=resets_at(quota, now),
            )
    return None


@dataclass(frozen=True)
class Crossing:
    """A level of one limit that usage has reached in a period (announced once)."""

    quota: QuotaName
    level: Level
    period: str
    used: Decimal
    limit: Decimal
    resets_at: datetime | None

    def event(self, org: str) -> OrgQuotaWarning | OrgQuotaExceeded:
        kind = OrgQuotaWarning if self.level == "warning" else OrgQuotaExceeded
        return kind.crossed(org=org, quota=self.quota, period=self.period, used=self.used,
                            limit=self.limit, resets_at=self.resets_at)


def level_reached(used: Decimal, limit: Decimal) -> Level | None:
    """The highest level ``used`` has reached: 100 % exceeded, 80 % warning. A zero limit
    (nothing allowed) is never "reached" by zero usage."""
    if limit <= 0:
        return None
    if used >= limit:
        return "exceeded"
    if used * 100 >= limit * WARNING_PERCENT:
        return "warning"
    return None


def crossings(
    limits: QuotaLimits, usage: Usage, quotas: Iterable[QuotaName], *, now: datetime
) -> list[Crossing]:
    """Every level of ``quotas`` that ``usage`` has reached (the exceeded level implies the
    warning one). The caller keeps the ones not announced yet for their period."""
    found: list[Crossing] = []
    for quota in quotas:
        limit = limit_of(limits, quota)
        if limit is None:
            continue
        used = usage.of(quota)
        level = level_reached(used, limit)
        if level is None:
            continue
        period = TOTAL_PERIOD if quota == STORAGE_QUOTA else period_label(now)
        levels: tuple[Level, ...] = ("warning", "exceeded") if level == "exceeded" else (level,)
        found.extend(
            Crossing(quota=quota, level=each, period=period, used=used, limit=limit,
                     resets_at=resets_at(quota, now))
            for each in levels
        )
    return found


def usage_report(org: str, limits: QuotaLimits, usage: Usage, *, now: datetime) -> UsageReport:
    """What ``GetUsage`` answers: every quota's usage, limit and reset."""
    start = period_start(now)
    return UsageReport(
        org=org,
        period_start=datetime(start.year, start.month, 1, tzinfo=UTC),
        items=[
            UsageItem(quota=quota, used=usage.of(quota), limit=limit_of(limits, quota),
                      resets_at=resets_at(quota, now))
            for quota in QUOTA_NAMES
        ],
    )
