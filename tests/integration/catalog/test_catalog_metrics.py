"""``python -m reelvault_catalog`` serves /metrics on ``REELVAULT_METRICS_PORT``: after a video's
events are projected, a quota is set and a backup is recorded, the families show them."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import nats
import pytest
from prometheus_client.parser import text_string_to_metric_families
from reelvault_common.contracts.catalog import QuotaLimits, Reserve, SetQuotas
from reelvault_common.messaging.publisher import EventPublisher
from reelvault_common.messaging.topology import Topology
from reelvault_common.runtime.settings import ServiceSettings

from reelvault.embedded import free_port
from tests.support.catalog_events import VideoStory
from tests.support.tenancy import ask_catalog

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scrape_until(
    url: str, ready: Callable[[Samples], bool], timeout_s: float = 30
) -> Samples:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=5) as client:
        while True:
            reply = await client.get(url)
            assert reply.status_code == 200
            assert reply.headers["content-type"].startswith("text/plain")
            samples = parse(reply.text)
            if ready(samples):
                return samples
            assert time.monotonic() < deadline, f"metrics never got there:\n{reply.text}"
            await asyncio.sleep(0.2)


@pytest.fixture
async def catalog_process(
    service_settings: ServiceSettings, database_url: str, tmp_path: Path
) -> AsyncIterator[str]:
    """The catalog as its own process; yields its metrics URL."""
    port = free_port()
    log_path = tmp_path / "catalog.log"
    env = {
        **os.environ,
        "NATS_URL": service_settings.nats_url,
        "DATABASE_URL": database_url,
        "REELVAULT_NAMESPACE": service_settings.namespace,
        "REELVAULT_METRICS_PORT": str(port),
        "REELVAULT_METRICS_INTERVAL_S": "0.3",
    }
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "reelvault_catalog", env=env, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 60
        while "catalog ready" not in log_path.read_text():
            assert process.returncode is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}/metrics"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=30) == 0, log_path.read_text()
        assert "metrics: collecting" not in log_path.read_text()  # no collector ever failed
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_catalog_metrics_follow_a_video_quotas_and_backups(
    catalog_process: str, service_settings: ServiceSettings
) -> None:
    topology = Topology.from_settings(service_settings)
    durable = topology.durable("catalog", "projection")
    # Before anything happened: every status at 0, no backup recorded, nothing dead.
    first = await scrape_until(catalog_process, lambda s: (
        value(s, "reelvault_videos_by_status", status="queued") == 0
        and value(s, "reelvault_backup_last_success_timestamp_seconds") is not None
        and value(s, "reelvault_dead_letters") is not None))
    assert value(first, "reelvault_backup_last_success_timestamp_seconds") == 0
    assert value(first, "reelvault_dead_letters") == 0
    assert value(first, "reelvault_consumer_redeliveries_total", consumer=durable) == 0
    assert value(first, "reelvault_db_pool_max_connections") == 20  # 10 + 10 overflow

    story = VideoStory()
    nats_url, namespace = service_settings.nats_url, service_settings.namespace
    await ask_catalog(nats_url, namespace, SetQuotas(
        org="default", limits=QuotaLimits(videos_per_month=5, storage_bytes=10_000)))
    await ask_catalog(nats_url, namespace, Reserve(
        org="default", video_id=story.video_id, model="sora-2", seconds=4))
    nc = await nats.connect(nats_url)
    try:
        publisher = EventPublisher(nc, topology)
        for event in (story.requested(), story.started(), story.completed(),
                      story.stored(size=1234)):
            await publisher.publish(event)
        js = nc.jetstream()
        kv = await js.create_key_value(bucket=topology.ops_bucket)
        await kv.put("backup.last_success", b"1767323045")
    finally:
        await nc.close()

    samples = await scrape_until(catalog_process, lambda s: (
        value(s, "reelvault_videos_by_status", status="completed") == 1
        and value(s, "reelvault_storage_bytes", bucket="videos") == 1234
        and value(s, "reelvault_quota_usage_ratio", org="default",
                  limit="storage_bytes") == pytest.approx(0.1333)  # video and thumbnail
        and value(s, "reelvault_backup_last_success_timestamp_seconds") == 1767323045
    ))
    assert value(samples, "reelvault_videos_by_status", status="queued") == 0
    for status in ("queued", "processing", "completed"):
        # Each transition counted once; failed never happened.
        assert value(samples, "reelvault_videos_total", status=status) == 1, status
    assert value(samples, "reelvault_videos_total", status="failed") == 0
    assert value(samples, "reelvault_storage_objects", bucket="videos") == 1
    assert value(samples, "reelvault_storage_bytes", bucket="thumbnails") == 99
    assert value(samples, "reelvault_storage_objects", bucket="thumbnails") == 1
    assert value(samples, "reelvault_quota_usage_ratio", org="default",
                 limit="videos_per_month") == pytest.approx(0.2)
    # Limits that are not set have no series.
    assert value(samples, "reelvault_quota_usage_ratio", org="default",
                 limit="cost_usd_per_month") is None
    assert value(samples, "reelvault_consumer_pending", consumer=durable) == 0
    assert value(samples, "reelvault_dead_letters") == 0

    # The database, as PostgreSQL and the pool see it.
    assert (value(samples, "reelvault_db_size_bytes") or 0) > 1_000_000
    tables = {dict(labels)["table"] for name, labels in samples
              if name == "reelvault_db_table_rows"}
    assert {"videos", "organizations", "org_quotas", "usage_reservations"} <= tables
    # The collector's own pg_stat_activity query is active while it runs.
    assert (value(samples, "reelvault_db_connections", state="active") or 0) >= 1
    assert value(samples, "reelvault_db_connections", state="idle") is not None
    pool = {state: value(samples, "reelvault_db_pool_connections", state=state)
            for state in ("checked_out", "idle", "overflow")}
    assert all(count is not None and 0 <= count <= 20 for count in pool.values()), pool
    for kind in ("select", "insert", "update"):
        count = value(samples, "reelvault_db_query_duration_seconds_count", statement=kind)
        assert count is not None and count > 0, kind
    # No label carries an id: no video id, key or raw path anywhere in the output.
    labels = {v for _, pairs in samples for _, v in pairs}
    assert not any(str(story.video_id) in v or "/" in v for v in labels), labels
