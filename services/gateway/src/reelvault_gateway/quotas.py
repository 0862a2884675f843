"""How quota answers of the catalog look to HTTP clients. Pure."""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field
from reelvault_common.contracts.catalog import QuotaExceededInfo, UsageReport

from reelvault_gateway.credentials import aware
from reelvault_gateway.errors import ApiError


def plain_number(value: Decimal) -> int | float:
    """Counts as integers, amounts (USD) as decimals: JSON numbers either way."""
    return int(value) if value == value.to_integral_value() else float(value)


def quota_exceeded(info: QuotaExceededInfo, now: datetime) -> ApiError:
    """429 ``quota_exceeded``, with ``Retry-After`` when the quota resets at a known time."""
    headers = None
    resets = ""
    if info.resets_at is not None:
        resets_at = aware(info.resets_at)
        wait = max(1, math.ceil((resets_at - now).total_seconds()))
        headers = {"Retry-After": str(wait)}
        resets = f" It resets at {resets_at.isoformat()}."
    used, limit = plain_number(info.used), plain_number(info.limit)
    return ApiError(
        429,
        "quota_exceeded",
        f"The organization's {info.quota} quota is used up ({used} of {limit}).{resets}",
        details={
            "quota": info.quota,
            "used": used,
            "limit": limit,
            "resets_at": info.resets_at.isoformat() if info.resets_at is not None else None,
        },
        headers=headers,
    )


class QuotaUsage(BaseModel):
    quota: str = Field(description="videos_per_month, generation_seconds_per_month, "
                       "cost_usd_per_month or storage_bytes.")
    used: int | float
    limit: int | float | None = Field(description="null: no limit.")
    resets_at: datetime | None = Field(
        description="When a monthly quota starts again (UTC month); null for stored bytes."
    )


class Usage(BaseModel):
    object: Literal["usage"] = "usage"
    org: str
    period_start: datetime
    quotas: list[QuotaUsage]


def usage_view(report: UsageReport) -> Usage:
    return Usage(
        org=report.org,
        period_start=report.period_start,
        quotas=[
            QuotaUsage(
                quota=item.quota,
                used=plain_number(item.used),
                limit=plain_number(item.limit) if item.limit is not None else None,
                resets_at=item.resets_at,
            )
            for item in report.items
        ],
    )
