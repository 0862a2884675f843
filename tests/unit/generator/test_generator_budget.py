"""The shared request budget's sliding-window arithmetic."""

from __future__ import annotations

import pytest
from reelvault_generator.budget import (
    allows,
    estimated_count,
    exhausted,
    position,
    wait_estimate,
)


def test_position_in_the_window() -> None:
    assert position(125.0, 60.0).index == 2
    assert position(125.0, 60.0).elapsed_share == pytest.approx(5 / 60)


def test_previous_window_decays_as_the_current_one_runs() -> None:
    assert estimated_count(60, 0, 0.0) == 60
    assert estimated_count(60, 10, 0.5) == 40
    assert estimated_count(60, 10, 1.0) == 10


def test_allows_up_to_the_limit_and_no_further() -> None:
    assert allows(0, 9, 0.3, 10)
    assert not allows(0, 10, 0.3, 10)
    assert not allows(20, 0, 0.5, 10)  # 10 still "in" the sliding minute
    assert allows(20, 0, 0.96, 10)


@pytest.mark.parametrize(("previous", "current", "share"), [
    (0, 10, 0.2), (20, 0, 0.1), (12, 3, 0.4), (10, 10, 0.9), (100, 0, 0.0), (5, 9, 0.5)])
def test_waiting_the_estimate_makes_room(previous: int, current: int, share: float) -> None:
    limit, window = 10, 60.0
    assert not allows(previous, current, share, limit)
    wait = wait_estimate(previous, current, share, limit, window)
    assert wait > 0
    later = share + wait / window
    if later < 1.0:
        assert allows(previous, current, later + 1e-9, limit)
    else:  # in the next window, this one is "previous"
        assert allows(current, 0, later - 1.0 + 1e-9, limit)


def test_spent_budget_looks_like_a_providers_429() -> None:
    error = exhausted(2.5, 10, 60.0)
    assert error.status == 429
    assert error.transient
    assert error.retry_after_s == 2.5
