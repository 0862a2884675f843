"""A create answers once the catalog has the row, told by the catalog's announcement of new
rows rather than by polling it; without a catalog it answers after its timeout anyway."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from gateway_harness import RunningGateway, gateway_settings, run_gateway
from reelvault_gateway.catalog import CatalogClient

from tests.support.gateway_fakes import KEYS_AND_QUOTAS, CatalogDouble, serve_catalog_double

pytestmark = pytest.mark.integration


class CountingCatalog:
    """The gateway's catalog client, counting the reads a create makes."""

    def __init__(self, real: CatalogClient) -> None:
        self.real = real
        self.gets = 0

    async def get(self, org: str, video_id: uuid.UUID, timeout_s: float | None = None) -> Any:
        self.gets += 1
        return await self.real.get(org, video_id, timeout_s=timeout_s)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


async def test_creates_wait_for_the_catalogs_word_not_by_polling(
    catalog_gateway: RunningGateway,
) -> None:
    gateway = catalog_gateway
    context = gateway.app.state.context
    counting = context.catalog = CountingCatalog(context.catalog)
    for index in range(5):
        created = await gateway.client.post("/v1/videos", json={"prompt": f"watched {index}"})
        assert created.status_code == 202, created.text
        # Visible the moment the answer comes, and no read was needed to know it.
        got = await gateway.client.get(f"/v1/videos/{created.json()['id']}")
        assert got.status_code == 200, got.text
    assert counting.gets == 5  # only the five GETs of the test itself
    assert len(context.recorded) == 0  # nothing left registered


async def test_without_a_catalog_a_create_answers_after_its_timeout(
    nats_url: str, namespace: str, tmp_path: Path
) -> None:
    settings = gateway_settings(nats_url, namespace, tmp_path, create_visibility_timeout_s=0.4,
                                rpc_timeout_s=0.3)
    double = CatalogDouble()  # keys and quotas only: no catalog reads
    key = double.add_key()
    async with (serve_catalog_double(nats_url, namespace, double, KEYS_AND_QUOTAS),
                run_gateway(settings, key) as gateway):
        began = time.monotonic()
        created = await gateway.client.post("/v1/videos", json={"prompt": "nobody listens"})
        elapsed = time.monotonic() - began
    assert created.status_code == 202, created.text
    assert 0.4 <= elapsed < 3
