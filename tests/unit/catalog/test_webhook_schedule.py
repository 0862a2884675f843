"""The retry schedule of webhook deliveries (over more than 24 h), giving up, and when a
failing endpoint is disabled."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from reelvault_catalog.webhooks.schedule import (
    after_failure,
    retry_delay_s,
    schedule_span_s,
    should_disable,
)
from reelvault_catalog.webhooks.settings import DEFAULT_RETRY_SCHEDULE_S, WebhookDeliverySettings

NOW = datetime(2027, 1, 1, tzinfo=UTC)


def test_the_default_schedule_grows_and_spans_more_than_a_day() -> None:
    waits = [retry_delay_s(n, DEFAULT_RETRY_SCHEDULE_S) for n in range(1, 8)]
    assert waits == list(DEFAULT_RETRY_SCHEDULE_S)
    assert waits == sorted(waits)  # type: ignore[type-var]
    assert schedule_span_s(DEFAULT_RETRY_SCHEDULE_S) >= 24 * 3600
    assert retry_delay_s(8, DEFAULT_RETRY_SCHEDULE_S) is None
    assert retry_delay_s(0, DEFAULT_RETRY_SCHEDULE_S) is None
    assert WebhookDeliverySettings().max_attempts == 8


def test_jitter_stays_within_its_fraction() -> None:
    rand = random.Random(7)
    waits = [retry_delay_s(3, (10.0, 100.0, 1000.0), 0.1, rand) for _ in range(500)]
    assert all(w is not None and 900.0 <= w <= 1100.0 for w in waits)
    assert len({round(w or 0, 3) for w in waits}) > 100  # actually spread


def test_after_failure_schedules_the_next_attempt_until_the_last() -> None:
    settings = WebhookDeliverySettings(retry_schedule_s=(5, 60), retry_jitter=0)
    first = after_failure(0, settings.max_attempts, NOW, settings)
    assert first.attempts == 1 and first.next_attempt_at == NOW + timedelta(seconds=5)
    second = after_failure(1, settings.max_attempts, NOW, settings)
    assert second.attempts == 2 and second.next_attempt_at == NOW + timedelta(seconds=60)
    last = after_failure(2, settings.max_attempts, NOW, settings)
    assert last.attempts == 3 and last.given_up


def test_a_replay_allows_exactly_one_more_attempt() -> None:
    settings = WebhookDeliverySettings(retry_jitter=0)
    assert after_failure(8, 9, NOW, settings).given_up
    assert after_failure(3, 4, NOW, settings).given_up


def test_an_endpoint_is_disabled_only_after_enough_failures_for_long_enough() -> None:
    settings = WebhookDeliverySettings(disable_after_failures=8, disable_after_s=86400)
    day_ago = NOW - timedelta(days=1)
    assert should_disable(8, day_ago, NOW, settings)
    assert not should_disable(7, day_ago, NOW, settings)  # too few
    assert not should_disable(500, NOW - timedelta(hours=2), NOW, settings)  # too recent
    assert not should_disable(8, None, NOW, settings)  # not failing
