"""The poll schedule and the job deadline."""

from __future__ import annotations

import random
import statistics
from datetime import UTC, datetime, timedelta

import pytest
from reelvault_generator.polling import (
    MIN_POLL_DELAY_S,
    PollSchedule,
    bounded_by_deadline,
    deadline_message,
    next_poll_delay,
    seconds_left,
)

SCHEDULE = PollSchedule(interval_s=2.0, max_interval_s=15.0, backoff_factor=1.5, jitter=0.2)


def test_server_poll_after_wins() -> None:
    for attempt in (1, 5, 50):
        assert next_poll_delay(attempt, SCHEDULE, poll_after_s=3.25) == 3.25
    # Even beyond our own max interval: the server knows best, up to a sane bound.
    assert next_poll_delay(1, SCHEDULE, poll_after_s=40.0) == 40.0
    assert next_poll_delay(1, SCHEDULE, poll_after_s=10_000.0) == SCHEDULE.poll_after_max_s
    assert next_poll_delay(1, SCHEDULE, poll_after_s=0.0) == MIN_POLL_DELAY_S


def test_delay_grows_with_attempts_and_is_capped() -> None:
    rng = random.Random(3)
    means = [
        statistics.mean(next_poll_delay(a, SCHEDULE, rng=rng) for _ in range(300))
        for a in range(1, 10)
    ]
    assert means[0] < means[2] < means[4]
    assert means[0] == pytest.approx(2.0 * 1.0, rel=0.15)  # jitter around the base, floored
    assert max(next_poll_delay(a, SCHEDULE, rng=rng) for a in range(1, 200)) <= 15.0
    assert means[-1] == pytest.approx(15.0, rel=0.15)  # stuck at the cap


def test_delays_stay_within_bounds_and_are_jittered() -> None:
    rng = random.Random(5)
    for attempt in (1, 2, 3, 4, 6, 10, 1000, 10**6):
        samples = [next_poll_delay(attempt, SCHEDULE, rng=rng) for _ in range(200)]
        assert all(2.0 <= s <= 15.0 for s in samples), attempt
    mid = [next_poll_delay(4, SCHEDULE, rng=rng) for _ in range(200)]
    assert len({round(s, 6) for s in mid}) > 100  # not lockstep
    base = 2.0 * 1.5**3
    assert min(mid) >= base * 0.8 - 1e-9
    assert max(mid) <= base * 1.2 + 1e-9


def test_without_jitter_the_schedule_is_exact() -> None:
    schedule = PollSchedule(interval_s=1.0, max_interval_s=5.0, backoff_factor=2.0, jitter=0.0)
    assert [next_poll_delay(a, schedule) for a in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_schedule_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="interval"):
        PollSchedule(interval_s=10.0, max_interval_s=5.0)
    with pytest.raises(ValueError, match="jitter"):
        PollSchedule(jitter=1.5)


def test_deadline_counts_from_job_creation() -> None:
    created = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert seconds_left(created, 3600, created + timedelta(minutes=10)) == 3000
    assert seconds_left(created, 3600, created + timedelta(hours=1, seconds=1)) == -1


def test_next_look_never_sleeps_past_the_deadline() -> None:
    assert bounded_by_deadline(15.0, 100.0) == 15.0
    assert bounded_by_deadline(15.0, 3.0) == pytest.approx(3.05)
    assert bounded_by_deadline(15.0, -5.0) == MIN_POLL_DELAY_S


def test_deadline_message_says_what_happened() -> None:
    message = deadline_message("video_1", 3600, "in_progress", 42)
    assert "video_1" in message
    assert "3600s" in message
    assert "in_progress" in message
    assert "42%" in message
