"""The request budget's decisions: exact GCRA spacing, queue positions, poll share, fairness
across organizations and the provider's 429s. Pure: a fake clock and a simulated backlog."""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass

import pytest
from reelvault_generator.budget import (
    POLL_LANE,
    Admit,
    BudgetPolicy,
    BudgetState,
    Queue,
    decide,
    exhausted,
    is_budget_refusal,
    penalize,
)


def most_in_any_window(times: list[float], window_s: float) -> int:
    """The most calls in any half-open window [t, t + window_s)."""
    times = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(times):
        while times[first] <= at - window_s:
            first += 1
        most = max(most, last - first + 1)
    return most


@dataclass
class Outcome:
    admitted: dict[str, list[float]]  # lane -> call times
    first_seen: dict[str, float]
    served_at: dict[str, float]
    deliveries: int


def simulate(policy: BudgetPolicy, arrivals: list[tuple[float, str, str]], *,
             until: float, lateness_s: float = 0.0, seed: int = 1,
             state: BudgetState | None = None) -> Outcome:
    """Waiters (``(time, name, lane)``) arrive, are admitted or come back at their position,
    as the consumers do with the budget's retry-after; each admitted call reaches the provider
    up to ``lateness_s`` after its slot."""
    rng = random.Random(seed)
    state = state or BudgetState()
    events = [(at, name, lane, False) for at, name, lane in arrivals]
    heapq.heapify(events)
    admitted: dict[str, list[float]] = {}
    first = {name: at for at, name, _ in arrivals}
    served: dict[str, float] = {}
    deliveries = 0
    while events and events[0][0] < until:
        now, name, lane, returning = heapq.heappop(events)
        deliveries += 1
        outcome = decide(state, policy, now, lane, returning=returning)
        if isinstance(outcome, Admit):
            assert outcome.at >= now
            admitted.setdefault(lane, []).append(outcome.at + rng.uniform(0, lateness_s))
            served[name] = outcome.at
        else:
            assert outcome.queued and outcome.at > now
            heapq.heappush(events, (outcome.at, name, lane, True))
    return Outcome(admitted, first, served, deliveries)


def all_calls(outcome: Outcome) -> list[float]:
    return [at for times in outcome.admitted.values() for at in times]


POLICY = BudgetPolicy(limit=60, window_s=60.0, margin_s=1.0)


def test_cold_start_burst_never_exceeds_the_limit_in_any_window() -> None:
    # 1,000 requests at once on an empty state: no burst, one call per slot.
    arrivals = [(0.0, f"r{i}", "org:a") for i in range(1000)]
    outcome = simulate(POLICY, arrivals, until=600.0, lateness_s=1.0)
    calls = all_calls(outcome)
    assert most_in_any_window(calls, 60.0) <= 60
    assert len(calls) >= 9 * 60  # the budget is used, not just refused
    # Waiting costs nothing: about two deliveries (arrive, come back) per call.
    assert outcome.deliveries <= 2.2 * len(calls) + 1000 - len(calls)


@pytest.mark.parametrize("seed", range(5))
def test_random_arrivals_and_lateness_hold_the_limit(seed: int) -> None:
    rng = random.Random(seed)
    arrivals = [(rng.uniform(0, 300), f"r{i}", rng.choice(["org:a", "org:b", POLL_LANE]))
                for i in range(2000)]
    outcome = simulate(POLICY, arrivals, until=900.0, lateness_s=POLICY.margin_s, seed=seed)
    assert most_in_any_window(all_calls(outcome), 60.0) <= 60


def test_a_restarted_budget_reading_the_same_state_holds_the_limit() -> None:
    arrivals = [(0.0, f"r{i}", "org:a") for i in range(300)]
    state = BudgetState()
    before = simulate(POLICY, arrivals, until=100.0, state=state)
    # A new process reads the state back (JSON) and carries on with new waiters.
    restored = BudgetState.from_json(state.to_json())
    later = [(100.0, f"s{i}", "org:a") for i in range(300)]
    after = simulate(POLICY, later, until=400.0, state=restored)
    assert most_in_any_window(all_calls(before) + all_calls(after), 60.0) <= 60


def test_waiters_get_their_own_positions_in_order() -> None:
    state = BudgetState()
    slot = POLICY.base_interval_s
    # Within the horizon (one slot) plus one slot for a lane with no queue: admitted, each at
    # its own slot (the caller sleeps until it).
    admitted = [decide(state, POLICY, 0.0, "org:a", returning=False) for _ in range(3)]
    assert [a.at for a in admitted if isinstance(a, Admit)] == pytest.approx([0, slot, 2 * slot])
    positions = []
    for _ in range(5):
        outcome = decide(state, POLICY, 0.0, "org:a", returning=False)
        assert isinstance(outcome, Queue) and outcome.queued
        positions.append(outcome.at)
    # One slot each, spaced by the lane's share (all of it here), no two the same.
    gaps = [b - a for a, b in itertools.pairwise(positions)]
    assert len(set(positions)) == 5
    assert all(gap == pytest.approx(POLICY.base_interval_s) for gap in gaps)


def test_a_second_organization_waits_at_most_the_horizon_and_one_slot() -> None:
    arrivals = [(i * 0.01, f"a{i}", "org:a") for i in range(10_000)]
    arrivals += [(t, f"b@{t}", "org:b") for t in (5.0, 60.5, 333.3, 700.0)]
    outcome = simulate(POLICY, arrivals, until=800.0)
    slot = POLICY.base_interval_s
    for name in ("b@5.0", "b@60.5", "b@333.3", "b@700.0"):
        waited = outcome.served_at[name] - outcome.first_seen[name]
        assert waited <= POLICY.horizon(slot) + slot + 1e-9, (name, waited)
    assert most_in_any_window(all_calls(outcome), 60.0) <= 60


