"""The catalog's metric rules: which status a projection step entered, bounded statement kinds
and connection states, quota ratios, the backup time's format."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from reelvault_catalog.metrics import (
    connection_state,
    entered_status,
    parse_backup_time,
    quota_ratios,
    statement_kind,
)
from reelvault_catalog.projection import Insert, Unchanged, Update, Wait
from reelvault_catalog.quotas import Usage
from reelvault_catalog.repository import Applied
from reelvault_common.contracts.catalog import QuotaLimits

NOW = datetime(2026, 1, 2, tzinfo=UTC)


def test_a_step_counts_the_status_it_entered_and_nothing_else() -> None:
    inserted = Insert({"status": "queued", "prompt": "p"})
    assert entered_status(Applied(inserted, written=True)) == "queued"
    # The insert another replica won: that replica counts it.
    assert entered_status(Applied(inserted, written=False)) is None
    assert entered_status(Applied(Update({"status": "completed", "bytes": 3}), True)) == "completed"
    # Progress, a provider URL, ...: no status change, no count.
    assert entered_status(Applied(Update({"progress": 40, "updated_at": NOW}), True)) is None
    assert entered_status(Applied(Unchanged("redelivered"), False)) is None
    assert entered_status(Applied(Wait("no row yet"), False)) is None


@pytest.mark.parametrize(
    ("statement", "kind"),
    [
        ("SELECT videos.id FROM videos", "select"),
        ("  insert into videos (id) values ($1)", "insert"),
        ("UPDATE videos SET status=$1", "update"),
        ("DELETE FROM quota_notices", "delete"),
        ("WITH x AS (SELECT 1) SELECT * FROM x", "with"),
        ("SET LOCAL ROLE reelvault_tenant", "set"),
        ("SAVEPOINT sa_savepoint_1", "other"),
        ("reelvault_catalog.videos.id = 'not-a-statement-kind'", "other"),
        ("SELECT set_config('reelvault.org', $1, true)", "select"),
        ("", "other"),
    ],
)
def test_statement_kinds_are_a_small_set(statement: str, kind: str) -> None:
    assert statement_kind(statement) == kind


def test_connection_states_are_a_small_set() -> None:
    assert connection_state("active") == "active"
    assert connection_state("idle in transaction") == "idle_in_transaction"
    assert connection_state("idle in transaction (aborted)") == "idle_in_transaction_aborted"
    assert connection_state(None) == "other"  # another role's session, or a background worker
    assert connection_state("fastpath function call") == "other"


def test_quota_ratios_cover_set_limits_only() -> None:
    limits = {
        "acme": QuotaLimits(videos_per_month=10, cost_usd_per_month=Decimal("50"),
                            storage_bytes=1000),
        "globex": QuotaLimits(videos_per_month=0, generation_seconds_per_month=100),
        "initech": QuotaLimits(storage_bytes=500),
    }
    usage = {
        "acme": Usage(videos=8, seconds=40, cost_usd=Decimal("4.0000"), stored_bytes=1200),
        "globex": Usage(videos=0, seconds=25),
    }
    assert quota_ratios(limits, usage) == {
        ("acme", "videos_per_month"): 0.8,
        ("acme", "cost_usd_per_month"): 0.08,
        ("acme", "storage_bytes"): 1.2,  # over the limit: above 1
        # A limit of 0 (nothing allowed) has no ratio.
        ("globex", "generation_seconds_per_month"): 0.25,
        # No usage yet: 0.
        ("initech", "storage_bytes"): 0.0,
    }


def test_the_backup_time_is_unix_seconds_as_text() -> None:
    assert parse_backup_time(b"1767323045") == 1767323045
    assert parse_backup_time(b" 1767323045.5\n") == 1767323045.5
    for bad in (b"", b"yesterday", b"-5", b"nan", b"inf", None):
        with pytest.raises(ValueError):  # noqa: PT011 - every kind of bad value
            parse_backup_time(bad)
