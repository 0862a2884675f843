"""Bounded retries with backoff, only for transient storage errors."""

from __future__ import annotations

import random

import pytest
from reelvault_common.storage import StorageError, TransientStorageError
from reelvault_common.storage.retry import RetryPolicy, retrying

FAST = RetryPolicy(attempts=3, base_delay_s=0.001, max_delay_s=0.002)


def test_delays_grow_exponentially_within_bounds() -> None:
    policy = RetryPolicy(attempts=9, base_delay_s=0.5, max_delay_s=4.0)
    rng = random.Random(7)
    for failures, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (8, 4.0)]:
        delay = policy.delay(failures, rng)
        assert ceiling / 2 <= delay <= ceiling


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
