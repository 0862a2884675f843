"""The outcome of the last backup in NATS KV, for monitoring: ``backup.last_success`` (the unix
time, as text) and ``backup.last_failure`` (the unix time, a space, a short reason) in the
bucket ``Topology(namespace).kv_bucket("ops", "state")``, created on first use (history 1)."""

from __future__ import annotations

from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BadRequestError, BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue
from reelvault_common.messaging.nats_client import connect_nats
from reelvault_common.messaging.topology import Topology
from reelvault_common.runtime.settings import ServiceSettings

LAST_SUCCESS_KEY = "backup.last_success"
LAST_FAILURE_KEY = "backup.last_failure"
STATE_SERVICE, STATE_PURPOSE = "ops", "state"


def state_bucket_name(topology: Topology) -> str:
    return topology.kv_bucket(STATE_SERVICE, STATE_PURPOSE)


async def open_state_bucket(connection: Client, topology: Topology,
                            timeout_s: float = 5.0) -> KeyValue:
    js = connection.jetstream(timeout=timeout_s)
    name = state_bucket_name(topology)
    try:
        return await js.key_value(name)
    except (BucketNotFoundError, NotFoundError):
        pass
    config = KeyValueConfig(bucket=name, history=1, storage=StorageType.FILE,
                            replicas=topology.stream_replicas)
    try:
        return await js.create_key_value(config)
    except BadRequestError:  # made by someone else meanwhile
        return await js.key_value(name)


async def record_state(settings: ServiceSettings, key: str, value: str) -> None:
    """Put ``key`` = ``value``; raises what connecting or writing raised."""
    connection = await connect_nats(settings.nats_servers, name="reelvault-backup",
                                    connect_timeout=3.0, max_reconnect_attempts=0)
    try:
        bucket = await open_state_bucket(connection, Topology.from_settings(settings),
                                         settings.rpc_timeout_s)
        await bucket.put(key, value.encode())
    finally:
        await connection.close()
