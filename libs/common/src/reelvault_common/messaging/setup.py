"""Creating or reconciling the streams and durable consumers before a service consumes."""

from __future__ import annotations

from collections.abc import Sequence

from nats.aio.client import Client as NatsClient

from reelvault_common.messaging.deadletter import ensure_dead_letter_stream
from reelvault_common.messaging.nats_client import connect_nats, is_nats_unreachable
from reelvault_common.messaging.topology import (
    ConsumerPolicy,
    Topology,
    ensure_consumer,
    ensure_stream,
)
from reelvault_common.runtime.settings import ServiceSettings
from reelvault_common.runtime.startup import Startup


async def prepare_topology(
    settings: ServiceSettings, topology: Topology, policies: Sequence[ConsumerPolicy] = ()
) -> None:
    """The lifecycle stream, the dead-letter stream and this service's durable consumers.

    Connects once (``NatsUnreachable`` when no server answers): at start-up, run it under
    ``Startup.wait_for`` (see ``wait_for_nats``)."""
    nc = await connect_nats(
        # Short-lived: a cut connection fails the set-up (retried at start-up) instead of
        # reconnecting for long (nats-py reads 0 as "forever").
        settings.nats_servers, name="reelvault-setup", connect_timeout=5,
        max_reconnect_attempts=1, reconnect_time_wait=0.5,
    )
    try:
        js = nc.jetstream()
        await ensure_stream(js, topology)
        await ensure_dead_letter_stream(js, topology)
        for policy in policies:
            await ensure_consumer(js, topology.stream, policy)
    finally:
        await nc.drain()


async def wait_for_nats(
    startup: Startup,
    settings: ServiceSettings,
    topology: Topology,
    policies: Sequence[ConsumerPolicy] = (),
) -> None:
    """``prepare_topology`` at start-up: retried (one log line per attempt) while no server of
    ``NATS_URL`` answers or JetStream is not ready, until the start-up deadline."""
    await startup.wait_for(
        "NATS", settings.nats_url_for_logs,
        lambda: prepare_topology(settings, topology, policies),
        retryable=is_nats_unreachable,
    )


async def wait_for_connection(startup: Startup, settings: ServiceSettings, name: str) -> NatsClient:
    """A service's long-lived NATS connection (it reconnects forever once up), waited for at
    start-up like ``wait_for_nats``."""
    return await startup.wait_for(
        "NATS", settings.nats_url_for_logs,
        lambda: connect_nats(settings.nats_servers, name=name, max_reconnect_attempts=-1,
                             reconnect_time_wait=0.5, connect_timeout=5),
        retryable=is_nats_unreachable,
    )
