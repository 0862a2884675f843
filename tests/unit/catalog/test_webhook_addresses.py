"""SSRF rules of webhook URLs: which addresses and URLs may be called, in production and in
a dev deployment, judged on what the host resolves to."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest
from reelvault_catalog.webhooks.addresses import (
    AddressPolicy,
    UnsafeUrl,
    address_refusal,
    url_parts,
    vet_url,
)

PRODUCTION = AddressPolicy()
DEV = AddressPolicy.for_deployment("dev")

REFUSED = {
    "127.0.0.1": "loopback",
    "127.8.9.10": "loopback",
    "::1": "loopback",
    "::ffff:127.0.0.1": "loopback",
    "10.1.2.3": "private",
    "172.16.0.1": "private",
    "192.168.1.1": "private",
    "::ffff:192.168.1.1": "private",
    "fc00::1": "private",
    "169.254.169.254": "link-local",
    "fe80::1": "link-local",
    "224.0.0.1": "multicast",
    "ff02::1": "multicast",
    "0.0.0.0": "unspecified",
    "::": "unspecified",
    "240.0.0.1": "reserved",
    "100.64.0.1": "non-public",
}
PUBLIC = ("93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:1.1.1.1")


@pytest.mark.parametrize("address", sorted(REFUSED))
def test_non_public_addresses_are_refused_in_production(address: str) -> None:
    why = address_refusal(ipaddress.ip_address(address), PRODUCTION)
    assert why is not None and REFUSED[address] in why


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address), PRODUCTION) is None
    assert address_refusal(ipaddress.ip_address(address), DEV) is None


def test_a_dev_deployment_allows_loopback_and_nothing_else_that_is_not_public() -> None:
    for address in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
        assert address_refusal(ipaddress.ip_address(address), DEV) is None
    for address in sorted(set(REFUSED) - {"127.0.0.1", "127.8.9.10", "::1",
                                           "::ffff:127.0.0.1"}):
        assert address_refusal(ipaddress.ip_address(address), DEV) is not None, address
    assert AddressPolicy.for_deployment("production") == PRODUCTION


@pytest.mark.parametrize(("url", "why"), [
    ("http://hooks.example.com/x", "https"),
    ("ftp://hooks.example.com/x", "https"),
    ("https://user:pw@hooks.example.com/x", "credentials"),
    ("https:///path-only", "no host"),
    ("https://hooks.example.com/x#frag", "fragment"),
    ("https://hooks.example.com:99999/x", "parsed"),
])
def test_urls_that_are_never_called(url: str, why: str) -> None:
    with pytest.raises(UnsafeUrl, match=why):
        url_parts(url, PRODUCTION)


def resolver(table: dict[str, Sequence[str]]):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> Sequence[str]:
        if host not in table:
            raise OSError("no such host")
        return table[host]
    return resolve


async def test_every_resolved_address_must_be_public() -> None:
    dns = resolver({"good.example.com": ["93.184.216.34", "2606:4700:4700::1111"],
                    "mixed.example.com": ["93.184.216.34", "10.0.0.7"],
                    "meta.example.com": ["169.254.169.254"]})
    target = await vet_url("https://good.example.com/hook?x=1", PRODUCTION, dns)
    assert (target.host, target.port, target.scheme) == ("good.example.com", 443, "https")
    assert [str(a) for a in target.addresses] == ["93.184.216.34", "2606:4700:4700::1111"]
    with pytest.raises(UnsafeUrl, match="private"):
        await vet_url("https://mixed.example.com/hook", PRODUCTION, dns)
    with pytest.raises(UnsafeUrl, match="link-local"):
        await vet_url("https://meta.example.com/hook", PRODUCTION, dns)
    with pytest.raises(UnsafeUrl, match="does not resolve"):
        await vet_url("https://nowhere.example.com/hook", PRODUCTION, dns)


async def test_ip_literals_are_judged_without_dns() -> None:
    dns = resolver({})
    assert (await vet_url("https://93.184.216.34:8443/h", PRODUCTION, dns)).port == 8443
    with pytest.raises(UnsafeUrl, match="loopback"):
        await vet_url("https://127.0.0.1/h", PRODUCTION, dns)
    with pytest.raises(UnsafeUrl, match="private"):
        await vet_url("https://[fc00::5]/h", PRODUCTION, dns)


async def test_plain_http_only_in_dev_and_only_to_loopback() -> None:
    dns = resolver({"localhost": ["127.0.0.1", "::1"], "public.example.com": ["93.184.216.34"]})
    target = await vet_url("http://localhost:8123/hook", DEV, dns)
    assert target.port == 8123 and all(a.is_loopback for a in target.addresses)
    with pytest.raises(UnsafeUrl, match="https"):
        await vet_url("http://public.example.com/hook", DEV, dns)
    with pytest.raises(UnsafeUrl, match="https"):
        await vet_url("http://localhost:8123/hook", PRODUCTION, dns)
    assert (await vet_url("https://localhost/hook", DEV, dns)).scheme == "https"
