"""The quota arithmetic, table by table: what is admitted, which limit refuses first, when
monthly quotas reset, what a video costs, and which levels (80 %, 100 %) usage has reached."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from reelvault_catalog.quotas import (
    MONTHLY_QUOTAS,
    STORAGE_QUOTA,
    Demand,
    Usage,
    cost_of,
    crossings,
    decide,
    level_reached,
    next_period,
    period_label,
    period_start,
    usage_report,
)
from reelvault_common.contracts.catalog import QuotaLimits
from reelvault_common.contracts.events import OrgQuotaExceeded, OrgQuotaWarning

NOW = datetime(2026, 5, 15, 12, tzinfo=UTC)
PRICES = {"sora-2": Decimal("0.10"), "sora-2-pro": Decimal("0.30")}
FOUR_SECONDS = Demand(seconds=4, cost_usd=Decimal("0.40"))


@pytest.mark.parametrize(("now", "start", "resets", "label"), [
    (datetime(2026, 5, 15, 12, tzinfo=UTC), date(2026, 5, 1),
     datetime(2026, 6, 1, tzinfo=UTC), "2026-05"),
    (datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), date(2026, 12, 1),
     datetime(2027, 1, 1, tzinfo=UTC), "2026-12"),
    (datetime(2027, 1, 1, tzinfo=UTC), date(2027, 1, 1),
     datetime(2027, 2, 1, tzinfo=UTC), "2027-01"),
    # 23:30 on Dec 31st at UTC-2 is already January in UTC.
    (datetime(2026, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-2))), date(2027, 1, 1),
     datetime(2027, 2, 1, tzinfo=UTC), "2027-01"),
])
def test_monthly_periods_are_utc_calendar_months(
    now: datetime, start: date, resets: datetime, label: str
) -> None:
    assert period_start(now) == start
    assert next_period(now) == resets
    assert period_label(now) == label


@pytest.mark.parametrize(("model", "seconds", "cost"), [
    ("sora-2", 4, Decimal("0.40")),
    ("sora-2-pro", 12, Decimal("3.60")),
    ("sora-2", 0, Decimal("0.00")),
    ("unknown-model", 8, Decimal("0")),  # unknown: free (the repository warns)
])
def test_a_video_costs_its_models_price_per_second(model: str, seconds: int, cost: Decimal) -> None:
    assert cost_of(model, seconds, PRICES) == cost


def test_costs_keep_four_decimals() -> None:
    assert cost_of("m", 3, {"m": Decimal("0.00005")}) == Decimal("0.0002")  # 0.00015 rounded
    assert cost_of("m", 7, {"m": Decimal("0.1234")}) == Decimal("0.8638")


LIMITS_ALL = QuotaLimits(videos_per_month=10, generation_seconds_per_month=40,
                         cost_usd_per_month=Decimal("4.00"), storage_bytes=1000)


@pytest.mark.parametrize(("limits", "usage", "refused_by"), [
    (QuotaLimits(), Usage(videos=10**6, seconds=10**9, cost_usd=Decimal(10**6),
                          stored_bytes=10**15), None),
    # exactly at the limit after this video: admitted; one more: refused
    (QuotaLimits(videos_per_month=10), Usage(videos=9), None),
    (QuotaLimits(videos_per_month=10), Usage(videos=10), "videos_per_month"),
    (QuotaLimits(generation_seconds_per_month=40), Usage(seconds=36), None),
    (QuotaLimits(generation_seconds_per_month=40), Usage(seconds=37),
     "generation_seconds_per_month"),
    (QuotaLimits(cost_usd_per_month=Decimal("4.00")), Usage(cost_usd=Decimal("3.60")), None),
    (QuotaLimits(cost_usd_per_month=Decimal("4.00")), Usage(cost_usd=Decimal("3.6001")),
     "cost_usd_per_month"),
    # storage: refused only once the total is at the limit (a video's size is not known yet)
    (QuotaLimits(storage_bytes=1000), Usage(stored_bytes=999), None),
    (QuotaLimits(storage_bytes=1000), Usage(stored_bytes=1000), "storage_bytes"),
    (QuotaLimits(videos_per_month=0), Usage(), "videos_per_month"),
    # several broken: the first in QUOTA_NAMES order
    (LIMITS_ALL, Usage(videos=10, seconds=40, cost_usd=Decimal(4), stored_bytes=1000),
     "videos_per_month"),
    (LIMITS_ALL, Usage(videos=1, seconds=40, cost_usd=Decimal(4), stored_bytes=1000),
     "generation_seconds_per_month"),
    (LIMITS_ALL, Usage(videos=1, seconds=1, cost_usd=Decimal(4), stored_bytes=1000),
     "cost_usd_per_month"),
])
def test_which_limit_refuses_a_video(
    limits: QuotaLimits, usage: Usage, refused_by: str | None
) -> None:
    exceeded = decide(limits, usage, FOUR_SECONDS, now=NOW)
    if refused_by is None:
        assert exceeded is None
        return
    assert exceeded is not None
    assert exceeded.quota == refused_by


def test_a_refusal_says_how_much_was_used_asked_and_when_it_resets() -> None:
    monthly = decide(QuotaLimits(cost_usd_per_month=Decimal("1.00")),
                     Usage(cost_usd=Decimal("0.80")), FOUR_SECONDS, now=NOW)
    assert monthly is not None
    assert (monthly.used, monthly.limit, monthly.requested) == (
        Decimal("0.80"), Decimal("1.00"), Decimal("0.40"))
    assert monthly.resets_at == datetime(2026, 6, 1, tzinfo=UTC)
    storage = decide(QuotaLimits(storage_bytes=10), Usage(stored_bytes=12), FOUR_SECONDS,
                     now=NOW)
    assert storage is not None
    assert (storage.used, storage.limit, storage.requested, storage.resets_at) == (
        Decimal(12), Decimal(10), Decimal(0), None)


@pytest.mark.parametrize(("used", "limit", "level"), [
    (Decimal(0), Decimal(10), None),
    (Decimal(7), Decimal(10), None),
    (Decimal("7.9999"), Decimal(10), None),
    (Decimal(8), Decimal(10), "warning"),  # exactly 80 %
    (Decimal(9), Decimal(10), "warning"),
    (Decimal(10), Decimal(10), "exceeded"),  # exactly 100 %
    (Decimal(12), Decimal(10), "exceeded"),
    (Decimal("0.7999"), Decimal("1.00"), None),
    (Decimal("0.80"), Decimal("1.00"), "warning"),
    (Decimal(0), Decimal(0), None),  # nothing allowed, nothing used: nothing to announce
    (Decimal(3), Decimal(3), "exceeded"),
    (Decimal(2), Decimal(3), None),  # 66 %
])
def test_levels_reached(used: Decimal, limit: Decimal, level: str | None) -> None:
    assert level_reached(used, limit) == level


def test_crossings_name_each_level_reached_in_its_period() -> None:
    usage = Usage(videos=10, seconds=33, cost_usd=Decimal("1.00"), stored_bytes=850)
    found = crossings(LIMITS_ALL, usage, (*MONTHLY_QUOTAS, STORAGE_QUOTA), now=NOW)
    assert [(c.quota, c.level, c.period) for c in found] == [
        ("videos_per_month", "warning", "2026-05"),
        ("videos_per_month", "exceeded", "2026-05"),
        ("generation_seconds_per_month", "warning", "2026-05"),  # 33 of 40: 82.5 %
        ("storage_bytes", "warning", "total"),
    ]
    assert all(c.resets_at == datetime(2026, 6, 1, tzinfo=UTC) for c in found[:3])
    assert found[3].resets_at is None
    # Only the quotas asked about.
    assert [c.quota for c in crossings(LIMITS_ALL, usage, (STORAGE_QUOTA,), now=NOW)] == [
        "storage_bytes"]


def test_a_crossing_is_the_same_event_every_time() -> None:
    usage = Usage(videos=10)
    [warning, exceeded] = crossings(QuotaLimits(videos_per_month=10), usage, MONTHLY_QUOTAS,
                                    now=NOW)
    first, second = warning.event("acme"), warning.event("acme")
    assert isinstance(first, OrgQuotaWarning)
    assert isinstance(exceeded.event("acme"), OrgQuotaExceeded)
    assert first.event_id == second.event_id  # a republish is dropped by the stream
    assert first.event_id != exceeded.event("acme").event_id
    assert first.event_id != warning.event("globex").event_id
    assert (first.org, first.quota, first.period, first.used, first.limit) == (
        "acme", "videos_per_month", "2026-05", Decimal(10), Decimal(10))


def test_the_usage_report_lists_every_quota() -> None:
    report = usage_report("acme", QuotaLimits(videos_per_month=3),
                          Usage(videos=2, stored_bytes=5), now=NOW)
    assert report.period_start == datetime(2026, 5, 1, tzinfo=UTC)
    assert [(i.quota, i.used, i.limit) for i in report.items] == [
        ("videos_per_month", Decimal(2), Decimal(3)),
        ("generation_seconds_per_month", Decimal(0), None),
        ("cost_usd_per_month", Decimal(0), None),
        ("storage_bytes", Decimal(5), None),
    ]
    assert [i.resets_at is None for i in report.items] == [False, False, False, True]
