"""The projection's micro-batcher: concurrent callers share one ``apply_many``, in the order
they came; a failed batch reaches every caller; a lone item goes at once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from reelvault_catalog.batching import Batcher, BatchFailed


class Recorder:
    def __init__(self, fail_on: str | None = None, pause: float = 0.0) -> None:
        self.calls: list[list[str]] = []
        self.fail_on = fail_on
        self.pause = pause

    async def apply_many(self, items: Sequence[str]) -> list[str]:
        self.calls.append(list(items))
        await asyncio.sleep(self.pause)
        if self.fail_on in items:
            raise ValueError(f"refused {self.fail_on}")
        return [item.upper() for item in items]


async def test_concurrent_items_share_batches_in_order_up_to_the_limit() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.apply_many, max_batch=4)
    results = await asyncio.gather(*(batcher.apply(f"e{i}") for i in range(10)))
    assert results == [f"E{i}" for i in range(10)]
    assert recorder.calls == [["e0", "e1", "e2", "e3"], ["e4", "e5", "e6", "e7"], ["e8", "e9"]]


async def test_a_lone_item_is_applied_at_once() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.apply_many, max_batch=64)
    assert await asyncio.wait_for(batcher.apply("solo"), timeout=1) == "SOLO"
    assert recorder.calls == [["solo"]]


async def test_items_arriving_during_a_batch_go_in_the_next_one() -> None:
    recorder = Recorder(pause=0.05)
    batcher = Batcher(recorder.apply_many, max_batch=64)
    first = asyncio.create_task(batcher.apply("a"))
    await asyncio.sleep(0.01)  # "a" is being applied
    later = await asyncio.gather(batcher.apply("b"), batcher.apply("c"))
    assert await first == "A" and later == ["B", "C"]
    assert recorder.calls == [["a"], ["b", "c"]]


async def test_a_failed_batch_fails_every_item_of_it_with_the_cause() -> None:
    recorder = Recorder(fail_on="bad")
    batcher = Batcher(recorder.apply_many, max_batch=8)
    outcomes = await asyncio.gather(*(batcher.apply(i) for i in ("ok", "bad", "fine")),
                                    return_exceptions=True)
    assert all(isinstance(o, BatchFailed) for o in outcomes)
    assert isinstance(outcomes[0].__cause__, ValueError)  # type: ignore[union-attr]
    assert await batcher.apply("next") == "NEXT"  # the batcher carries on


async def test_close_cancels_a_batch_nobody_waits_for() -> None:
    recorder = Recorder(pause=30)
    batcher = Batcher(recorder.apply_many, max_batch=8)
    waiter = asyncio.create_task(batcher.apply("stuck"))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await asyncio.wait_for(batcher.close(), timeout=1)
