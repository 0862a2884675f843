"""Start-up: wait for what a service depends on (NATS, PostgreSQL) instead of crashing.

A service started before its broker or database (compose, Kubernetes, a restarted node) retries
the connection with capped exponential backoff and jitter, logging one line per attempt, until
``REELVAULT_STARTUP_TIMEOUT_S``; then it gives up with ``StartupTimeout`` (the service exits
non-zero with that message). ``Backoff`` is the schedule; ``Startup.wait_for`` runs it.

Both are tenacity (as the storage retries are): its per-call hooks take our own clock and sleep
(tests run the schedule without waiting), a stop at the deadline shared by every wait, and our
one log line per attempt. Cancelling the waiting task (SIGTERM, see ``lifecycle.py``) ends the
wait at once.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NoReturn, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_exponential,
    wait_random_exponential,
)
from tenacity.wait import wait_base

from reelvault_common.runtime.nats_servers import redact_url
from reelvault_common.runtime.settings import ServiceSettings

log = logging.getLogger("reelvault_common.runtime.startup")

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with jitter (a tenacity wait strategy, ``wait``).

    Before attempt ``n + 1`` wait between ``(1 - jitter) * c`` and ``c`` seconds, where
    ``c = min(cap_s, base_s * factor ** (n - 1))``: 0.5, 1, 2, 4, 8, 10, 10, ... by default.
    The jitter spreads replicas that started together so they do not retry in lockstep.
    """

    base_s: float = 0.5
    cap_s: float = 10.0
    factor: float = 2.0
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.cap_s < self.base_s or self.factor < 1:
            raise ValueError("backoff needs 0 < base_s <= cap_s and factor >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter is a fraction between 0 and 1")

    def wait(self) -> wait_base:
        """The schedule as a tenacity wait strategy: a fixed ``1 - jitter`` share of the
        ceiling plus a random share of up to ``jitter`` of it."""
        fixed, spread = 1 - self.jitter, self.jitter
        return wait_exponential(
            multiplier=self.base_s * fixed, max=self.cap_s * fixed, exp_base=self.factor
        ) + wait_random_exponential(
            multiplier=self.base_s * spread, max=self.cap_s * spread, exp_base=self.factor
        )


class StartupTimeout(RuntimeError):
    """A dependency did not answer within the start-up deadline."""

    def __init__(
        self,
        what: str,
        where: str,
        attempts: int,
        waited_s: float,
        reason: str,
        timeout_s: float | None = None,
    ) -> None:
        limit = f"; REELVAULT_STARTUP_TIMEOUT_S={timeout_s:g}" if timeout_s is not None else ""
        super().__init__(
            f"gave up waiting for {what} at {where} after {waited_s:.1f}s "
            f"({attempts} attempt{'s' if attempts != 1 else ''}{limit}): {reason}"
        )
        self.what = what
        self.where = where
        self.attempts = attempts
        self.reason = reason


def causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps (SQLAlchemy's ``orig``, ``raise ... from``), outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 10:
        chain.append(current)
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return chain


def is_unreachable(exc: BaseException) -> bool:
    """Could this be "not up yet" (refused, unresolvable, timed out, reset)? Worth a retry."""
    return any(isinstance(cause, (OSError, TimeoutError)) for cause in causes(exc))


def describe_error(exc: BaseException) -> str:
    """A short, single-line reason for a failed attempt, without credentials."""
    cause = causes(exc)[-1]
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    if isinstance(cause, ConnectionRefusedError) or "Connect call failed" in text:
        reason = "connection refused"
    elif isinstance(cause, socket.gaierror):
        reason = f"cannot resolve the host ({cause.strerror or text})"
    elif isinstance(cause, TimeoutError) and not text:
        reason = "timed out"
    elif isinstance(cause, OSError) and cause.strerror:
        reason = cause.strerror[:1].lower() + cause.strerror[1:]
    else:
        reason = text or type(cause).__name__
    return redact_url(reason)[:300]


class Startup:
    """One process's start-up: every ``wait_for`` shares the deadline ``timeout_s`` from now.

    ``clock`` and ``sleep`` are injectable so the schedule can be tested without waiting."""

    def __init__(
        self,
        timeout_s: float,
        *,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        logger: logging.Logger | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.backoff = backoff or Backoff()
        self._clock = clock
        self._sleep = sleep
        self._log = logger or log
        self._began = clock()

    @classmethod
    def from_settings(cls, settings: ServiceSettings, **options: object) -> Startup:
        return cls(settings.startup_timeout_s, **options)  # type: ignore[arg-type]

    @property
    def elapsed_s(self) -> float:
        return self._clock() - self._began

    @property
    def remaining_s(self) -> float:
        return self.timeout_s - self.elapsed_s

    async def wait_for(
        self,
        what: str,
        where: str,
        step: Callable[[], Awaitable[T]],
        *,
        retryable: Callable[[BaseException], bool] = is_unreachable,
    ) -> T:
        """Run ``step`` until it succeeds; an error ``retryable`` says is "not up yet" is
        logged (``what`` at ``where``: never put credentials in ``where``) and retried after
        the backoff, until the deadline (then ``StartupTimeout``). Other errors propagate."""
        async for attempt in self._retrying(what, where, retryable):
            with attempt:
                result = await step()
            outcome = attempt.retry_state.outcome
            if outcome is not None and not outcome.failed:
                if attempt.retry_state.attempt_number > 1:
                    self._log.info(
                        "%s at %s answered (attempt %d)",
                        what, where, attempt.retry_state.attempt_number,
                    )
                return result
        raise AssertionError("unreachable: tenacity stops by returning or raising")

    def _retrying(
        self, what: str, where: str, retryable: Callable[[BaseException], bool]
    ) -> AsyncRetrying:
        schedule = self.backoff.wait()

        def wait_within_deadline(state: RetryCallState) -> float:
            # The last wait is cut to the time left, so one more attempt is made at the deadline.
            return max(0.0, min(schedule(state), self.remaining_s))

        def deadline_passed(state: RetryCallState) -> bool:
            return self.remaining_s <= 0

        def log_wait(state: RetryCallState) -> None:
            wait = state.next_action.sleep if state.next_action is not None else 0.0
            self._log.warning(
                "waiting for %s at %s (attempt %d): %s; retrying in %.1fs",
                what, where, state.attempt_number, describe_error(_failure(state)), wait,
            )

        async def pause(seconds: float) -> None:
            await self._sleep(seconds)

        def give_up(state: RetryCallState) -> NoReturn:
            error = _failure(state)
            raise StartupTimeout(
                what, where, state.attempt_number, self.elapsed_s, describe_error(error),
                self.timeout_s,
            ) from error

        return AsyncRetrying(
            sleep=pause,
            wait=wait_within_deadline,
            stop=deadline_passed,
            # Only errors, never a cancellation (SIGTERM while waiting) or an exit.
            retry=retry_if_exception(lambda exc: isinstance(exc, Exception) and retryable(exc)),
            before_sleep=log_wait,
            retry_error_callback=give_up,
        )


def _failure(state: RetryCallState) -> BaseException:
    error = state.outcome.exception() if state.outcome is not None else None
    assert error is not None, "tenacity only retries or gives up after a failed attempt"
    return error
