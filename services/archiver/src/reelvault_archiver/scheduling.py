"""Copy slots handed out by deadline: the provider's ``expires_at`` comes first.

The archiver takes in more messages than it copies at once (each consumer's ``workers``, pulled
in batches); each waits here for one of ``max_workers`` copy slots, kept alive meanwhile by the
consumer runner's heartbeat. Waiting copies get a slot earliest ``expires_at`` first (no
deadline: last), ties in arrival order. A slot that falls free is handed on at once; a copy
arriving at an idle archiver waits ``gather_s`` (a few ms) first, so the messages of one pulled
batch are ordered together rather than first come, first served.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime


class SchedulerClosed(Exception):
    """The archiver is stopping: waiting copies are handed back, not started."""


def deadline_priority(expires_at: datetime | None) -> float:
    """Smaller goes first: seconds since the epoch of ``expires_at``; no deadline goes last."""
    return math.inf if expires_at is None else expires_at.timestamp()


@dataclass(order=True)
class _Waiter:
    priority: float
    sequence: int
    future: asyncio.Future[None] = field(compare=False)


class DeadlineScheduler:
    def __init__(self, slots: int, *, gather_s: float = 0.02) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self._free = slots
        self._gather_s = gather_s
        self._heap: list[_Waiter] = []
        self._sequence = itertools.count()
        self._dispatch_pending: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def waiting(self) -> int:
        return sum(1 for waiter in self._heap if not waiter.future.done())

    @property
    def free_slots(self) -> int:
        return self._free

    @contextlib.asynccontextmanager
    async def slot(self, expires_at: datetime | None) -> AsyncIterator[None]:
        """Hold a copy slot for the body; ``SchedulerClosed`` if the archiver is stopping."""
        if self._closed:
            raise SchedulerClosed("the archiver is stopping")
        loop = asyncio.get_running_loop()
        waiter = _Waiter(deadline_priority(expires_at), next(self._sequence), loop.create_future())
        heapq.heappush(self._heap, waiter)
        self._schedule_dispatch(loop)
        try:
            await waiter.future
        except BaseException:
            if waiter.future.done() and not waiter.future.cancelled() and not (
                waiter.future.exception()
            ):
                self._release()  # granted, then cancelled before it could start
            else:
                waiter.future.cancel()  # skipped by _dispatch
            raise
        try:
            yield
        finally:
            self._release()

    def close(self) -> None:
        """Refuse new copies and hand every waiting one back (``SchedulerClosed``)."""
        self._closed = True
        while self._heap:
            waiter = heapq.heappop(self._heap)
            if not waiter.future.done():
                waiter.future.set_exception(SchedulerClosed("the archiver is stopping"))

    def _schedule_dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._free > 0 and self._dispatch_pending is None:
            self._dispatch_pending = loop.call_later(self._gather_s, self._dispatch)

    def _release(self) -> None:
        self._free += 1
        self._dispatch()

    def _dispatch(self) -> None:
        self._dispatch_pending = None
        while self._free > 0 and self._heap:
            waiter = heapq.heappop(self._heap)
            if waiter.future.done():  # cancelled while waiting
                continue
            self._free -= 1
            waiter.future.set_result(None)
