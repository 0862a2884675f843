"""Runtime flags in NATS KV: set by operators (the CLI), watched by every gateway.

The watcher is an ordered consumer on the bucket: it gets every current value at start and
each change within milliseconds, and resumes by itself after a reconnect."""

from __future__ import annotations

import logging

from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from reelvault_common.contracts.flags import FLAG_NAMES, FlagName, Flags, encode_flag
from reelvault_common.messaging.kv_watch import KvWatch
from reelvault_common.messaging.topology import Topology

log = logging.getLogger(__name__)


async def open_shared_bucket(
    connection: Client, topology: Topology, bucket: str, timeout_s: float = 5.0
) -> KeyValue:
    """A settings-like bucket every replica reads, created on first use (latest value per key,
    file storage)."""
    js = connection.jetstream(timeout=timeout_s)
    try:
        return await js.key_value(bucket)
    except (BucketNotFoundError, NotFoundError):
        return await js.create_key_value(
            KeyValueConfig(
                bucket=bucket,
                history=1,
                storage=StorageType.FILE,
                replicas=topology.stream_replicas,
            )
        )


async def open_flags_bucket(
    connection: Client, topology: Topology, timeout_s: float = 5.0
) -> KeyValue:
    """The flags bucket (one value per flag)."""
    return await open_shared_bucket(connection, topology, topology.flags_bucket, timeout_s)


async def read_flags(bucket: KeyValue) -> Flags:
    flags = Flags()
    for name in FLAG_NAMES:
        try:
            entry = await bucket.get(name)
        except KeyNotFoundError:
            continue
        flags = flags.with_value(name, entry.value)
    return flags


async def set_flag(bucket: KeyValue, name: FlagName, value: bool | list[str]) -> None:
    await bucket.put(name, encode_flag(value))


class FlagWatch(KvWatch):
    """The current flags, kept up to date in the background."""

    task_name = "flag-watch"

    def __init__(self, bucket: KeyValue) -> None:
        super().__init__(bucket)
        self.current = Flags()

    async def _watch(self) -> KeyValue.KeyWatcher:
        return await self._bucket.watchall()

    def _apply(self, entry: KeyValue.Entry) -> bool:
        if entry.key not in FLAG_NAMES:
            return False
        name: FlagName = entry.key
        deleted = entry.operation in (KV_DEL, KV_PURGE)
        self.current = self.current.with_value(name, None if deleted else entry.value)
        log.info("flag %s is now %s", name, getattr(self.current, name))
        return True
