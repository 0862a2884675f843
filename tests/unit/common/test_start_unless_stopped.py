"""``start_unless_stopped``: a SIGTERM while a service is still starting (waiting for NATS)
stops it cleanly; a start-up that gives up ends the process with status 1."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from reelvault_common.runtime.lifecycle import start_unless_stopped, wait_for_stop_signal
from reelvault_common.runtime.startup import StartupTimeout


def send_sigterm_to_self() -> None:
    # Only while the event loop handles it: never let a stray SIGTERM kill the test run.
    assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None)
    os.kill(os.getpid(), signal.SIGTERM)


class Service:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.waiting = asyncio.Event()

    async def start_forever(self) -> None:
        self.events.append("start")
        self.waiting.set()
        try:
            await asyncio.sleep(3600)  # "waiting for NATS"
        except asyncio.CancelledError:
            self.events.append("start cancelled")
            raise

    async def stop(self) -> None:
        self.events.append("stop")


async def test_sigterm_during_start_up_cancels_it_and_stops() -> None:
    service = Service()

    async def terminate_once_waiting() -> None:
        await service.waiting.wait()
        send_sigterm_to_self()

    killer = asyncio.create_task(terminate_once_waiting())
    sig = await asyncio.wait_for(
        start_unless_stopped(service.start_forever, service.stop, service="test"), 10
    )
    await killer
    assert sig == signal.SIGTERM
    assert service.events == ["start", "start cancelled", "stop"]


async def test_a_start_up_that_gives_up_exits_1_with_the_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = Service()

    async def give_up() -> None:
        raise StartupTimeout("NATS", "nats://127.0.0.1:1", 3, 2.0, "connection refused", 2)

    with pytest.raises(SystemExit) as raised:
        await start_unless_stopped(give_up, service.stop, service="test")
    assert raised.value.code == 1
    assert "test cannot start: gave up waiting for NATS at nats://127.0.0.1:1" in caplog.text
    await asyncio.sleep(0)  # the listener's clean-up runs
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


async def test_after_start_up_the_same_listener_waits_for_the_stop_signal() -> None:
    service = Service()

    async def quick_start() -> None:
        service.events.append("started")

    assert await start_unless_stopped(quick_start, service.stop, service="test") is None
    # No gap: the handler installed for start-up is still there.
    assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None)
    waiting = asyncio.create_task(wait_for_stop_signal())
    await asyncio.sleep(0)
    send_sigterm_to_self()
    assert await asyncio.wait_for(waiting, 10) == signal.SIGTERM
    assert service.events == ["started"]  # stopping is the caller's job now


async def test_other_start_up_errors_propagate() -> None:
    service = Service()

    async def broken() -> None:
        raise ValueError("bad bucket rules")

    with pytest.raises(ValueError, match="bad bucket rules"):
        await start_unless_stopped(broken, service.stop, service="test")
    assert service.events == []
