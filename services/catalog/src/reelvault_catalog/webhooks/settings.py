"""How webhooks are delivered (``REELVAULT_WEBHOOKS__<FIELD>``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# What a deployment says it is (``REELVAULT_DEPLOYMENT``): ``dev`` (``reelvault up``,
# ``make run``) may call webhook endpoints on loopback over plain http; ``production`` calls
# only https URLs whose addresses are public.
Deployment = Literal["production", "dev"]

# Standard Webhooks' suggested schedule: after the first attempt, again after 5 s, 5 min,
# 30 min, 2 h, 5 h, 10 h and 10 h: eight attempts over about 27.6 h.
DEFAULT_RETRY_SCHEDULE_S: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)


class WebhookDeliverySettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Waits between attempts; one attempt more than waits.
    retry_schedule_s: tuple[float, ...] = Field(default=DEFAULT_RETRY_SCHEDULE_S, min_length=1)
    # Each wait is stretched or shrunk by up to this fraction, so retries of many deliveries
    # that failed together do not arrive together.
    retry_jitter: float = Field(default=0.1, ge=0, lt=1)
    # One attempt, connection included, ends after this (the endpoint may be slow or dead).
    timeout_s: float = Field(default=10.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    # Attempts in flight at once per endpoint and replica, and in all per replica: a slow
    # endpoint holds at most its own share.
    per_endpoint_concurrency: int = Field(default=4, ge=1, le=64)
    workers: int = Field(default=64, ge=1, le=1024)
    # How often due retries are looked for (new deliveries are sent at once).
    poll_s: float = Field(default=1.0, gt=0)
    # An endpoint whose attempts all failed, at least this many in a row and for at least
    # this long, is disabled.
    disable_after_failures: int = Field(default=8, ge=1)
    disable_after_s: float = Field(default=24 * 3600.0, ge=0)
    max_endpoints_per_org: int = Field(default=20, ge=1, le=1000)

    @field_validator("retry_schedule_s")
    @classmethod
    def _positive(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(wait <= 0 for wait in value):
            raise ValueError("every retry wait must be positive")
        return value

    @property
    def max_attempts(self) -> int:
        return len(self.retry_schedule_s) + 1

    @property
    def lease_s(self) -> float:
        """How long an attempt may hold its delivery before another replica may take it."""
        return self.timeout_s + 30.0
