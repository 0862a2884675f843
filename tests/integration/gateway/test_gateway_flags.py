"""Runtime flags set in NATS KV (as the operator commands do) reach a running gateway within a
second: maintenance refuses writes and keeps reads, a whitelist refuses creates of other
organizations, coming soon changes the gallery page only; a deleted flag is off."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import nats
import pytest
from gateway_harness import RunningGateway, gateway_settings, run_gateway
from nats.js.kv import KeyValue
from reelvault_common.messaging.flags import open_flags_bucket, set_flag
from reelvault_common.messaging.topology import Topology
from reelvault_gateway.settings import GatewaySettings

from tests.support.gateway_fakes import CatalogDouble, upload_files

pytestmark = pytest.mark.integration

# The promise is one second; the polling itself may add a few hundredths.
WITHIN_S = 1.0


@pytest.fixture
def settings(nats_url: str, namespace: str, tmp_path: Path) -> GatewaySettings:
    # No catalog announces new rows here: answer right after the stream's ack.
    return gateway_settings(nats_url, namespace, tmp_path, create_visibility_timeout_s=0)


@pytest.fixture
async def flags(nats_url: str, namespace: str,
                gateway: RunningGateway) -> AsyncIterator[KeyValue]:
    connection = await nats.connect(nats_url)
    try:
        yield await open_flags_bucket(connection, Topology(namespace=namespace))
    finally:
        await connection.close()


async def within_a_second(check: Callable[[], Awaitable[bool]]) -> float:
    """How long until ``check`` holds (asserted under ``WITHIN_S``)."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < WITHIN_S, "the flag did not reach the gateway"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def create(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post("/v1/videos", json={"prompt": "flags"})


async def test_maintenance_refuses_writes_and_keeps_reads(
    gateway: RunningGateway, flags: KeyValue
) -> None:
    client = gateway.client
    assert (await create(client)).status_code == 202
    await set_flag(flags, "maintenance", True)

    async def refused() -> bool:
        return (await create(client)).status_code == 503

    await within_a_second(refused)
    answer = await create(client)
    assert answer.json()["error"]["code"] == "maintenance"
    assert answer.json()["error"]["message"]
    assert int(answer.headers["retry-after"]) > 0
    upload = await client.post("/v1/uploads", files=upload_files())
    assert upload.status_code == 503 and upload.json()["error"]["code"] == "maintenance"
    for read in ("/v1/videos", "/v1/usage", "/healthz", "/readyz", "/"):
        assert (await client.get(read)).status_code == 200, read

    await set_flag(flags, "maintenance", False)

    async def accepted() -> bool:
        return (await create(client)).status_code == 202

    await within_a_second(accepted)


async def test_a_whitelist_refuses_creates_of_unlisted_organizations(
    gateway: RunningGateway, flags: KeyValue, double: CatalogDouble
) -> None:
    client = gateway.client
    async with gateway.client_for(double.add_key("vip")) as vip:
        await set_flag(flags, "whitelist", ["vip"])

        async def refused() -> bool:
            return (await create(client)).status_code == 403

        await within_a_second(refused)
        assert (await create(client)).json()["error"]["code"] == "not_whitelisted"
        seed = await client.post("/api/create-video", json={"prompt": "p"})
        assert seed.status_code == 403 and seed.json()["error"]["code"] == "not_whitelisted"
        assert (await client.post("/v1/uploads", files=upload_files())).status_code == 201
        assert (await create(vip)).status_code == 202
        await flags.delete("whitelist")  # a deleted flag is off

        async def open_again() -> bool:
            return (await create(client)).status_code == 202

        await within_a_second(open_again)


async def test_coming_soon_changes_the_gallery_page_only(
    gateway: RunningGateway, flags: KeyValue
) -> None:
    client = gateway.client
    gallery = (await client.get("/")).text
    await set_flag(flags, "coming_soon", True)

    async def holding() -> bool:
        return (await client.get("/")).text != gallery

    await within_a_second(holding)
    assert "Coming soon" in (await client.get("/")).text
    assert (await create(client)).status_code == 202  # the API is unaffected
    await set_flag(flags, "coming_soon", False)

    async def back() -> bool:
        return (await client.get("/")).text == gallery

    await within_a_second(back)


async def test_flags_set_before_a_start_apply_from_the_first_request(
    double: CatalogDouble, flags: KeyValue, settings: GatewaySettings
) -> None:
    await set_flag(flags, "maintenance", True)
    async with run_gateway(settings, double.add_key()) as second:
        answer = await create(second.client)
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "maintenance"
