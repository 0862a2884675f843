"""``stop_consuming``: after the subscribers stopped, handlers cancelled at the end of the grace
period have handed their messages back, and messages fetched that no handler ever started are
handed back too (``track_fetched``): none waits out ack_wait."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from reelvault_common.messaging.consuming import stop_consuming, track_fetched


@dataclass
class FakeMsg:
    name: str
    _ackd: bool = False
    naks: int = 0

    async def nak(self, delay: float | None = None) -> None:
        self.naks += 1
        self._ackd = True

    async def ack(self) -> None:
        self._ackd = True


@dataclass
class FakePull:
    batches: list[list[FakeMsg]]

    async def fetch(self, batch: int = 1, **_: Any) -> list[FakeMsg]:
        return self.batches.pop(0)


@dataclass
class FakeSubscriber:
    subscription: Any
    stopped: bool = False

    async def stop(self) -> None:
        self.stopped = True


@dataclass
class FakeBroker:
    subscribers: list[FakeSubscriber]
    connection: object = field(default_factory=object)
    stopped: bool = False

    async def stop(self) -> None:
        self.stopped = True


async def test_fetched_messages_no_handler_started_are_handed_back_on_stop() -> None:
    done, unstarted, also_unstarted = FakeMsg("done"), FakeMsg("unstarted"), FakeMsg("too")
    pull = FakePull([[done, unstarted], [also_unstarted]])
    rpc = FakeSubscriber(subscription=object())  # a core subscription: nothing to track
    broker = FakeBroker([FakeSubscriber(pull), rpc])
    track_fetched(broker)  # type: ignore[arg-type]
    track_fetched(broker)  # type: ignore[arg-type]  # idempotent: fetch is wrapped once
    got = await pull.fetch(batch=2) + await pull.fetch(batch=2)
    assert [m.name for m in got] == ["done", "unstarted", "too"]
    await done.ack()  # a handler took and finished this one

    await asyncio.wait_for(stop_consuming(broker), timeout=5)  # type: ignore[arg-type]

    assert all(s.stopped for s in broker.subscribers) and broker.stopped
    assert (done.naks, unstarted.naks, also_unstarted.naks) == (0, 1, 1)


async def test_a_broker_never_tracked_just_stops() -> None:
    broker = FakeBroker([FakeSubscriber(FakePull([]))])
    await asyncio.wait_for(stop_consuming(broker), timeout=5)  # type: ignore[arg-type]
    assert broker.stopped
