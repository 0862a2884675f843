"""Bounded retries with exponential backoff for idempotent storage calls, on ``tenacity``.

Only ``TransientStorageError`` is retried by default: everything else (bucket rules, auth,
conflicts) would fail the same way again.

Why tenacity (and not stamina, which wraps it): every wait here is configured per call -- the
start-up waits (``runtime/startup.py``) need an injectable sleep and clock, a stop at a shared
deadline and exactly one log line of their own per attempt. Tenacity takes all of those per
``AsyncRetrying``; stamina sleeps with ``asyncio.sleep`` only and logs each retry through
process-wide hooks (a second line per attempt unless global settings are changed), and it would
add a dependency on top of tenacity for nothing we use.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NoReturn, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random_exponential,
)
from tenacity.wait import wait_base

from reelvault_common.storage.interface import StorageError, TransientStorageError

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

    def wait(self) -> wait_base:
        """Backoff before the next try after ``n`` consecutive failures: the ceiling
        ``min(max_delay_s, base_delay_s * 2 ** (n - 1))``, half of it fixed and half jitter, so
        racing clients spread out but none retries at once."""
        half_base, half_cap = self.base_delay_s / 2, self.max_delay_s / 2
        return wait_exponential(multiplier=half_base, max=half_cap) + wait_random_exponential(
            multiplier=half_base, max=half_cap
        )


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TransientStorageError)


def _gave_up(state: RetryCallState) -> NoReturn:
    """The attempts are spent: the last error, saying so (transient for the caller)."""
    error = state.outcome.exception() if state.outcome is not None else None
    reason = error.message if isinstance(error, StorageError) else repr(error)
    raise TransientStorageError(
        f"{reason} (gave up after {state.attempt_number} attempts)"
    ) from error


def _log_retry(what: str, policy: RetryPolicy) -> Callable[[RetryCallState], None]:
    def log_before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        reason = error.message if isinstance(error, StorageError) else repr(error)
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning(
            "%s failed (attempt %d/%d): %s; retrying in %.2fs",
            what,
            state.attempt_number,
            policy.attempts,
            reason,
            delay,
        )

    return log_before_sleep


def _retrier(
    what: str,
    policy: RetryPolicy,
    *,
    retry_on: Callable[[BaseException], bool] = is_transient,
    wrap_last_error: bool = True,
) -> AsyncRetrying:
    """The ``AsyncRetrying`` behind ``retrying``.

    ``wrap_last_error``: once the attempts are spent, raise ``TransientStorageError`` saying so
    (the default) rather than the last error itself."""
    return AsyncRetrying(
        stop=stop_after_attempt(policy.attempts),
        wait=policy.wait(),
        retry=retry_if_exception(retry_on),
        before_sleep=_log_retry(what, policy),
        retry_error_callback=_gave_up if wrap_last_error else None,
        reraise=True,
    )


async def retrying(
    what: str,
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    retry_on: Callable[[BaseException], bool] = is_transient,
    wrap_last_error: bool = True,
) -> T:
    """Run ``call`` until it succeeds, raises an error ``retry_on`` refuses, or the attempts
    run out (then ``TransientStorageError`` "... gave up after N attempts", or with
    ``wrap_last_error=False`` the last error itself)."""
    # ``async for`` rather than ``AsyncRetrying.__call__``: the latter awaits only coroutine
    # functions, and a lambda returning a coroutine is not one.
    retries = _retrier(what, policy, retry_on=retry_on, wrap_last_error=wrap_last_error)
    async for attempt in retries:
        with attempt:
            result = await call()
        if attempt.retry_state.outcome is not None and not attempt.retry_state.outcome.failed:
            return result
    raise AssertionError("unreachable: tenacity stops by returning or raising")


async def retrying_after(
    failure: BaseException,
    what: str,
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    retry_on: Callable[[BaseException], bool] = is_transient,
) -> T:
    """``retrying`` for a call whose first attempt the caller made itself and saw fail with
    ``failure``: attempts, waits and log lines go on as if ``retrying`` had made it. For hot
    loops (a read's every chunk), where a call that succeeds at once should not pay for the
    retry machinery."""
    replay = [failure]

    async def failure_first_then_call() -> T:
        if replay:
            raise replay.pop()
        return await call()

    return await retrying(what, failure_first_then_call, policy, retry_on=retry_on)


__all__ = ["RetryPolicy", "is_transient", "retrying", "retrying_after"]
