"""Micro-batching of the projection: events handed in by the consumer's concurrent handlers are
applied together, one transaction per batch.

Each handler still owns its message (it acks, naks or dead-letters it by itself); it only waits
here for what its event did. Under load many handlers are waiting at once and a transaction
carries up to ``max_batch`` events; when the stream is quiet a lone event goes alone, at once.
Batches run one after the other, so the events of one video are applied in the order their
handlers handed them in. If a batch fails, every handler of it gets the error and retries its
own event alone: a poison event then fails by itself and healthy ones pass.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class BatchFailed(Exception):
    """The batch this item was in failed; ``__cause__`` is why. Retry the item alone."""

    def __init__(self, size: int) -> None:
        super().__init__(f"a batch of {size} failed")
        self.size = size


class Batcher(Generic[Item, Result]):
    def __init__(
        self, apply_many: Callable[[Sequence[Item]], Awaitable[list[Result]]], max_batch: int
    ) -> None:
        self._apply_many = apply_many
        self._max_batch = max(1, max_batch)
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._runner: asyncio.Task[None] | None = None
        self.batches = 0  # how many transactions ran (for tests and logs)

    async def apply(self, item: Item) -> Result:
        """What ``item`` did, once its batch is applied; ``BatchFailed`` if the batch failed."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name="projection-batches")
        return await future  # cancelled (a stop): the batch still runs, nobody waits

    async def _run(self) -> None:
        # One turn of the loop lets the other handlers of the same fetch hand in theirs.
        await asyncio.sleep(0)
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                results = await self._apply_many([item for item, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        failed = BatchFailed(len(batch))
                        failed.__cause__ = exc
                        future.set_exception(failed)
                continue
            finally:
                self.batches += 1
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def close(self) -> None:
        """Stop (after the consumer stopped, before the connection pool goes): every handler
        is done or was cancelled and has handed its message back, so a batch still running
        has nobody waiting for it; it is cancelled (its transaction rolls back)."""
        runner, self._runner = self._runner, None
        if runner is not None and not runner.done():
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner
        for _, future in self._pending:
            if not future.done():
                future.cancel()
        self._pending.clear()
