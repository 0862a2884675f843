"""The streamed download every provider client offers: one response, never buffered.

Each protocol maps its own error replies (``error_from_response``); what is shared is how the
response is opened and closed, and that a body cut short raises a transient ``ProviderError``
instead of ending quietly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx2

from reelvault_common.providers.errors import ProviderError

__all__ = ["Download", "send_streamed", "stream_download"]

Download = tuple[httpx2.Headers, AsyncIterator[bytes]]


async def send_streamed(http: httpx2.AsyncClient, request: httpx2.Request) -> httpx2.Response:
    """Send ``request`` with its body left unread; a transport failure is a ``ProviderError``."""
    try:
        return await http.send(request, stream=True)
    except httpx2.TransportError as exc:
        raise ProviderError(f"{type(exc).__name__}: {exc}", status=None) from exc


@asynccontextmanager
async def stream_download(
    open_response: Callable[[], Awaitable[httpx2.Response]],
    error_from_response: Callable[[httpx2.Response, bytes], ProviderError],
    *,
    chunk_size: int | None = None,
    error_status_from: int = 300,
) -> AsyncIterator[Download]:
    """Open the response; yield its headers and a chunk iterator; close it on the way out.

    ``chunk_size=None`` passes the body on in the pieces the connection read (each at most its
    read size), which costs nothing; a size re-slices them into chunks of exactly that many
    bytes, which copies every byte (measured: half again the CPU of a 200 MB download).

    A status of ``error_status_from`` or more raises ``error_from_response`` with the body. A
    client that follows redirects itself passes 400, so what is left of a 3xx goes through."""
    response = await open_response()
    try:
        if response.status_code >= error_status_from:
            body = await response.aread()
            raise error_from_response(response, body)

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.aiter_bytes(chunk_size):
                    yield chunk
            except httpx2.HTTPError as exc:  # includes a body shorter than Content-Length
                raise ProviderError(f"download broke off: {exc!r}", status=None) from exc

        yield response.headers, chunks()
    finally:
        await response.aclose()
