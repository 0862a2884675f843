"""The gateway's metrics with in-memory adapters: bounded labels on request durations, the
signed links handed out counted as egress (the object's size) unless they lead back to
``/files``, and a storage that still behaves as the one it wraps."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from reelvault_common.storage.filesystem import FilesystemStorage
from reelvault_gateway.app import create_app
from reelvault_gateway.context import GatewayContext
from reelvault_gateway.deps import get_context
from reelvault_gateway.metrics import MeteredStorage, metered_storage

from tests.support.gateway_fakes import FakeCatalog, fake_context, fake_settings, make_record

VIDEO = b"v" * 5000
KEY = "default/2026/01/abc/video.mp4"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def requests(route: str, method: str, status: str) -> float:
    return sample("reelvault_http_request_duration_seconds_count", route=route, method=method,
                  status=status)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
async def context(tmp_path: Path) -> GatewayContext:
    context = await fake_context(fake_settings(tmp_path))
    await context.storage.put("videos", KEY, _once(VIDEO), "video/mp4")
    return context


def client_of(context: GatewayContext, key: str | None = None) -> httpx.AsyncClient:
    app: FastAPI = create_app(context.settings)
    app.dependency_overrides[get_context] = lambda: context
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    headers = {"Authorization": f"Bearer {key}"} if key else None
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=headers)


async def test_methods_and_routes_stay_in_known_sets(context: GatewayContext) -> None:
    before = (requests("unmatched", "other", "404"), requests("/healthz", "GET", "200"),
              requests("/v1/videos", "GET", "401"))
    async with client_of(context) as client:
        assert (await client.request("BREW", "/coffee/pot-42")).status_code == 404
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/v1/videos", params={"limit": 3})).status_code == 401
    assert (requests("unmatched", "other", "404"), requests("/healthz", "GET", "200"),
            requests("/v1/videos", "GET", "401")) == tuple(count + 1 for count in before)


async def test_a_signed_content_link_counts_the_object_size(context: GatewayContext) -> None:
    metered = dataclasses.replace(
        context, storage=MeteredStorage(context.storage, ["videos", "thumbnails"]))
    assert isinstance(context.catalog, FakeCatalog)
    double = context.catalog.double
    done = make_record(status="completed", video_bucket="videos", video_key=KEY, bytes=5000)
    double.records[done.id] = done
    before = sample("reelvault_egress_bytes_total", bucket="videos")
    async with client_of(metered, double.add_key()) as client:
        for _ in range(2):
            reply = await client.get(f"/v1/videos/{done.id}/content")
            assert reply.status_code == 307
    for _ in range(100):  # counted once the redirect is out
        if sample("reelvault_egress_bytes_total", bucket="videos") == before + 2 * len(VIDEO):
            break
        await asyncio.sleep(0.01)
    assert sample("reelvault_egress_bytes_total", bucket="videos") == before + 2 * len(VIDEO)


async def test_the_metered_storage_behaves_as_the_one_it_wraps(context: GatewayContext) -> None:
    inner = context.storage
    assert isinstance(inner, FilesystemStorage)
    # Filesystem links lead back to /files, where the bytes are counted as they are sent.
    assert metered_storage(inner, context.buckets.all()) is inner
    storage = MeteredStorage(inner, ["videos"])
    stored = await storage.put("videos", "default/x/video.mp4", _once(b"abc"), "video/mp4")
    assert stored.bytes == 3
    info = await storage.stat("videos", "default/x/video.mp4")
    assert info is not None and info.size == 3
    assert b"".join([chunk async for chunk in storage.read("videos", KEY)]) == VIDEO
    assert await storage.public_url("videos", KEY) is None
    await storage.put("brand-kits", "default/kit.json", _once(b"{}"), "application/json")
    before = sample("reelvault_egress_bytes_total", bucket="brand-kits")
    # A bucket outside the known set is not a label: nothing counted, the link still made.
    assert await storage.signed_url("brand-kits", "default/kit.json", 60)
    await asyncio.sleep(0.01)
    assert sample("reelvault_egress_bytes_total", bucket="brand-kits") == before
    await storage.aclose()
