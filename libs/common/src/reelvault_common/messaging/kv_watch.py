"""A value in NATS KV kept up to date in the background: the base of the gateways' watches.

The watcher is an ordered consumer on the bucket: it gets every current value at start and
each change within milliseconds, and resumes by itself after a reconnect."""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod

from nats.js.kv import KeyValue

__all__ = ["KvWatch"]


class KvWatch(ABC):
    """Follows a bucket in a background task; a subclass says what to watch and how an entry
    changes what it holds."""

    task_name = "kv-watch"

    def __init__(self, bucket: KeyValue) -> None:
        self._bucket = bucket
        self._task: asyncio.Task[None] | None = None
        self._loaded = asyncio.Event()

    @abstractmethod
    async def _watch(self) -> KeyValue.KeyWatcher:
        """Open the watcher (one key, or the whole bucket)."""

    @abstractmethod
    def _apply(self, entry: KeyValue.Entry) -> bool:
        """Take in a changed or deleted entry; False when it was passed over."""

    async def start(self, wait_s: float = 5.0) -> None:
        """Start watching; returns once the current values are known (or after ``wait_s``)."""
        watcher = await self._watch()
        self._task = asyncio.create_task(self._follow(watcher), name=self.task_name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._loaded.wait(), wait_s)

    async def _follow(self, watcher: KeyValue.KeyWatcher) -> None:
        try:
            async for entry in watcher:
                # None: the initial values are all in.
                if entry is None or self._apply(entry):
                    self._loaded.set()
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
