"""Start-up waits: the backoff schedule (pure) and ``Startup.wait_for`` on a fake clock."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest
from nats.errors import AuthorizationError, NoRespondersError, NoServersError
from reelvault_common.messaging.nats_client import NatsUnreachable, is_nats_unreachable
from reelvault_common.runtime.nats_servers import parse_nats_servers
from reelvault_common.runtime.startup import (
    Backoff,
    Startup,
    StartupTimeout,
    describe_error,
    is_unreachable,
)
from tenacity import RetryCallState

# --- the schedule ---------------------------------------------------------------------------


def waits(backoff: Backoff, attempts: range | list[int]) -> list[float]:
    """The waits after failed attempts ``attempts`` (counting from 1)."""
    schedule = backoff.wait()
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    result = []
    for attempt in attempts:
        state.attempt_number = attempt
        result.append(schedule(state))
    return result


def test_without_jitter_waits_double_from_the_base_up_to_the_cap() -> None:
    backoff = Backoff(base_s=0.5, cap_s=10.0, factor=2.0, jitter=0.0)
    assert waits(backoff, range(1, 9)) == [0.5, 1, 2, 4, 8, 10, 10, 10]
    assert waits(backoff, [10_000]) == [10.0]  # no overflow far past the cap


def test_jitter_stays_within_its_fraction_of_the_ceiling_and_varies() -> None:
    backoff = Backoff(base_s=1.0, cap_s=8.0, jitter=0.25)
    for attempt in range(1, 10):
        ceiling = min(8.0, 2.0 ** (attempt - 1))
        delays = waits(backoff, [attempt] * 200)
        assert all(0.75 * ceiling <= d <= ceiling for d in delays)
        assert len(set(delays)) > 100  # replicas do not retry in lockstep


@pytest.mark.parametrize(
    "bad", [dict(base_s=0), dict(base_s=2, cap_s=1), dict(factor=0.5), dict(jitter=1.5)]
)
def test_a_nonsensical_schedule_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"backoff needs|jitter is a fraction"):
        Backoff(**bad)


# --- Startup.wait_for on a fake clock ---------------------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def startup(fake: FakeTime, timeout_s: float = 30.0) -> Startup:
    return Startup(timeout_s, backoff=Backoff(base_s=0.5, cap_s=4.0, jitter=0.0),
                   clock=fake.clock, sleep=fake.sleep)


async def test_retries_until_the_dependency_answers_and_logs_each_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeTime()
    calls = 0

    async def connect() -> str:
        nonlocal calls
        calls += 1
        if calls < 4:
            raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 4222)")
        return "connected"

    with caplog.at_level(logging.INFO, logger="reelvault_common.runtime.startup"):
        result = await startup(fake).wait_for("NATS", "nats://127.0.0.1:4222", connect)
    assert result == "connected"
    assert fake.sleeps == [0.5, 1.0, 2.0]
    waiting = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert waiting == [
        "waiting for NATS at nats://127.0.0.1:4222 (attempt 1): connection refused; "
        "retrying in 0.5s",
        "waiting for NATS at nats://127.0.0.1:4222 (attempt 2): connection refused; "
        "retrying in 1.0s",
        "waiting for NATS at nats://127.0.0.1:4222 (attempt 3): connection refused; "
        "retrying in 2.0s",
    ]


async def test_gives_up_at_the_deadline_with_a_clear_message() -> None:
    fake = FakeTime()

    async def never() -> None:
        fake.now += 0.1  # each attempt takes a little time
        raise OSError(111, "Connection refused")

    with pytest.raises(StartupTimeout) as raised:
        await startup(fake, timeout_s=10.0).wait_for("PostgreSQL", "postgresql://db", never)
    message = str(raised.value)
    assert message.startswith("gave up waiting for PostgreSQL at postgresql://db after 10.")
    assert "REELVAULT_STARTUP_TIMEOUT_S=10" in message
    assert message.endswith(": connection refused")
    assert fake.now == pytest.approx(10.1)  # the last wait was cut to the deadline
    assert sum(fake.sleeps) < 10.0


async def test_an_error_that_is_not_about_reachability_is_not_retried() -> None:
    fake = FakeTime()

    async def refused() -> None:
        raise AuthorizationError()

    with pytest.raises(AuthorizationError):
        await startup(fake).wait_for("NATS", "nats://h:1", refused,
                                     retryable=is_nats_unreachable)
    assert fake.sleeps == []


async def test_one_deadline_is_shared_by_every_wait() -> None:
    fake = FakeTime()
    run = startup(fake, timeout_s=5.0)
    fake.now = 4.9  # an earlier wait used most of it

    async def down() -> None:
        raise TimeoutError()

    with pytest.raises(StartupTimeout) as raised:
        await run.wait_for("NATS", "nats://h:1", down)
    assert raised.value.attempts == 2
    assert fake.sleeps == [pytest.approx(0.1)]


async def test_a_success_after_waiting_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeTime()
    outcomes: list[Exception | None] = [ConnectionRefusedError(111, "refused"), None]

    async def connect() -> str:
        error = outcomes.pop(0)
        if error is not None:
            raise error
        return "up"

    with caplog.at_level(logging.INFO, logger="reelvault_common.runtime.startup"):
        assert await startup(fake).wait_for("PostgreSQL", "postgresql://db", connect) == "up"
    assert [r.getMessage() for r in caplog.records] == [
        "waiting for PostgreSQL at postgresql://db (attempt 1): connection refused; "
        "retrying in 0.5s",
        "PostgreSQL at postgresql://db answered (attempt 2)",
    ]


async def test_cancelling_the_wait_stops_it_at_once() -> None:
    """What SIGTERM does while a service waits: its start-up task is cancelled mid-sleep."""
    run = Startup(60.0, backoff=Backoff(base_s=30.0, cap_s=30.0, jitter=0.0))
    attempts = 0

    async def down() -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionRefusedError(111, "refused")

    waiting = asyncio.create_task(run.wait_for("NATS", "nats://h:1", down))
    await asyncio.sleep(0.05)  # the first attempt failed; now in its 30 s wait
    started = time.monotonic()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert time.monotonic() - started < 1.0
    assert attempts == 1


# --- what counts as "not up yet", and how it is told -------------------------------------------


def test_reachability_errors_are_recognised_through_wrapping() -> None:
    class Wrapped(Exception):
        def __init__(self, orig: BaseException) -> None:
            super().__init__("(wrapped) something")
            self.orig = orig

    assert is_unreachable(ConnectionRefusedError())
    assert is_unreachable(socket.gaierror(-2, "Name or service not known"))
    assert is_unreachable(Wrapped(ConnectionResetError()))
    assert not is_unreachable(ValueError("bad config"))
    assert is_nats_unreachable(NoServersError())
    assert is_nats_unreachable(NoRespondersError())  # JetStream not ready yet
    assert not is_nats_unreachable(AuthorizationError())


def test_reasons_are_short_and_carry_no_credentials() -> None:
    assert describe_error(ConnectionRefusedError(111, "Connect call failed")) == (
        "connection refused")
    assert describe_error(OSError("Multiple exceptions: [Errno 111] Connect call failed "
                                  "('127.0.0.1', 5432), [Errno 99] ...")) == "connection refused"
    assert describe_error(socket.gaierror(-2, "Name or service not known")) == (
        "cannot resolve the host (Name or service not known)")
    assert describe_error(TimeoutError()) == "timed out"
    assert describe_error(FileNotFoundError(2, "No such file or directory")) == (
        "no such file or directory")
    leaky = RuntimeError("cannot reach nats://admin:pw123@10.0.0.1:4222\nmore lines")
    assert describe_error(leaky) == "cannot reach nats://***@10.0.0.1:4222"


def test_an_unreachable_cluster_is_summarised_once_per_reason() -> None:
    servers = parse_nats_servers("nats://127.0.0.1:1,nats://127.0.0.1:2")
    error = NatsUnreachable(servers, [ConnectionRefusedError(111, "x"),
                                      ConnectionRefusedError(111, "y"), TimeoutError()])
    assert describe_error(error) == "none of 2 servers answered: connection refused; timed out"
    assert is_nats_unreachable(error)
