"""An httpx transport whose connection pool costs O(connections) per request, not O(n^2).

httpcore 1.0.9's ``AsyncConnectionPool`` runs ``_assign_requests_to_connections`` twice per
request (when it is queued and when its response closes). That pass counts every connection
again for each idle one (O(n^2), encode/httpcore#1035, unmerged), may hand one idle HTTP/1.1
connection to several queued requests (all but one then fail and queue again), and probes
every idle connection for a server-side close through anyio's ``extra()`` (a dict of lambdas
built per call). With the few dozen keep-alive connections a busy service holds to its
provider, that was a fifth of the generator's CPU (bench/pipeline.py --profile).

``lean_transport()`` keeps httpx's own transport (error mapping, TLS, limits) and swaps in:

- ``LeanConnectionPool``: one pass over the connections, idle ones counted once, a connection
  already handed to a request neither evicted nor handed out again, and
  ``max_keepalive_connections`` counting idle connections (the stock pass counted all of
  them, closing idle connections it should have kept and reconnecting later);
- ``LeanBackend``: anyio streams that remember their socket, so the readability probe of an
  idle connection is one ``poll(0)``.

The request/response path itself (h11, timeouts, exceptions) is httpcore's, unchanged.
"""

# httpcore's network interfaces take a ``timeout`` argument: they are implemented here as is.
# ruff: noqa: ASYNC109

from __future__ import annotations

import os
import select
import socket
import ssl
import typing

import httpcore
import httpx

_PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)

__all__ = [
    "LeanBackend",
    "LeanConnectionPool",
    "default_transport",
    "env_proxies_configured",
    "lean_transport",
]


def _socket_readable(sock: socket.socket | None) -> bool:
    """Would ``recv`` return at once (data, or the b"" of a peer's close)? As httpcore's own
    probe: a socket that is gone counts as readable (the connection is then dropped)."""
    fd = None if sock is None else sock.fileno()
    if fd is None or fd < 0:
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class _Stream(httpcore.AsyncNetworkStream):
    """An httpcore network stream with its raw socket looked up once."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._sock: socket.socket | None = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "is_readable":
            return _socket_readable(self._sock)
        if info == "socket":
            return self._sock
        return self._inner.get_extra_info(info)


class LeanBackend(httpcore.AsyncNetworkBackend):
    """httpcore's anyio backend, its streams wrapped in ``_Stream``."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(
            await self._inner.connect_tcp(
                host,
                port,
                timeout=timeout,
                local_address=local_address,
                socket_options=socket_options,
            )
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(
            await self._inner.connect_unix_socket(
                path, timeout=timeout, socket_options=socket_options
            )
        )

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class LeanConnectionPool(httpcore.AsyncConnectionPool):
    """``AsyncConnectionPool`` with a linear assignment pass (HTTP/1.1 only)."""

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        closing: list[httpcore.AsyncConnectionInterface] = []
        # Connections handed to a request that has not started on them yet still look idle:
        # they are spoken for (closing one now would break that request).
        reserved = {id(r.connection) for r in self._requests if r.connection is not None}
        kept: list[httpcore.AsyncConnectionInterface] = []
        idle: list[httpcore.AsyncConnectionInterface] = []
        for connection in self._connections:
            if connection.is_closed():
                continue
            if id(connection) in reserved:
                kept.append(connection)
            elif connection.has_expired():
                closing.append(connection)
            else:
                kept.append(connection)
                if connection.is_idle():
                    idle.append(connection)
        # Surplus keep-alive connections: the oldest idle ones go.
        surplus = len(idle) - self._max_keepalive_connections
        if surplus > 0:
            dropped = {id(c) for c in idle[:surplus]}
            closing.extend(idle[:surplus])
            idle = idle[surplus:]
            kept = [c for c in kept if id(c) not in dropped]
        self._connections = kept

        queued = [request for request in self._requests if request.is_queued()]
        if not queued:
            return closing
        # Each connection goes to one request per pass (HTTP/1.1 does not multiplex).
        available = [c for c in kept if id(c) not in reserved and c.is_available()]
        for pool_request in queued:
            origin = pool_request.request.url.origin
            chosen = next((c for c in available if c.can_handle_request(origin)), None)
            if chosen is not None:
                available.remove(chosen)
                if chosen in idle:
                    idle.remove(chosen)
                pool_request.assign_to_connection(chosen)
                continue
            if len(self._connections) >= self._max_connections:
                if not idle:
                    continue  # full of busy connections: this one waits for one to free up
                # Make room: an idle connection to another origin goes.
                victim = idle.pop(0)
                if victim in available:
                    available.remove(victim)
                self._connections.remove(victim)
                closing.append(victim)
            connection = self.create_connection(origin)
            self._connections.append(connection)
            pool_request.assign_to_connection(connection)
        return closing


def default_transport() -> httpx.AsyncHTTPTransport | None:
    """The transport for our HTTP clients: ``lean_transport()``, unless the environment sets
    a proxy (then None: httpx's own transport, which honours it)."""
    return None if env_proxies_configured() else lean_transport()


def env_proxies_configured() -> bool:
    """Does the environment route HTTP through a proxy? (httpx honours HTTP(S)_PROXY and
    ALL_PROXY only when it builds its own transports.)"""
    return any(os.environ.get(name) for name in _PROXY_VARIABLES)


def lean_transport(
    *, limits: httpx.Limits | None = None
) -> httpx.AsyncHTTPTransport:
    """httpx's ``AsyncHTTPTransport`` (TLS verification from the environment, as by default)
    on a ``LeanConnectionPool``. HTTP/1.1, no proxy: callers that may need one check
    use ``default_transport()``."""
    limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=32)
    transport = httpx.AsyncHTTPTransport(limits=limits)
    stock = transport._pool
    assert isinstance(stock, httpcore.AsyncConnectionPool)
    transport._pool = LeanConnectionPool(
        ssl_context=stock._ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        http1=True,
        http2=False,
        network_backend=LeanBackend(),
    )
    return transport
