"""Plain nats-py connections to ``NATS_URL``'s servers, with a bounded first connect.

nats-py's own first connect never ends while no server answers when reconnecting is
unlimited (``max_reconnect_attempts=-1``) -- and, surprisingly, also with ``0`` or
``allow_reconnect=False``. ``connect_nats`` makes one pass over the servers instead (each
tried at most twice) and raises ``NatsUnreachable`` with the reasons, so a caller can retry
on its own schedule (``Startup.wait_for``); once connected, the client reconnects as asked.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client
from nats.js.errors import ServiceUnavailableError

from reelvault_common.runtime.nats_servers import (
    NatsServer,
    parse_nats_servers,
    redact_url,
    servers_for_logs,
)
from reelvault_common.runtime.startup import describe_error, is_unreachable

log = logging.getLogger(__name__)

# Answers of a server that is there but not ready yet (JetStream starting, a cluster without
# its quorum, a connection cut while starting): worth another try at start-up.
NOT_READY_ERRORS: tuple[type[BaseException], ...] = (
    nats.errors.NoServersError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.StaleConnectionError,
    nats.errors.ConnectionReconnectingError,
    ServiceUnavailableError,
)


class NatsUnreachable(ConnectionError):
    """No server of the list answered (one pass over all of them). Raised without a cause, so
    ``startup.describe_error`` shows this summary; the underlying errors are in ``errors``."""

    def __init__(self, servers: Sequence[NatsServer], errors: Sequence[BaseException]) -> None:
        reasons: list[str] = []
        for error in errors:
            reason = describe_error(error)
            if reason not in reasons:
                reasons.append(reason)
        summary = "; ".join(reasons) or "no server answered"
        super().__init__(summary if len(servers) == 1 else
                         f"none of {len(servers)} servers answered: {summary}")
        self.servers = tuple(servers)
        self.errors = tuple(errors)


def is_nats_unreachable(exc: BaseException) -> bool:
    """Is this NATS not being there (yet), rather than e.g. refused credentials?"""
    return is_unreachable(exc) or isinstance(exc, NOT_READY_ERRORS)


def _servers(servers: str | Sequence[str] | Sequence[NatsServer]) -> tuple[NatsServer, ...]:
    if isinstance(servers, str):
        return parse_nats_servers(servers)
    if all(isinstance(server, NatsServer) for server in servers):
        return tuple(servers)  # type: ignore[arg-type]
    return parse_nats_servers([str(server) for server in servers])


async def connect_nats(
    servers: str | Sequence[str] | Sequence[NatsServer],
    *,
    name: str | None = None,
    connect_timeout: float = 5.0,
    max_reconnect_attempts: int = -1,
    reconnect_time_wait: float = 0.5,
    **options: Any,
) -> Client:
    """Connect to the first of ``servers`` that answers (nats-py shuffles them).

    Raises ``NatsUnreachable`` if none does, ``nats.errors.AuthorizationError`` if one
    refused the credentials. After connecting, the client reconnects (to any of them)
    ``max_reconnect_attempts`` times (-1: forever), ``reconnect_time_wait`` apart; its errors
    are logged as one warning line each."""
    pool = _servers(servers)
    failures: list[BaseException] = []
    connected = False

    async def on_error(exc: Exception) -> None:
        if not connected:
            failures.append(exc)
        else:
            log.warning("nats connection (%s): %s", servers_for_logs(pool),
                        redact_url(f"{type(exc).__name__}: {exc}"))

    try:
        client = await nats.connect(
            servers=[server.url for server in pool],
            name=name,
            connect_timeout=connect_timeout,
            # One pass: each server is dropped from the pool after its second failure.
            max_reconnect_attempts=1,
            reconnect_time_wait=0,
            error_cb=on_error,
            **options,
        )
    except nats.errors.NoServersError:
        refused = next((e for e in failures if isinstance(e, nats.errors.AuthorizationError)),
                       None)
        if refused is not None:
            raise refused from None
        raise NatsUnreachable(pool, failures) from None
    connected = True
    # From now on the client's own reconnect policy (nats-py reads these on every reconnect).
    client.options["max_reconnect_attempts"] = max_reconnect_attempts
    client.options["reconnect_time_wait"] = reconnect_time_wait
    return client
