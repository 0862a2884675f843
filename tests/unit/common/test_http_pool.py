"""The provider's HTTP client (httpx2): bounded, reusing its keep-alive connections, dropping
those the server closed, honouring the environment's proxy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx2
import pytest
from reelvault_common.http import async_client


@dataclass
class Server:
    """A tiny HTTP/1.1 server that counts connections (open at once, accepted in all) and
    records request targets."""

    port: int = 0
    accepted: int = 0
    open_now: int = 0
    most_open: int = 0
    close_after_reply: bool = False
    delay_s: float = 0.0
    targets: list[bytes] = field(default_factory=list)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ", 2)[1]
                self.targets.append(target)
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                body = b'{"path": "' + target + b'"}'
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

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


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
    limits = httpx2.Limits(max_connections=4, max_keepalive_connections=4)
    async with serving(server), async_client(base_url=server.url, limits=limits) as client:
        replies = await asyncio.gather(*(client.get(f"/r{i}") for i in range(40)))
    assert [r.json()["path"] for r in replies] == [f"/r{i}" for i in range(40)]
    assert server.most_open <= 4
    assert server.accepted <= 4  # queued requests waited for a connection, none was churned


async def test_idle_connections_are_kept_up_to_max_keepalive_and_reused() -> None:
    server = Server(delay_s=0.01)
    limits = httpx2.Limits(max_connections=20, max_keepalive_connections=10)
    async with serving(server), async_client(base_url=server.url, limits=limits) as client:
        for _ in range(5):
            await asyncio.gather(*(client.get("/x") for _ in range(10)))
        assert server.accepted == 10


async def test_surplus_idle_connections_are_closed() -> None:
    server = Server(delay_s=0.01)
    limits = httpx2.Limits(max_connections=10, max_keepalive_connections=3)
    async with serving(server), async_client(base_url=server.url, limits=limits) as client:
        await asyncio.gather(*(client.get("/x") for _ in range(10)))
        await client.get("/x")
        for _ in range(100):  # the server sees the closes a moment later
            if server.open_now <= 3:
                break
            await asyncio.sleep(0.01)
        assert server.open_now <= 3


async def test_a_connection_the_server_closed_is_not_reused() -> None:
    server = Server(close_after_reply=True)
    async with serving(server), async_client(base_url=server.url) as client:
        for i in range(5):
            reply = await client.get(f"/seq{i}")
            assert reply.json()["path"] == f"/seq{i}"
            await asyncio.sleep(0.1)  # the server has closed its end by now
    assert server.accepted == 5


async def test_streamed_responses_release_their_connection() -> None:
    server = Server()
    limits = httpx2.Limits(max_connections=1, max_keepalive_connections=1)
    async with serving(server), async_client(base_url=server.url, limits=limits) as client:
        for i in range(3):
            async with client.stream("GET", f"/s{i}") as reply:
                assert b"".join([chunk async for chunk in reply.aiter_bytes()]).startswith(b"{")
    assert server.accepted == 1


async def test_connect_errors_are_httpx2_errors() -> None:
    server = Server()
    async with serving(server):
        port = server.port
    async with async_client() as client:
        with pytest.raises(httpx2.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/gone")


async def test_the_environments_proxy_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy",
                 "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    server = Server()
    async with serving(server):
        monkeypatch.setenv("HTTP_PROXY", server.url)
        async with async_client() as client:
            reply = await client.get("http://videos.invalid/v1/videos/abc")
    assert reply.status_code == 200
    assert server.targets == [b"http://videos.invalid/v1/videos/abc"]  # absolute: a proxy's
