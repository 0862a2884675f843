"""Fixtures of the generator's integration tests: the simulator, storage with uploaded images,
a watch on the lifecycle stream and a factory of generator services (stopped at the end)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from generator_harness import (
    API_KEY,
    GeneratorFactory,
    RunningSim,
    StreamWatch,
    run_sim,
    watch_stream,
)
from reelvault_common.contracts.events import ReferenceImage
from reelvault_common.runtime.settings import ServiceSettings, StorageSettings
from reelvault_common.storage.filesystem import FilesystemStorage
from reelvault_common.storage.layout import Buckets
from reelvault_generator.app import GeneratorService
from reelvault_generator.settings import GeneratorSettings


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[RunningSim]:
    async with run_sim(tmp_path / "sim") as running:
        yield running


@pytest.fixture
async def watch(service_settings: ServiceSettings) -> AsyncIterator[StreamWatch]:
    async with watch_stream(service_settings) as stream:
        yield stream


@pytest.fixture
def storage_dir(tmp_path: Path) -> Path:
    return tmp_path / "storage"


@pytest.fixture
async def upload(storage_dir: Path) -> Callable[[bytes, str], Awaitable[ReferenceImage]]:
    """Put an image into the images bucket, as the gateway's upload does."""
    settings = StorageSettings(storage_dir=storage_dir)
    buckets = Buckets.from_settings(settings)
    storage = FilesystemStorage(storage_dir, settings.public_base_url, b"k" * 32)
    await storage.ensure_buckets(buckets.all())
    counter = iter(range(1000))

    async def put(data: bytes, content_type: str = "image/png") -> ReferenceImage:
        key = f"acme/uploads/test-{next(counter)}.png"

        async def chunks() -> AsyncIterator[bytes]:
            yield data

        stored = await storage.put(buckets.images.name, key, chunks(), content_type)
        return ReferenceImage(bucket=stored.bucket, key=stored.key, content_type=content_type)

    return put


@pytest.fixture
async def make_generator(
    service_settings: ServiceSettings, sim: RunningSim, storage_dir: Path
) -> AsyncIterator[GeneratorFactory]:
    running: list[GeneratorService] = []

    async def factory(start: bool = True, **overrides: Any) -> GeneratorService:
        values: dict[str, Any] = {
            "NATS_URL": service_settings.nats_url,
            "namespace": service_settings.namespace,
            "stream_duplicate_window_s": service_settings.stream_duplicate_window_s,
            "OPENAI_BASE_URL": sim.base_url,
            "OPENAI_API_KEY": API_KEY,
            "storage_dir": storage_dir,
            "poll_interval_s": 0.2,
            "poll_max_interval_s": 0.5,
            "poll": {"retry_base_s": 0.2},
            "requests": {"retry_base_s": 0.2, "retry_max_s": 1.0},
            "create_timeout_s": 5.0,
            "claim_margin_s": 1.0,
            "recovery_margin_s": 5.0,
        }
        provider = overrides.pop("provider", None)
        transport = overrides.pop("http_transport", None)
        unknown = set(overrides) - set(GeneratorSettings.model_fields) - {
            "NATS_URL", "OPENAI_BASE_URL", "OPENAI_API_KEY"}
        assert not unknown, f"not generator settings: {unknown}"  # extra="ignore" would hide them
        for key, value in overrides.items():
            # A consumer's rules given in part (requests={"workers": 4}) keep the others.
            nested = isinstance(value, dict) and isinstance(values.get(key), dict)
            values[key] = {**values[key], **value} if nested else value
        service = GeneratorService(GeneratorSettings(**values), provider=provider,
                                   http_transport=transport)
        running.append(service)
        if start:
            await service.start()
        return service

    yield factory
    for service in running:
        if service.started:
            await service.stop()
