"""One attempt: check the URL again, then POST the signed body to an address just checked.

The connection goes to the address the check approved, not to whatever the name resolves to
a moment later: the request's URL names that address, the ``Host`` header and (for https) the
TLS server name, whose certificate is verified, name the host. Redirects are not followed (a
redirect could lead anywhere), proxies from the environment are not used (they would connect
elsewhere), and the answer's body is never read. The whole attempt, connecting included, ends
after ``timeout_s``.
"""

from __future__ import annotations

import asyncio
import ipaddress
from datetime import UTC, datetime

import httpx

from reelvault_catalog.webhooks.addresses import (
    AddressPolicy,
    Resolver,
    Target,
    UnsafeUrl,
    system_resolver,
    vet_url,
)
from reelvault_catalog.webhooks.repository import Attempt
from reelvault_catalog.webhooks.signing import signed_headers


def webhook_client(timeout_s: float, connect_timeout_s: float,
                   transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s, connect=min(connect_timeout_s, timeout_s)),
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
        transport=transport,
    )


def pinned_url(target: Target, address: ipaddress.IPv4Address | ipaddress.IPv6Address
               ) -> httpx.URL:
    """``target``'s URL with its host replaced by ``address``."""
    return httpx.URL(target.url).copy_with(host=str(address))


def host_header(target: Target) -> str:
    url = httpx.URL(target.url)
    host = url.raw_host.decode("ascii")
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return host if url.port is None else f"{host}:{url.port}"


class WebhookSender:
    def __init__(self, client: httpx.AsyncClient, policy: AddressPolicy, timeout_s: float,
                 resolve: Resolver = system_resolver) -> None:
        self._client = client
        self._policy = policy
        self._timeout_s = timeout_s
        self._resolve = resolve

    async def send(self, url: str, secret: str, webhook_id: str, body: str) -> Attempt:
        """One attempt; never raises for what the endpoint or the network did."""
        try:
            target = await vet_url(url, self._policy, self._resolve)
        except UnsafeUrl as refused:
            return Attempt(succeeded=False, error=f"refused: {refused}")
        headers = signed_headers(secret, webhook_id, body, datetime.now(UTC))
        headers["host"] = host_header(target)
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        request = self._client.build_request(
            "POST", pinned_url(target, target.addresses[0]), headers=headers,
            content=body.encode(), extensions=extensions,
        )
        try:
            async with asyncio.timeout(self._timeout_s):
                response = await self._client.send(request, stream=True)
                await response.aclose()
        except TimeoutError:
            return Attempt(succeeded=False, error=f"timed out after {self._timeout_s:g}s")
        except httpx.TimeoutException:
            return Attempt(succeeded=False, error=f"timed out after {self._timeout_s:g}s")
        except httpx.HTTPError as exc:
            return Attempt(succeeded=False, error=f"{type(exc).__name__}: {exc}")
        code = response.status_code
        if 200 <= code < 300:
            return Attempt(succeeded=True, response_code=code)
        return Attempt(succeeded=False, response_code=code, error=f"HTTP {code}")
