"""When to look at a provider job again, and when to give up on it. Pure functions.

Polling is a durable consumer: each delivery of ``video.generation.started`` is one look, and a
job still running is nak'd with the delay computed here, so the schedule survives restarts (the
delivery count is the attempt number).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

# Even a provider that says "poll again now" gets a moment's pause (no hot loop).
MIN_POLL_DELAY_S = 0.1
# Looking a hair after the deadline, not before it, so the last look can still end the job.
DEADLINE_SLACK_S = 0.05


@dataclass(frozen=True)
class PollSchedule:
    interval_s: float = 2.0
    max_interval_s: float = 15.0
    backoff_factor: float = 1.5
    jitter: float = 0.2
    poll_after_max_s: float = 120.0

    def __post_init__(self) -> None:
        if not 0 < self.interval_s <= self.max_interval_s:
            raise ValueError("need 0 < interval_s <= max_interval_s")
        if self.backoff_factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError("need backoff_factor >= 1 and 0 <= jitter < 1")


def next_poll_delay(
    attempt: int,
    schedule: PollSchedule,
    *,
    poll_after_s: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds until the next look at a running job, ``attempt`` counting from 1.

    The provider's ``openai-poll-after-ms`` wins when given (bounded to something sane);
    otherwise the interval grows by ``backoff_factor`` per attempt up to ``max_interval_s``,
    jittered by +-``jitter`` and kept within [interval_s, max_interval_s], so replicas that
    started together drift apart instead of polling in lockstep.
    """
    if poll_after_s is not None:
        return min(max(poll_after_s, MIN_POLL_DELAY_S), schedule.poll_after_max_s)
    exponent = max(attempt - 1, 0)
    # min() before the power would overflow for very long-running jobs.
    base = schedule.interval_s
    for _ in range(exponent):
        base *= schedule.backoff_factor
        if base >= schedule.max_interval_s:
            base = schedule.max_interval_s
            break
    spread = (rng or random).uniform(1 - schedule.jitter, 1 + schedule.jitter)
    return min(max(base * spread, schedule.interval_s), schedule.max_interval_s)


def deadline_of(job_created_at: datetime, deadline_s: float) -> datetime:
    return job_created_at + timedelta(seconds=deadline_s)


def seconds_left(job_created_at: datetime, deadline_s: float, now: datetime) -> float:
    """Time left before the job's deadline (negative once past it)."""
    return (deadline_of(job_created_at, deadline_s) - now).total_seconds()


def bounded_by_deadline(delay: float, left_s: float) -> float:
    """Never sleep past the deadline: the look right after it ends the job."""
    return max(min(delay, left_s + DEADLINE_SLACK_S), MIN_POLL_DELAY_S)


def deadline_message(
    job_id: str, deadline_s: float, status: str | None, progress: int | None
) -> str:
    seen = f"last seen '{status}' at {progress or 0}%" if status else "its status unknown"
    return (
        f"the provider's job {job_id} did not finish within the {deadline_s:.0f}s deadline "
        f"({seen}); giving up on it"
    )
