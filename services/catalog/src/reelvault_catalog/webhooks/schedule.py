"""When a failed delivery is tried again, when it is given up, and when a failing endpoint is
disabled. Pure: the time and the randomness are passed in."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from reelvault_catalog.webhooks.settings import WebhookDeliverySettings


def retry_delay_s(attempts_made: int, schedule: tuple[float, ...], jitter: float = 0.0,
                  rand: random.Random | None = None) -> float | None:
    """The wait after the ``attempts_made``-th failed attempt (1 for the first), or None once
    the schedule is used up. ``jitter`` stretches or shrinks it by up to that fraction."""
    if attempts_made < 1 or attempts_made > len(schedule):
        return None
    wait = schedule[attempts_made - 1]
    if jitter:
        wait *= 1 + (rand or random).uniform(-jitter, jitter)
    return wait


def schedule_span_s(schedule: tuple[float, ...]) -> float:
    """From the first attempt to the last (without jitter)."""
    return float(sum(schedule))


@dataclass(frozen=True)
class AfterFailure:
    """What a failed attempt leaves: tried again at ``next_attempt_at``, or given up (None)."""

    attempts: int
    next_attempt_at: datetime | None

    @property
    def given_up(self) -> bool:
        return self.next_attempt_at is None


def after_failure(attempts_before: int, max_attempts: int, now: datetime,
                  settings: WebhookDeliverySettings, rand: random.Random | None = None
                  ) -> AfterFailure:
    """A failed attempt of a delivery that had ``attempts_before`` attempts; it may have at
    most ``max_attempts`` in all (a replay allows just one more)."""
    attempts = attempts_before + 1
    if attempts >= max_attempts:
        return AfterFailure(attempts, None)
    wait = retry_delay_s(attempts, settings.retry_schedule_s, settings.retry_jitter, rand)
    if wait is None:
        return AfterFailure(attempts, None)
    return AfterFailure(attempts, now + timedelta(seconds=wait))


def should_disable(consecutive_failures: int, failing_since: datetime | None, now: datetime,
                   settings: WebhookDeliverySettings) -> bool:
    """An endpoint is disabled when its attempts have all failed, at least
    ``disable_after_failures`` of them in a row, for at least ``disable_after_s``: a short
    outage with many events does not disable it, nor does one failure long ago."""
    if failing_since is None or consecutive_failures < settings.disable_after_failures:
        return False
    return (now - failing_since).total_seconds() >= settings.disable_after_s
