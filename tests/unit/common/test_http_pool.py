"""The lean httpx transport: same behaviour as httpx's own pool, bounded and reusing
connections, at O(connections) per request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest
from reelvault_common.http import LeanConnectionPool, env_proxies_configured, lean_transport


@dataclass
class Server:
    """A tiny HTTP/1.1 server that counts connections (open at once, accepted in all)."""

    port: int = 0
    accepted: int = 0
    open_now: int = 0
    most_open: int = 0
    close_after_reply: bool = False
    delay_s: float = 0.0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1]
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                body = b'{"path": "' + path + b'"}'
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
                if self.close_after_reply:
                    # Closes without announcing it (no "connection: close"): the client finds
                    # out only by probing the idle connection.
                    await asyncio.sleep(0.05)
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self.open_now -= 1
            writer.close()


@asynccontextmanager
async def serving(server: Server) -> AsyncIterator[Server]:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield server
        for writer in server.writers:
            writer.close()


async def test_concurrent_requests_are_answered_and_bounded_by_max_connections() -> None:
    server = Server(delay_s=0.01)
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
    async with serving(server), httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{server.port}", transport=lean_transport(limits=limits)
    ) as client:
        replies = await asyncio.gather(*(client.get(f"/r{i}") for i in range(40)))
    assert [r.json()["path"] for r in replies] == [f"/r{i}" for i in range(40)]
    assert server.most_open <= 4
    assert server.accepted <= 4  # queued requests waited for a connection, none was churned


async def test_idle_connections_are_kept_up_to_max_keepalive_and_reused() -> None:
    server = Server(delay_s=0.01)
    limits = httpx.Limits(max_connections=10, max_keepalive_connections=10)
    transport = lean_transport(limits=limits)
    async with serving(server), httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{server.port}", transport=transport
    ) as client:
        for _ in range(5):
            await asyncio.gather(*(client.get("/x") for _ in range(10)))
        # The stock pool compared the count of ALL connections to the keep-alive limit;
        # here the ten idle ones stay and every wave reuses them.
        assert server.accepted == 10
        pool = transport._pool
        assert isinstance(pool, LeanConnectionPool)
        assert len(pool.connections) == 10


async def test_surplus_idle_connections_are_closed() -> None:
    server = Server(delay_s=0.01)
    limits = httpx.Limits(max_connections=10, max_keepalive_connections=3)
    transport = lean_transport(limits=limits)
    async with serving(server), httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{server.port}", transport=transport
    ) as client:
        await asyncio.gather(*(client.get("/x") for _ in range(10)))
        await client.get("/x")  # a pass after the burst trims the idle ones
        assert len(transport._pool.connections) <= 3


async def test_a_connection_the_server_closed_is_not_reused() -> None:
    server = Server(close_after_reply=True)
    async with serving(server), httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{server.port}", transport=lean_transport()
    ) as client:
        for i in range(5):
            reply = await client.get(f"/seq{i}")
            assert reply.json()["path"] == f"/seq{i}"
            await asyncio.sleep(0.1)  # the server has closed its end by now
    assert server.accepted == 5


async def test_streamed_responses_release_their_connection() -> None:
    server = Server()
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with serving(server), httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{server.port}", transport=lean_transport(limits=limits)
    ) as client:
        for i in range(3):
            async with client.stream("GET", f"/s{i}") as reply:
                assert b"".join([chunk async for chunk in reply.aiter_bytes()]).startswith(b"{")
    assert server.accepted == 1


async def test_connect_errors_are_httpx_errors() -> None:
    server = Server()
    async with serving(server):
        port = server.port
    async with httpx.AsyncClient(transport=lean_transport()) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/gone")


def test_env_proxies_are_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert not env_proxies_configured()
    monkeypatch.setenv("https_proxy", "http://proxy.invalid:3128")
    assert env_proxies_configured()
