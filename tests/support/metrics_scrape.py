"""Scraping this process's ``/metrics`` in tests: a real server on a free port, read back as
samples keyed by name and labels."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from reelvault_common.runtime.metrics import MetricsSettings, serve_metrics

from reelvault.embedded import free_port

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
async def scrape() -> AsyncIterator[Callable[[], Awaitable[Samples]]]:
    server = serve_metrics(MetricsSettings(metrics_port=free_port()))
    assert server is not None
    url = f"http://127.0.0.1:{server.port}/metrics"
    client = httpx.AsyncClient(timeout=5)

    async def read() -> Samples:
        reply = await client.get(url)
        assert reply.status_code == 200
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(reply.text)
            for sample in family.samples
        }

    try:
        yield read
    finally:
        await client.aclose()
        server.stop()