def test_two_busy_organizations_share_the_rate_equally() -> None:
    arrivals = [(0.0, f"a{i}", "org:a") for i in range(2000)]
    arrivals += [(0.0, f"b{i}", "org:b") for i in range(2000)]
    outcome = simulate(POLICY, arrivals, until=1200.0)
    a, b = len(outcome.admitted["org:a"]), len(outcome.admitted["org:b"])
    assert abs(a - b) <= 0.1 * (a + b), (a, b)
    assert a + b >= 0.9 * 1200 * 60 / 61


def test_polls_get_their_share_while_creates_wait_and_all_of_it_otherwise() -> None:
    policy = BudgetPolicy(limit=60, window_s=60.0, margin_s=1.0, poll_share=0.2)
    # 1,500 followed jobs looking every 15 s, a 3,000-video backlog.
    arrivals = [(i * 0.01, f"job{i}@{k}", POLL_LANE) for i in range(1500) for k in range(1)]
    arrivals += [(0.0, f"r{i}", "org:a") for i in range(3000)]
    outcome = simulate(policy, arrivals, until=600.0)
    polls, creates = len(outcome.admitted[POLL_LANE]), len(outcome.admitted["org:a"])
    # A queue spaced before polls became busy yields a little more than their share at first.
    assert polls / (polls + creates) == pytest.approx(0.2, abs=0.07)
    # No create waiting: polls may use the whole budget (idle_poll_share = 1).
    idle = simulate(policy, [(0.0, f"j{i}", POLL_LANE) for i in range(600)], until=300.0)
    assert len(idle.admitted[POLL_LANE]) >= 0.9 * 300 * 60 / 61


def test_with_webhooks_polls_stay_capped_even_when_idle() -> None:
    policy = BudgetPolicy(limit=60, window_s=60.0, poll_share=0.2, idle_poll_share=0.2)
    outcome = simulate(policy, [(0.0, f"j{i}", POLL_LANE) for i in range(600)], until=300.0)
    assert len(outcome.admitted[POLL_LANE]) <= 0.2 * 300 + 2


def test_a_providers_429_lowers_the_rate_then_it_recovers() -> None:
    policy = BudgetPolicy(limit=60, window_s=60.0, recovery_s=100.0)
    state = BudgetState()
    penalize(state, policy, 10.0, retry_after_s=5.0)
    assert state.factor_now(10.0, policy) == pytest.approx(0.5)
    assert state.factor_now(60.0, policy) == pytest.approx(1.0)
    # Nothing before the retry-after; then slots twice as far apart.
    outcome = decide(state, policy, 10.0, "org:a", returning=True, ticketed=False)
    assert isinstance(outcome, Queue) and outcome.at == pytest.approx(15.0)
    first = decide(state, policy, 15.0, "org:a", returning=True, ticketed=False)
    second = decide(state, policy, 15.0, "org:a", returning=True, ticketed=False)
    assert isinstance(first, Admit) and isinstance(second, Admit)
    # The rate recovers linearly: 0.55 of it 5 s later.
    assert second.at - first.at == pytest.approx(policy.base_interval_s / 0.55)


def test_state_round_trips_and_counts_waiters() -> None:
    state = BudgetState()
    for _ in range(6):  # three admitted (up to two slots ahead), three queued
        decide(state, POLICY, 0.0, "org:a", returning=False)
    again = BudgetState.from_json(state.to_json())
    assert again == state
    assert again.waiting(0.0) == 3
    assert again.estimated_wait_s(0.0) == pytest.approx(5 * POLICY.base_interval_s)
    assert list(again.lanes) == ["org:a"]


def test_budget_refusal_looks_like_a_providers_429() -> None:
    error = exhausted(2.5, 10, 60.0)
    assert error.status == 429 and error.transient
    assert error.retry_after_s == 2.5
    assert is_budget_refusal(error)


def test_a_look_not_before_a_time_reserves_its_slot_in_one_decision() -> None:
    # An idle lane: the slot is the "not before" itself; coming back then, it is admitted.
    state = BudgetState()
    outcome = decide(state, POLICY, 100.0, POLL_LANE, returning=False, not_before=130.0)
    assert outcome == Queue(130.0, queued=True)
    assert decide(state, POLICY, 130.0, POLL_LANE, returning=True) == Admit(130.0)
    # Within the horizon: admitted now, for the slot at the "not before".
    soon = decide(BudgetState(), POLICY, 100.0, POLL_LANE, returning=False, not_before=100.5)
    assert soon == Admit(100.5)


def test_a_not_before_inside_a_long_queue_keeps_its_place_at_the_end() -> None:
    policy = BudgetPolicy(limit=60, window_s=60.0, poll_share=0.2)
    state, now = BudgetState(), 0.0
    decide(state, policy, now, "org:a", returning=False)  # creates wait: polls get 20 %
    decide(state, policy, now, "org:a", returning=False)
    for _ in range(50):  # 50 looks queued, ~5 s apart: about 250 s of queue
        decide(state, policy, now, POLL_LANE, returning=False)
    end = state.lanes[POLL_LANE].end
    outcome = decide(state, policy, now, POLL_LANE, returning=False, not_before=now + 30.0)
    assert isinstance(outcome, Queue) and outcome.queued
    assert end < outcome.at <= end + 5.1  # one place after the last, not a second wait
