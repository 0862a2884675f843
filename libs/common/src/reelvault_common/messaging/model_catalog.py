"""The deployment's model catalog in NATS KV: the generator publishes it, every gateway watches
it (an ordered consumer: the current value at start, each change within milliseconds)."""

from __future__ import annotations

import logging

from nats.aio.client import Client
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue
from pydantic import ValidationError

from reelvault_common.messaging.flags import open_shared_bucket
from reelvault_common.messaging.kv_watch import KvWatch
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


class ModelCatalogWatch(KvWatch):
    """The published catalog, kept up to date in the background; ``fallback`` until the
    generator has published one (or when what is published does not decode)."""

    task_name = "model-catalog-watch"

    def __init__(self, bucket: KeyValue, fallback: ModelCatalog) -> None:
        super().__init__(bucket)
        self._fallback = fallback
        self.current = fallback
        self.published = False

    async def _watch(self) -> KeyValue.KeyWatcher:
        return await self._bucket.watch(CATALOG_KEY)

    def _apply(self, entry: KeyValue.Entry) -> bool:
        if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
            self.current, self.published = self._fallback, False
        else:
            try:
                self.current = ModelCatalog.from_json(entry.value)
                self.published = True
            except ValidationError as exc:
                log.error("the published model catalog does not decode: %s", exc)
                return False
        log.info("model catalog: %s", ", ".join(s.id for s in self.current.specs))
        return True
