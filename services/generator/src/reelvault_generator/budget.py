"""A provider request budget shared by every generator replica, so the provider's 429s stay rare.

Sliding-window counter: requests are counted per fixed window in a NATS KV bucket (one key per
provider and window, incremented with compare-and-set), and a request is allowed while
``previous * (1 - elapsed share of the current window) + current < limit``. That smooths the
burst a plain fixed window allows at its edges, at two KV reads and one write per request.

A spent budget raises ``ProviderError`` with status 429 and a ``retry_after_s``, exactly like
the provider's own 429, so every caller already knows what to do: wait as told, never drop.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from reelvault_common.providers.openai_videos import ProviderError

log = logging.getLogger(__name__)

BUDGET_CODE = "rate_budget_exhausted"
MIN_WAIT_S = 0.05


@dataclass(frozen=True)
class WindowPosition:
    index: int
    elapsed_share: float  # 0..1 into the window


def position(now: float, window_s: float) -> WindowPosition:
    index = int(now // window_s)
    return WindowPosition(index, (now - index * window_s) / window_s)


def estimated_count(previous: int, current: int, elapsed_share: float) -> float:
    """Requests in the last window_s, assuming the previous window's were spread evenly."""
    return previous * (1.0 - elapsed_share) + current


def allows(previous: int, current: int, elapsed_share: float, limit: int) -> bool:
    return estimated_count(previous, current, elapsed_share) + 1 <= limit


def wait_estimate(
    previous: int, current: int, elapsed_share: float, limit: int, window_s: float
) -> float:
    """Roughly when one more request fits: when the previous window has decayed enough, or
    the next window starts, whichever comes first."""
    to_next_window = (1.0 - elapsed_share) * window_s
    if previous > 0 and current + 1 <= limit:
        # previous * (1 - s) + current + 1 <= limit  <=>  s >= 1 - (limit - current - 1) / prev
        share_needed = 1.0 - (limit - current - 1) / previous
        return max(min((share_needed - elapsed_share) * window_s, to_next_window), MIN_WAIT_S)
    # The current window alone is full: in the next one, this window becomes "previous".
    share_next = max(0.0, 1.0 - (limit - 1) / max(current, 1))
    return max(to_next_window + share_next * window_s, MIN_WAIT_S)


def exhausted(wait_s: float, limit: int, window_s: float) -> ProviderError:
    return ProviderError(
        f"shared provider budget of {limit} requests per {window_s:g}s is spent",
        status=429,
        type="rate_budget",
        code=BUDGET_CODE,
        retry_after_s=wait_s,
    )


class KvRequestBudget:
    """``RequestBudget`` over a KV bucket (memory storage, TTL of a few windows)."""

    MAX_ROUNDS = 16

    def __init__(
        self,
        kv: KeyValue,
        *,
        provider: str,
        limit: int,
        window_s: float,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("a budget needs limit >= 1 and window_s > 0")
        self._kv = kv
        self._provider = provider
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._rng = rng or random.Random()
        # A finished window's count no longer changes (give or take clock skew): cache it.
        self._closed: tuple[int, int] | None = None

    def _key(self, index: int) -> str:
        return f"rpm.{self._provider}.{index}"

    async def _read(self, index: int) -> tuple[int, int | None]:
        try:
            entry = await self._kv.get(self._key(index))
        except KeyNotFoundError:
            return 0, None
        return int(entry.value or b"0"), entry.revision

    async def _previous(self, index: int) -> int:
        if self._closed is not None and self._closed[0] == index:
            return self._closed[1]
        count, _ = await self._read(index)
        self._closed = (index, count)
        return count

    async def acquire(self) -> None:
        for _ in range(self.MAX_ROUNDS):
            where = position(self._clock(), self.window_s)
            previous = await self._previous(where.index - 1)
            current, revision = await self._read(where.index)
            if not allows(previous, current, where.elapsed_share, self.limit):
                wait = wait_estimate(previous, current, where.elapsed_share, self.limit,
                                     self.window_s)
                # Spread the replicas' retries instead of waking them all at once.
                raise exhausted(wait * self._rng.uniform(1.0, 1.25), self.limit, self.window_s)
            try:
                if revision is None:
                    await self._kv.create(self._key(where.index), b"1")
                else:
                    await self._kv.update(
                        self._key(where.index), str(current + 1).encode(), last=revision
                    )
                return
            except KeyWrongLastSequenceError:
                continue  # another replica counted a request meanwhile: look again
        raise exhausted(MIN_WAIT_S + self._rng.uniform(0, 0.1), self.limit, self.window_s)
