"""Start-up: wait for what a service depends on (NATS, PostgreSQL) instead of crashing.

A service started before its broker or database (compose, Kubernetes, a restarted node) retries
the connection with capped exponential backoff and jitter, logging one line per attempt, until
``REELVAULT_STARTUP_TIMEOUT_S``; then it gives up with ``StartupTimeout`` (the service exits
non-zero with that message). ``Backoff`` is the pure schedule; ``Startup.wait_for`` runs it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from reelvault_common.runtime.nats_servers import redact_url
from reelvault_common.runtime.settings import ServiceSettings

log = logging.getLogger("reelvault_common.runtime.startup")

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with jitter.

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

    def ceiling(self, attempt: int) -> float:
        """The longest wait after failed attempt ``attempt`` (counting from 1)."""
        try:
            return min(self.cap_s, self.base_s * self.factor ** max(attempt - 1, 0))
        except OverflowError:  # far past the cap
            return self.cap_s

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait after failed attempt ``attempt``: the ceiling minus up to ``jitter`` of it."""
        ceiling = self.ceiling(attempt)
        return ceiling * (1 - self.jitter * (rng or random).random())

    def next_wait(
        self,
        attempt: int,
        *,
        elapsed_s: float,
        timeout_s: float,
        rng: random.Random | None = None,
    ) -> float | None:
        """How long to wait before the next attempt, or None when ``timeout_s`` has passed.

        The last wait is cut to the time left, so one more attempt is made at the deadline."""
        remaining = timeout_s - elapsed_s
        if remaining <= 0:
            return None
        return min(self.delay(attempt, rng), remaining)


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

    ``clock``, ``sleep`` and ``rng`` are injectable so the schedule can be tested without
    waiting."""

    def __init__(
        self,
        timeout_s: float,
        *,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: random.Random | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.backoff = backoff or Backoff()
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._log = logger or log
        self._began = clock()

    @classmethod
    def from_settings(cls, settings: ServiceSettings, **options: object) -> Startup:
        return cls(settings.startup_timeout_s, **options)  # type: ignore[arg-type]

    @property
    def elapsed_s(self) -> float:
        return self._clock() - self._began

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
        attempt = 0
        while True:
            attempt += 1
            try:
                result = await step()
            except Exception as exc:
                if not retryable(exc):
                    raise
                reason = describe_error(exc)
                wait = self.backoff.next_wait(
                    attempt, elapsed_s=self.elapsed_s, timeout_s=self.timeout_s, rng=self._rng
                )
                if wait is None:
                    raise StartupTimeout(
                        what, where, attempt, self.elapsed_s, reason, self.timeout_s
                    ) from exc
                self._log.warning(
                    "waiting for %s at %s (attempt %d): %s; retrying in %.1fs",
                    what, where, attempt, reason, wait,
                )
                await self._sleep(wait)
                continue
            if attempt > 1:
                self._log.info("%s at %s answered (attempt %d)", what, where, attempt)
            return result
