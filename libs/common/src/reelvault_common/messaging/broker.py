"""FastStream's NATS broker for core-NATS request/reply (the catalog's reads, the gateway)."""

from __future__ import annotations

import logging
from typing import Any

from faststream import StreamMessage
from faststream.nats import NatsBroker

from reelvault_common.runtime.logs import broker_logger
from reelvault_common.runtime.settings import ServiceSettings


def make_broker(
    settings: ServiceSettings, client_name: str, *, buffer_while_reconnecting: bool = True
) -> NatsBroker:
    # Reconnect forever: a broker restart must not end the service.
    options: dict[str, Any] = {}
    if not buffer_while_reconnecting:
        # Request/response front-ends (the gateway) must fail a publish made while the
        # connection is down at once: a buffered one would be sent after reconnecting, long
        # after the caller was told it failed.
        options["pending_size"] = 0
    return NatsBroker(
        # Every server of NATS_URL: nats-py shuffles them and fails over between them.
        settings.nats_server_urls,
        name=client_name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,  # type: ignore[arg-type]  # nats-py takes float seconds
        connect_timeout=5,
        graceful_timeout=settings.shutdown_grace_s,
        # Our logger instead of the colour one FastStream builds (configure_logging's format).
        logger=broker_logger(),
        # FastStream's per-message "Received"/"Processed" lines: DEBUG, not INFO (at load they
        # cost more CPU than many handlers; configure_logging shows them only at DEBUG).
        log_level=logging.DEBUG,
        **options,
    )


async def raw_body(msg: StreamMessage[Any]) -> bytes:
    """A FastStream decoder that leaves the body as bytes: the handler parses (and answers a
    bad request) itself instead of FastStream failing before it runs."""
    return bytes(msg.body)
