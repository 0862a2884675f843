"""Bounded retries with exponential backoff for idempotent storage calls.

Only ``TransientStorageError`` is retried: everything else (bucket rules, auth, conflicts) would
fail the same way again.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from reelvault_common.storage.interface import TransientStorageError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` counts every try, the first included (1 means: never retry)."""

    attempts: int = 5
    base_delay_s: float = 0.25
    max_delay_s: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """Backoff before the next try after ``failures`` consecutive failures (from 1);
        half fixed, half jitter, so racing clients spread out but never retry at once."""
        ceiling = min(self.max_delay_s, self.base_delay_s * (2 ** max(failures - 1, 0)))
        return (rng or random).uniform(ceiling / 2, ceiling)


async def retrying(what: str, call: Callable[[], Awaitable[T]], policy: RetryPolicy) -> T:
    """Run ``call`` until it succeeds, raises a non-transient error, or the attempts run out."""
    failures = 0
    while True:
        try:
            return await call()
        except TransientStorageError as exc:
            failures += 1
            if failures >= policy.attempts:
                raise TransientStorageError(
                    f"{exc.message} (gave up after {failures} attempts)"
                ) from exc
            delay = policy.delay(failures)
            log.warning(
                "%s failed (attempt %d/%d): %s; retrying in %.2fs",
                what,
                failures,
                policy.attempts,
                exc.message,
                delay,
            )
            await asyncio.sleep(delay)
