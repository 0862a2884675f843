"""The ledger decision: create, re-publish, wait for the owner, or recover, from the entry and
the clock."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from reelvault_generator.ledger import (
    MIN_WAIT_S,
    ClaimAndCreate,
    ClaimTiming,
    JobBinding,
    LedgerEntry,
    Recover,
    RepublishFailure,
    RepublishStarted,
    WaitForOwner,
    decide,
    new_claim,
)

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
TIMING = ClaimTiming(create_timeout_s=60, claim_margin_s=30, recovery_margin_s=120)


def claim(at: datetime = T0) -> LedgerEntry:
    return new_claim(owner="gen-a", now=at, correlation_id="c", org="acme", requested_at=T0)


def test_no_entry_means_claim_and_create() -> None:
    assert decide(None, T0, TIMING) == ClaimAndCreate()


def test_created_entry_is_only_republished_whatever_its_age() -> None:
    entry = claim().created(provider="openai", provider_job_id="video_1", job_created_at=T0)
    for later in (timedelta(0), timedelta(days=30)):
        decision = decide((entry, 7), T0 + later, TIMING)
        assert decision == RepublishStarted(entry)


def test_failed_entry_is_only_republished() -> None:
    entry = claim().failed(code="invalid_value", message="bad seconds")
    assert decide((entry, 3), T0 + timedelta(hours=1), TIMING) == RepublishFailure(entry)


def test_fresh_claim_waits_until_it_would_go_stale() -> None:
    decision = decide((claim(), 5), T0 + timedelta(seconds=10), TIMING)
    assert isinstance(decision, WaitForOwner)
    assert decision.delay_s == pytest.approx(80)
    assert decision.owner == "gen-a"


def test_claim_just_before_stale_waits_at_least_a_moment() -> None:
    decision = decide((claim(), 5), T0 + timedelta(seconds=89.9), TIMING)
    assert isinstance(decision, WaitForOwner)
    assert decision.delay_s == MIN_WAIT_S


def test_claim_from_a_clock_ahead_of_ours_waits_the_full_period() -> None:
    decision = decide((claim(T0 + timedelta(seconds=40)), 5), T0, TIMING)
    assert isinstance(decision, WaitForOwner)
    assert decision.delay_s == pytest.approx(TIMING.stale_after_s)


def test_stale_claim_is_recovered_in_the_window_the_create_could_have_happened() -> None:
    decision = decide((claim(), 9), T0 + timedelta(seconds=90), TIMING)
    assert isinstance(decision, Recover)
    assert decision.revision == 9
    assert decision.since == T0 - timedelta(seconds=120)
    assert decision.until == T0 + timedelta(seconds=60 + 120)


def test_reclaim_counts_attempts_and_moves_the_clock() -> None:
    again = claim().reclaimed(owner="gen-b", now=T0 + timedelta(minutes=5))
    assert (again.state, again.owner, again.attempts) == ("creating", "gen-b", 2)
    assert again.claimed_at == T0 + timedelta(minutes=5)
    assert again.org == "acme"


def test_entries_round_trip_through_bytes() -> None:
    entry = claim().created(provider="openai", provider_job_id="video_9",
                            job_created_at=T0 + timedelta(seconds=3), adopted=True)
    assert LedgerEntry.from_bytes(entry.to_bytes()) == entry


def test_job_bindings_round_trip_and_old_bare_ids_still_read() -> None:
    video_id = uuid.uuid4()
    full = JobBinding(video_id=video_id, correlation_id="c", org="acme", requested_at=T0,
                      job_created_at=T0 + timedelta(seconds=1))
    assert JobBinding.from_bytes(full.to_bytes()) == full
    assert full.complete
    # What bind_job wrote before bindings carried details: the bare video id.
    bare = JobBinding.from_bytes(str(video_id).encode())
    assert bare == JobBinding(video_id=video_id)
    assert not bare.complete
