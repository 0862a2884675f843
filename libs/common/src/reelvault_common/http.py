"""The HTTP client for our calls to the video provider: ``httpx2``, httpx's maintained fork.

Why: httpcore 1.0.9's connection pool (under httpx 0.28) rescans its connections for every
idle one, twice per request: O(n^2) in the connections it holds (the upstream fix was never
merged). We used to swap in our own pool by overriding httpcore's private methods; that is no
longer allowed. httpcore2 (under httpx2) has a linear pass. Client CPU per request, from
bench/http_pool.py: c requests in flight, each on its own keep-alive connection to a local
server; median of 5 interleaved rounds of the ratio to httpx's stock pool sized to c in the
same round; asyncio's loop / uvloop:

    c                          8            16 (asyncio)  32           64
    httpx, pool sized to c     1            1             1            1
    httpx, default limits      1.08 / 0.96  0.95          0.56 / 0.61  0.18 / 0.15  (reconnects)
    httpx2, sized to c         0.72 / 0.62  0.47          0.21 / 0.21  0.11 / 0.11
    our former private pool    0.52 / 0.60  0.42          0.23 / 0.23  0.09 / 0.07

httpx's stock pool took 1.2-1.4, 2.2, 4-5 and 11-12 ms of CPU per request on the 2-core
development machine; httpx2 0.7-1.3 ms whatever c. Plain httpx with a pool small enough to be
cheap would cap the generator (16 + 16 provider workers) well below its concurrency and still
cost 1.4-1.6x httpx2 at 8 connections, 2x at 16. So httpx2: httpx's API under another name,
as cheap as our own pool was, and no code of ours inside it.

Only the provider client (``providers/openai_videos.py``) uses it; storage stays on httpx,
which storage3 and supabase require. Proxies and CA bundles come from the environment as with
httpx (``HTTP(S)_PROXY``, ``ALL_PROXY``, ``NO_PROXY``, ``SSL_CERT_FILE``/``SSL_CERT_DIR``) when
no transport is given; without ``SSL_CERT_*`` httpx2 verifies against the system's CA store,
where httpx used certifi's.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx2

__all__ = ["DEFAULT_LIMITS", "async_client"]

# Room for the generator's request and poll workers (16 + 16 by default) and more; idle
# connections beyond 32 are closed.
DEFAULT_LIMITS = httpx2.Limits(max_connections=100, max_keepalive_connections=32)


def async_client(
    *,
    base_url: str = "",
    headers: Mapping[str, str] | None = None,
    timeout: httpx2.Timeout | float = 30.0,
    follow_redirects: bool = False,
    limits: httpx2.Limits = DEFAULT_LIMITS,
    transport: httpx2.AsyncBaseTransport | None = None,
) -> httpx2.AsyncClient:
    """An ``httpx2.AsyncClient`` (HTTP/1.1). ``transport`` replaces the network (tests); without
    it the environment's proxy settings apply."""
    return httpx2.AsyncClient(
        base_url=base_url,
        headers=headers,
        timeout=timeout,
        follow_redirects=follow_redirects,
        limits=limits,
        transport=transport,
    )
