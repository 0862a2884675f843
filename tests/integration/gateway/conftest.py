"""Fixtures of the gateway's integration tests: settings on the test's namespace and storage
under tmp_path, a catalog double answering over NATS (keys, quotas and, unless a module says
otherwise, reads), the running app authenticating with a key of the double, a probe on the
stream and (where needed) the real catalog with a key it made."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
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

from tests.support.gateway_fakes import CatalogDouble, ServedDouble, serve_catalog_double
from tests.support.tenancy import create_key


@pytest.fixture
def settings(nats_url: str, namespace: str, tmp_path: Path) -> GatewaySettings:
    return gateway_settings(nats_url, namespace, tmp_path)


@pytest.fixture
def double() -> CatalogDouble:
    return CatalogDouble()


@pytest.fixture
def double_rpcs() -> Collection[str] | None:
    """Which catalog subjects the double answers (None: all). A module without a catalog's
    read side overrides it with ``KEYS_AND_QUOTAS``."""
    return None


@pytest.fixture
async def served(
    nats_url: str, namespace: str, double: CatalogDouble, double_rpcs: Collection[str] | None
) -> AsyncIterator[ServedDouble]:
    async with serve_catalog_double(nats_url, namespace, double, double_rpcs) as running:
        yield running


@pytest.fixture
def key(double: CatalogDouble) -> str:
    """A read + write key of the default organization, known to the double."""
    return double.add_key()


@pytest.fixture
async def gateway(
    settings: GatewaySettings, served: ServedDouble, key: str
) -> AsyncIterator[RunningGateway]:
    async with run_gateway(settings, key) as running:
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


@pytest.fixture
async def catalog_gateway(
    settings: GatewaySettings, catalog: CatalogService, nats_url: str, namespace: str
) -> AsyncIterator[RunningGateway]:
    """The gateway in front of the real catalog, with a key the catalog made."""
    async with run_gateway(settings, await create_key(nats_url, namespace)) as running:
        yield running
