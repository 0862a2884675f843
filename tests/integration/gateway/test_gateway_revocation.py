"""A revoked key is refused by every gateway within 5 seconds: two gateway processes, each with
the key in its cache, refuse it as soon as the revocation is announced on ``key_changes``, and
still within the cache's TTL when that announcement is lost. A session signed in on one
replica works on the other (same session secret) and ends with its key."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import pytest

from reelvault.embedded import free_port
from tests.support.gateway_fakes import CatalogDouble, ServedDouble
from tests.support.service_process import ServiceProcess, service_process

pytestmark = pytest.mark.integration

PROMISE_S = 5.0


def gateway_env(nats_url: str, namespace: str, tmp_path: Path, port: int) -> dict[str, str]:
    return {
        "NATS_URL": nats_url,
        "REELVAULT_NAMESPACE": namespace,
        "REELVAULT_STREAM_DUPLICATE_WINDOW_S": "60",
        "REELVAULT_PORT": str(port),
        "REELVAULT_STORAGE_DIR": str(tmp_path / "storage"),
        "REELVAULT_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "REELVAULT_STORAGE_SIGNING_KEY": "revocation-test-signing-key-0123456789",
        "REELVAULT_SESSION_SECRET": "revocation-test-session-secret-0123456789",
    }


@pytest.fixture
async def gateways(
    nats_url: str, namespace: str, tmp_path: Path, served: ServedDouble
) -> AsyncIterator[list[str]]:
    """Two gateway processes on one namespace; their base URLs."""
    ports = [free_port(), free_port()]
    async with AsyncExitStack() as stack:
        running: list[ServiceProcess] = []
        for index, port in enumerate(ports):
            env = gateway_env(nats_url, namespace, tmp_path, port)
            running.append(await stack.enter_async_context(service_process(
                f"gateway-{index}", "reelvault_gateway", env, tmp_path / "logs")))
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        await asyncio.gather(*(process.wait_http(f"{base}/readyz")
                               for process, base in zip(running, bases, strict=True)))
        yield bases


async def status(client: httpx.AsyncClient, base: str) -> int:
    return (await client.get(f"{base}/v1/videos")).status_code


async def seconds_until_refused(clients: list[httpx.AsyncClient], bases: list[str]) -> float:
    """How long until every client is refused (401) by every gateway."""
    started = time.monotonic()
    for client in clients:
        for base in bases:
            while (code := await status(client, base)) != 401:
                assert code == 200, code
                assert time.monotonic() - started < PROMISE_S, f"{base} still accepts the key"
                await asyncio.sleep(0.05)
    return time.monotonic() - started


@asynccontextmanager
async def warmed(bases: list[str], key: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``key`` after each gateway accepted it once (so each has it cached)."""
    async with httpx.AsyncClient(timeout=10, headers={"Authorization": f"Bearer {key}"}) as client:
        for base in bases:
            assert await status(client, base) == 200
        yield client


async def test_an_announced_revocation_reaches_both_gateways_and_their_sessions(
    gateways: list[str], served: ServedDouble, double: CatalogDouble
) -> None:
    key = double.add_key()
    async with warmed(gateways, key) as client, httpx.AsyncClient(timeout=10) as browser:
        signed_in = await browser.post(f"{gateways[0]}/v1/session", json={"key": key})
        assert signed_in.status_code == 204
        # Cookies do not tell ports apart: the cookie made by the first serves the second.
        assert await status(browser, gateways[1]) == 200
        lookups = double.lookups
        await served.revoke(key)
        took = await seconds_until_refused([client, browser], gateways)
    assert took < 1.0  # the announcement, not the TTL
    assert double.lookups > lookups


async def test_a_lost_announcement_is_made_up_for_by_the_ttl(
    gateways: list[str], served: ServedDouble, double: CatalogDouble
) -> None:
    key = double.add_key()
    async with warmed(gateways, key) as client:
        await served.revoke(key, announce=False)
        took = await seconds_until_refused([client], gateways)
    assert took < PROMISE_S
