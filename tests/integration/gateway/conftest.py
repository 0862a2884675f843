"""Fixtures of the gateway's integration tests: settings on the test's namespace and storage
under tmp_path, the running app, a probe on the stream and (where needed) the real catalog."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from gateway_harness import (
    BASE_URL,
    RunningGateway,
    StreamProbe,
    gateway_settings,
    probe_stream,
    run_gateway,
)
from reelvault_catalog.app import CatalogService
from reelvault_catalog.settings import CatalogSettings
from reelvault_common.messaging.topology import Topology
from reelvault_gateway.settings import GatewaySettings


@pytest.fixture
def settings(nats_url: str, namespace: str, tmp_path: Path) -> GatewaySettings:
    return gateway_settings(nats_url, namespace, tmp_path)


@pytest.fixture
async def gateway(settings: GatewaySettings) -> AsyncIterator[RunningGateway]:
    async with run_gateway(settings) as running:
        yield running


@pytest.fixture
async def stream(nats_url: str, settings: GatewaySettings) -> AsyncIterator[StreamProbe]:
    async with probe_stream(nats_url, Topology.from_settings(settings)) as probe:
        yield probe


@pytest.fixture
async def catalog(
    nats_url: str, namespace: str, database_url: str
) -> AsyncIterator[CatalogService]:
    service = CatalogService(
        CatalogSettings(
            NATS_URL=nats_url,
            namespace=namespace,
            DATABASE_URL=database_url,
            public_base_url=BASE_URL,
            stream_duplicate_window_s=60,
        )
    )
    await service.start()
    try:
        yield service
    finally:
        await service.stop()
