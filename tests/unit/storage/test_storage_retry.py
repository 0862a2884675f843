"""Bounded retries with backoff, only for transient storage errors."""

from __future__ import annotations

import logging

import pytest
from reelvault_common.storage import StorageError, TransientStorageError
from reelvault_common.storage.retry import RetryPolicy, retrying, retrying_after
from tenacity import RetryCallState

FAST = RetryPolicy(attempts=3, base_delay_s=0.001, max_delay_s=0.002)


def test_delays_grow_exponentially_within_bounds() -> None:
    wait = RetryPolicy(attempts=9, base_delay_s=0.5, max_delay_s=4.0).wait()
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    for failures, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (8, 4.0)]:
        state.attempt_number = failures
        delays = [wait(state) for _ in range(50)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 1  # jittered: racing clients spread out


def test_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RetryPolicy(attempts=0)


async def test_transient_errors_are_retried_until_success() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise TransientStorageError("503")
        return "ok"

    assert await retrying("op", flaky, FAST) == "ok"
    assert calls == 3


async def test_attempts_are_bounded() -> None:
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise TransientStorageError("still 503")

    with pytest.raises(TransientStorageError, match="gave up after 3 attempts"):
        await retrying("op", down, FAST)
    assert calls == 3


async def test_other_errors_are_not_retried() -> None:
    calls = 0

    async def refused() -> None:
        nonlocal calls
        calls += 1
        raise StorageError("413")

    with pytest.raises(StorageError):
        await retrying("op", refused, FAST)
    assert calls == 1


async def test_each_retry_is_logged_with_its_attempt_and_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise TransientStorageError("503 from the server")

    with caplog.at_level(logging.WARNING, logger="reelvault_common.storage.retry"):
        await retrying("put v/k", flaky, FAST)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("put v/k failed (attempt 1/3): 503 from the server; retrying in ")
    assert lines[1].startswith("put v/k failed (attempt 2/3): ")


async def test_a_custom_predicate_decides_what_is_retried() -> None:
    calls = 0

    async def refused_then_fine() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise StorageError("409 offset conflict")
        return "ok"

    assert await retrying("op", refused_then_fine, FAST, retry_on=lambda e: True) == "ok"
    assert calls == 2


async def test_retrying_after_a_failure_counts_it_as_the_first_attempt() -> None:
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise TransientStorageError("still 503")

    with pytest.raises(TransientStorageError, match="gave up after 3 attempts"):
        await retrying_after(TransientStorageError("503"), "op", down, FAST)
    assert calls == 2  # the caller's own try was the first of the three

    async def fine() -> str:
        return "ok"

    assert await retrying_after(TransientStorageError("503"), "op", fine, FAST) == "ok"
