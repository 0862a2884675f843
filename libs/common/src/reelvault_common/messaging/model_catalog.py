"""The deployment's model catalog in NATS KV: the generator publishes it, every gateway watches
it (an ordered consumer: the current value at start, each change within milliseconds)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.aio.client import Client
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue
from pydantic import ValidationError

from reelvault_common.messaging.flags import open_shared_bucket
from reelvault_common.messaging.topology import Topology
from reelvault_common.providers.models import ModelCatalog

log = logging.getLogger(__name__)

CATALOG_KEY = "catalog"


async def open_models_bucket(connection: Client, topology: Topology) -> KeyValue:
    return await open_shared_bucket(connection, topology, topology.models_bucket)


async def publish_catalog(bucket: KeyValue, catalog: ModelCatalog) -> None:
    """Replace the published catalog (a put of identical bytes still wakes watchers, so the
    caller publishes only when it changed)."""
    await bucket.put(CATALOG_KEY, catalog.to_json())


class ModelCatalogWatch:
    """The published catalog, kept up to date in the background; ``fallback`` until the
    generator has published one (or when what is published does not decode)."""

    def __init__(self, bucket: KeyValue, fallback: ModelCatalog) -> None:
        self._bucket = bucket
        self._fallback = fallback
        self.current = fallback
        self.published = False
        self._task: asyncio.Task[None] | None = None
        self._loaded = asyncio.Event()

    async def start(self, wait_s: float = 5.0) -> None:
        watcher = await self._bucket.watch(CATALOG_KEY)
        self._task = asyncio.create_task(self._follow(watcher), name="model-catalog-watch")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._loaded.wait(), wait_s)

    async def _follow(self, watcher: KeyValue.KeyWatcher) -> None:
        try:
            async for entry in watcher:
                if entry is None:
                    self._loaded.set()
                    continue
                if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
                    self.current, self.published = self._fallback, False
                else:
                    try:
                        self.current = ModelCatalog.from_json(entry.value)
                        self.published = True
                    except ValidationError as exc:
                        log.error("the published model catalog does not decode: %s", exc)
                        continue
                log.info("model catalog: %s", ", ".join(s.id for s in self.current.specs))
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
