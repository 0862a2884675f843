"""Run the gateway app in-process (its lifespan included) behind an httpx client, and look at
the lifecycle stream with plain nats-py."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
from fastapi import FastAPI
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from pydantic import BaseModel, SecretStr
from reelvault_common.contracts.events import VideoEvent, parse_event
from reelvault_common.contracts.tenancy import DEFAULT_ORG
from reelvault_common.messaging.model_catalog import open_models_bucket, publish_catalog
from reelvault_common.messaging.topology import Topology
from reelvault_common.providers.models import DEFAULT_CATALOG, ModelCatalog
from reelvault_common.storage.filesystem import FilesystemStorage
from reelvault_gateway.app import create_app
from reelvault_gateway.settings import GatewaySettings

BASE_URL = "http://testserver"
SIGNING_KEY = "test-signing-key-0123456789abcdef"


def gateway_settings(
    nats_url: str, namespace: str, tmp_path: Path, **overrides: Any
) -> GatewaySettings:
    values: dict[str, Any] = {
        "NATS_URL": nats_url,
        "namespace": namespace,
        "stream_duplicate_window_s": 60,
        "storage_dir": tmp_path / "storage",
        "public_base_url": BASE_URL,
        "storage_signing_key": SecretStr(SIGNING_KEY),
        "create_visibility_timeout_s": 2.0,
        "rpc_timeout_s": 2.0,
        "publish_timeout_s": 2.0,
        "broker_connect_wait_s": 10.0,
        "max_upload_bytes": 300_000,
    }
    values.update(overrides)
    return GatewaySettings(**values)


def storage_of(settings: GatewaySettings) -> FilesystemStorage:
    """A second handle on the gateway's storage folder (same signing key)."""
    assert settings.storage_signing_key is not None
    key = settings.storage_signing_key.get_secret_value().encode()
    return FilesystemStorage(settings.storage_dir, settings.public_base_url, key)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class RunningGateway:
    app: FastAPI
    # Authenticates with ``key`` (when one was given).
    client: httpx.AsyncClient
    settings: GatewaySettings
    key: str | None = None

    def client_for(self, key: str | None = None) -> httpx.AsyncClient:
        """Another client of the same app (``key``: its API key; None: none)."""
        return httpx.AsyncClient(transport=httpx.ASGITransport(self.app), base_url=BASE_URL,
                                 timeout=30, headers=bearer(key) if key else None)


async def publish_models(gateway: RunningGateway, catalog: ModelCatalog = DEFAULT_CATALOG,
                         timeout_s: float = 10.0) -> None:
    """Publish the deployment's models as a generator does, and wait until the gateway has
    them (before, it answers a model outside its stand-in catalog with a 503)."""
    connection = await nats.connect(gateway.settings.nats_url)
    try:
        bucket = await open_models_bucket(connection, Topology.from_settings(gateway.settings))
        await publish_catalog(bucket, catalog)
    finally:
        await connection.close()
    deadline = time.monotonic() + timeout_s
    while gateway.app.state.context.models.published is False:
        assert time.monotonic() < deadline, "the gateway never saw the published models"
        await asyncio.sleep(0.05)


@asynccontextmanager
async def run_gateway(
    settings: GatewaySettings, key: str | None = None
) -> AsyncIterator[RunningGateway]:
    """The app with its lifespan; ``client`` sends ``key`` as its bearer credential."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        headers = bearer(key) if key else None
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL, timeout=30,
                                     headers=headers) as client:
            yield RunningGateway(app, client, settings, key)


class StreamProbe:
    """Reads the lifecycle stream directly (message count, last event per subject)."""

    def __init__(self, nc: Client, topology: Topology) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.topology = topology

    async def count(self) -> int:
        try:
            info = await self.js.stream_info(self.topology.stream)
        except NotFoundError:
            return 0
        return int(info.state.messages)

    async def last(
        self, event_type: str, org: str = DEFAULT_ORG
    ) -> tuple[VideoEvent, dict[str, str]]:
        subject = self.topology.subject(event_type, org)
        raw = await self.js.get_last_msg(self.topology.stream, subject)
        assert raw.data is not None
        return parse_event(raw.data), dict(raw.headers or {})

    async def publish(self, event: BaseModel) -> None:
        """Publish a lifecycle event as the other services do (``Nats-Msg-Id`` = event id)."""
        await self.js.publish(
            self.topology.subject(str(getattr(event, "type")), str(getattr(event, "org"))),  # noqa: B009
            event.model_dump_json().encode(),
            stream=self.topology.stream,
            headers={"Nats-Msg-Id": str(getattr(event, "event_id"))},  # noqa: B009
        )

    async def all(self) -> list[dict[str, Any]]:
        events = []
        for seq in range(1, await self.count() + 1):
            raw = await self.js.get_msg(self.topology.stream, seq)
            assert raw.data is not None
            events.append(json.loads(raw.data))
        return events


@asynccontextmanager
async def probe_stream(nats_url: str, topology: Topology) -> AsyncIterator[StreamProbe]:
    nc = await nats.connect(nats_url)
    try:
        yield StreamProbe(nc, topology)
    finally:
        await nc.close()
