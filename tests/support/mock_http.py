"""An in-memory ``httpx2`` peer for the provider clients' unit tests: a transport that keeps
every request it answers, and a body that breaks off before its end."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx2

Handler = Callable[[httpx2.Request], httpx2.Response]


class Recorder:
    """The transport: answers with ``handler`` and keeps every request it saw."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return self.handler(request)


class CutShortBody(httpx2.AsyncByteStream):
    """A response body sent in pieces, then the connection drops before the end."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece
        raise httpx2.RemoteProtocolError("peer closed connection without sending complete "
                                         "message body")


async def read_all(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])
