"""Copy slots by deadline: earliest ``expires_at`` first, no deadline last, ties FIFO."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from reelvault_archiver.scheduling import DeadlineScheduler, SchedulerClosed, deadline_priority

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def at(minutes: float | None) -> datetime | None:
    return None if minutes is None else T0 + timedelta(minutes=minutes)


async def wait_for(condition: object, timeout_s: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


async def run_in_order(
    scheduler: DeadlineScheduler, deadlines: list[float | None], order: list[str]
) -> list[asyncio.Task[None]]:
    async def copy(name: str, expires: datetime | None) -> None:
        async with scheduler.slot(expires):
            order.append(name)
            await asyncio.sleep(0.005)

    return [
        asyncio.create_task(copy(f"m{minutes}", at(minutes)), name=f"m{minutes}")
        for minutes in deadlines
    ]


async def test_waiting_copies_start_earliest_deadline_first() -> None:
    scheduler = DeadlineScheduler(1, gather_s=0)
    order: list[str] = []
    release = asyncio.Event()

    async def busy() -> None:
        async with scheduler.slot(at(0)):
            order.append("busy")
            await release.wait()

    first = asyncio.create_task(busy())
    await wait_for(lambda: order == ["busy"])
    tasks = await run_in_order(scheduler, [50, None, 10, 30, 5, 10.5], order)
    await wait_for(lambda: scheduler.waiting == 6)
    release.set()
    await asyncio.gather(first, *tasks)
    assert order == ["busy", "m5", "m10", "m10.5", "m30", "m50", "mNone"]


async def test_a_batch_arriving_at_an_idle_scheduler_is_ordered_too() -> None:
    # Messages of one pulled batch reach the handler within microseconds of each other.
    scheduler = DeadlineScheduler(1, gather_s=0.05)
    order: list[str] = []
    tasks = await run_in_order(scheduler, [40, 20, 30, 10], order)
    await asyncio.gather(*tasks)
    assert order == ["m10", "m20", "m30", "m40"]


async def test_same_deadline_keeps_arrival_order_and_slots_are_shared() -> None:
    scheduler = DeadlineScheduler(2, gather_s=0)
    running = 0
    peak = 0
    order: list[int] = []

    async def copy(index: int) -> None:
        nonlocal running, peak
        async with scheduler.slot(at(7)):
            running += 1
            peak = max(peak, running)
            order.append(index)
            await asyncio.sleep(0.01)
            running -= 1

    await asyncio.gather(*(copy(i) for i in range(6)))
    assert peak == 2
    assert order == list(range(6))
    assert scheduler.free_slots == 2


async def test_a_cancelled_waiter_gives_its_turn_away_and_leaks_no_slot() -> None:
    scheduler = DeadlineScheduler(1, gather_s=0)
    release = asyncio.Event()
    order: list[str] = []

    async def busy() -> None:
        async with scheduler.slot(at(0)):
            await release.wait()

    async def copy(name: str, expires: datetime | None) -> None:
        async with scheduler.slot(expires):
            order.append(name)

    holder = asyncio.create_task(busy())
    await wait_for(lambda: scheduler.free_slots == 0)
    early = asyncio.create_task(copy("early", at(1)))
    late = asyncio.create_task(copy("late", at(2)))
    await wait_for(lambda: scheduler.waiting == 2)
    early.cancel()
    release.set()
    await asyncio.gather(holder, late)
    with pytest.raises(asyncio.CancelledError):
        await early
    assert order == ["late"]
    assert scheduler.free_slots == 1


async def test_closing_hands_waiting_copies_back_and_lets_running_ones_finish() -> None:
    scheduler = DeadlineScheduler(1, gather_s=0)
    release = asyncio.Event()
    finished: list[str] = []

    async def running() -> None:
        async with scheduler.slot(at(0)):
            await release.wait()
            finished.append("running")

    async def waiting() -> None:
        async with scheduler.slot(at(1)):
            finished.append("waiting")

    holder = asyncio.create_task(running())
    await wait_for(lambda: scheduler.free_slots == 0)
    waiter = asyncio.create_task(waiting())
    await wait_for(lambda: scheduler.waiting == 1)
    scheduler.close()
    with pytest.raises(SchedulerClosed):
        await waiter
    release.set()
    await holder
    assert finished == ["running"]
    with pytest.raises(SchedulerClosed):
        async with scheduler.slot(at(2)):
            pass


def test_no_deadline_sorts_after_every_deadline() -> None:
    assert deadline_priority(at(-60)) < deadline_priority(at(0)) < deadline_priority(None)
    with pytest.raises(ValueError, match="at least 1"):
        DeadlineScheduler(0)
