"""Which webhook URLs may be called: server-side request forgery rules.

In production only ``https`` URLs whose host resolves to public addresses only; private,
loopback, link-local, multicast, reserved, unspecified and other non-global addresses are
refused (an IPv4 address inside IPv6, e.g. ``::ffff:127.0.0.1``, is judged as the IPv4 one).
A ``dev`` deployment may also call loopback over plain ``http``, and nothing else that is not
public. URLs carrying credentials are refused: they would be shown in every listing.

The check runs at registration and again before every attempt, on the addresses the attempt
then connects to (``sender`` pins the connection to them), so a name that later resolves
elsewhere (DNS rebinding) is refused at that point.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]


class UnsafeUrl(Exception):
    """The URL may not be called; the message says why (never echoing credentials)."""


@dataclass(frozen=True)
class AddressPolicy:
    allow_loopback: bool = False

    @classmethod
    def for_deployment(cls, deployment: str) -> AddressPolicy:
        return cls(allow_loopback=deployment == "dev")


@dataclass(frozen=True)
class Target:
    """A URL that passed, and the addresses its host resolved to (all allowed)."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[IPAddress, ...]


def address_refusal(address: IPAddress, policy: AddressPolicy) -> str | None:
    """Why ``address`` may not be called, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address_refusal(address.ipv4_mapped, policy)
    if address.is_loopback:
        return None if policy.allow_loopback else "a loopback address"
    for refused, why in (
        (address.is_unspecified, "an unspecified address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
    ):
        if refused:
            return why
    if not address.is_global:
        return "a non-public address"
    return None


@dataclass(frozen=True)
class _Parts:
    scheme: str
    host: str
    port: int


def url_parts(url: str, policy: AddressPolicy) -> _Parts:
    """The URL's scheme, host and port, or ``UnsafeUrl`` for a URL never to be called."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeUrl("the URL cannot be parsed") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise UnsafeUrl("the URL must be https")
    if scheme == "http" and not policy.allow_loopback:
        raise UnsafeUrl("the URL must be https")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("the URL must not carry credentials")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise UnsafeUrl("the URL has no host")
    if parts.fragment:
        raise UnsafeUrl("the URL must not have a fragment")
    return _Parts(scheme, host, port or (443 if scheme == "https" else 80))


async def system_resolver(host: str, port: int) -> Sequence[str]:
    """The addresses ``host`` resolves to, through the system's resolver."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


async def vet_url(url: str, policy: AddressPolicy, resolve: Resolver = system_resolver
                  ) -> Target:
    """Check ``url`` and every address its host resolves to now; ``UnsafeUrl`` when any is
    refused or the host does not resolve. Plain ``http`` (dev only) must stay on loopback."""
    parts = url_parts(url, policy)
    try:
        literal: IPAddress | None = ipaddress.ip_address(parts.host)
    except ValueError:
        literal = None
    if literal is not None:
        found: Sequence[str] = [str(literal)]
    else:
        try:
            found = await resolve(parts.host, parts.port)
        except OSError:
            raise UnsafeUrl(f"the host {parts.host} does not resolve") from None
    addresses = tuple(dict.fromkeys(ipaddress.ip_address(a.split("%", 1)[0]) for a in found))
    if not addresses:
        raise UnsafeUrl(f"the host {parts.host} does not resolve")
    for address in addresses:
        why = address_refusal(address, policy)
        if why is not None:
            raise UnsafeUrl(f"the host {parts.host} resolves to {why} ({address})")
        if parts.scheme == "http" and not _loopback(address):
            raise UnsafeUrl("the URL must be https")
    return Target(url=url, scheme=parts.scheme, host=parts.host, port=parts.port,
                  addresses=addresses)


def _loopback(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
