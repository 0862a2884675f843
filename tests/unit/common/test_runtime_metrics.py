"""The shared metrics helpers: bounded labels, atomically replaced gauges, periodic collectors
that never fail the service, the JetStream and provider families, the /metrics server."""

from __future__ import annotations

import asyncio
import logging
import socket
import urllib.request
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from reelvault_common.messaging.topology import Topology
from reelvault_common.runtime.metrics import (
    DEFAULT_METRICS_PORT,
    GaugeSnapshot,
    MetricsSettings,
    PeriodicCollectors,
    bounded,
    count_provider_request,
    count_redelivery,
    serve_metrics,
    watch_jetstream,
)


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_a_label_outside_its_known_set_becomes_other() -> None:
    assert bounded("GET", {"GET", "POST"}) == "GET"
    assert bounded("BREW", {"GET", "POST"}) == "other"
    assert bounded("", {"GET"}, other="unmatched") == "unmatched"


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert MetricsSettings().metrics_port == DEFAULT_METRICS_PORT == 9100
    assert MetricsSettings().metrics_host == "127.0.0.1"
    monkeypatch.setenv("REELVAULT_METRICS_PORT", "0")
    monkeypatch.setenv("REELVAULT_METRICS_HOST", "0.0.0.0")
    monkeypatch.setenv("REELVAULT_METRICS_INTERVAL_S", "2.5")
    settings = MetricsSettings()
    assert (settings.metrics_port, settings.metrics_host, settings.metrics_interval_s) == (
        0, "0.0.0.0", 2.5)
    monkeypatch.setenv("REELVAULT_METRICS_PORT", "70000")
    with pytest.raises(ValueError, match="metrics_port"):
        MetricsSettings()


def test_a_snapshot_gauge_replaces_all_its_series_at_once() -> None:
    registry = CollectorRegistry()
    gauge = GaugeSnapshot("t_usage_ratio", "test", ["org", "limit"], registry=registry)
    gauge.replace({("acme", "videos_per_month"): 0.5, ("globex", "storage_bytes"): 0.9})
    assert registry.get_sample_value(
        "t_usage_ratio", {"org": "acme", "limit": "videos_per_month"}) == 0.5
    gauge.replace({("globex", "storage_bytes"): 1.0})
    # A series that is gone disappears instead of keeping its last value.
    assert registry.get_sample_value(
        "t_usage_ratio", {"org": "acme", "limit": "videos_per_month"}) is None
    assert registry.get_sample_value(
        "t_usage_ratio", {"org": "globex", "limit": "storage_bytes"}) == 1.0
    with pytest.raises(ValueError, match="takes labels"):
        gauge.replace({("only-one",): 1.0})
    assert b"# TYPE t_usage_ratio gauge" in generate_latest(registry)


def test_a_gauge_never_read_is_absent_not_zero() -> None:
    registry = CollectorRegistry()
    gauge = GaugeSnapshot("t_last_success", "test", (), registry=registry)
    assert registry.get_sample_value("t_last_success") is None
    gauge.set(0)
    assert registry.get_sample_value("t_last_success") == 0
    gauge.set(1767323045)
    assert registry.get_sample_value("t_last_success") == 1767323045


async def test_collectors_repeat_survive_failures_and_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = {"good": 0, "bad": 0}

    async def good() -> None:
        runs["good"] += 1

    async def bad() -> None:
        runs["bad"] += 1
        raise ConnectionError("database away")

    collectors = PeriodicCollectors(0.02)
    with caplog.at_level(logging.WARNING, logger="reelvault_common.runtime.metrics"):
        collectors.start("good", good)
        collectors.start("bad", bad)
        for _ in range(200):
            if runs["good"] >= 3 and runs["bad"] >= 3:
                break
            await asyncio.sleep(0.01)
        await collectors.stop()
    assert runs["good"] >= 3 and runs["bad"] >= 3
    # One warning for the run of failures, not one per round.
    warnings = [r for r in caplog.records if "collecting bad failed" in r.getMessage()]
    assert len(warnings) == 1
    after_stop = dict(runs)
    await asyncio.sleep(0.06)
    assert runs == after_stop


async def test_a_hanging_collector_is_cut_off_at_the_interval() -> None:
    started = asyncio.Event()

    async def hangs() -> None:
        started.set()
        await asyncio.sleep(3600)

    collectors = PeriodicCollectors(0.05)
    collectors.start("hangs", hangs)
    await asyncio.wait_for(started.wait(), 1)
    await asyncio.sleep(0.2)  # several rounds: each was cut off, none piled up
    await asyncio.wait_for(collectors.stop(), 1)


async def test_a_collector_whose_cancellation_is_swallowed_still_stops() -> None:
    calls = 0

    async def swallows() -> None:
        nonlocal calls
        calls += 1
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("the client turned the cancel into its own error") from None

    collectors = PeriodicCollectors(10)
    collectors.start("swallows", swallows)
    await asyncio.sleep(0.01)
    await asyncio.wait_for(collectors.stop(), 1)
    assert calls == 1


def test_only_redeliveries_are_counted() -> None:
    before = sample("reelvault_consumer_redeliveries_total", consumer="t-unit-redeliveries") or 0
    count_redelivery("t-unit-redeliveries", 1)
    count_redelivery("t-unit-redeliveries", 2)
    count_redelivery("t-unit-redeliveries", 7)
    assert sample("reelvault_consumer_redeliveries_total",
                  consumer="t-unit-redeliveries") == before + 2


def test_provider_requests_keep_routes_and_codes_bounded() -> None:
    def count(route: str, code: str) -> float:
        return sample("reelvault_provider_requests_total", provider="t-unit", route=route,
                      code=code) or 0

    before = (count("create", "200"), count("retrieve", "error"), count("other", "404"))
    count_provider_request("t-unit", "create", 200)
    count_provider_request("t-unit", "retrieve", None)
    count_provider_request("t-unit", "/videos/video_123", 404)  # never a raw path
    assert (count("create", "200"), count("retrieve", "error"), count("other", "404")) == (
        before[0] + 1, before[1] + 1, before[2] + 1)


@dataclass
class FakeJetStream:
    pending: dict[str, tuple[int, int]]
    dead: int = 0
    asked: list[tuple[str, str]] = field(default_factory=list)

    async def consumer_info(self, stream: str, consumer: str, /) -> Any:
        self.asked.append((stream, consumer))
        waiting, unacked = self.pending[consumer]
        return SimpleNamespace(num_pending=waiting, num_ack_pending=unacked)

    async def stream_info(self, name: str, /) -> Any:
        self.asked.append((name, ""))
        return SimpleNamespace(state=SimpleNamespace(messages=self.dead))


async def test_consumer_lag_and_dead_letters_come_from_jetstream() -> None:
    topology = Topology("t-unit")
    names = ["t-unit-catalog-projection", "t-unit-archiver-completed"]
    js = FakeJetStream({names[0]: (12, 3), names[1]: (0, 1)}, dead=4)
    collectors = PeriodicCollectors(10)
    watch_jetstream(collectors, js, topology, names)
    try:
        for _ in range(100):
            if sample("reelvault_dead_letters") == 4 and sample(
                    "reelvault_consumer_pending", consumer=names[1]) == 0:
                break
            await asyncio.sleep(0.01)
    finally:
        await collectors.stop()
    assert sample("reelvault_consumer_pending", consumer=names[0]) == 12
    assert sample("reelvault_consumer_ack_pending", consumer=names[0]) == 3
    assert sample("reelvault_consumer_ack_pending", consumer=names[1]) == 1
    assert sample("reelvault_dead_letters") == 4
    # Redeliveries are exported from the start, at 0.
    assert sample("reelvault_consumer_redeliveries_total", consumer=names[1]) == 0
    assert (topology.stream, names[0]) in js.asked
    assert (topology.dead_letter_stream, "") in js.asked


def test_the_server_serves_the_registry_and_stops() -> None:
    registry = CollectorRegistry()
    GaugeSnapshot("t_served", "test", ["kind"], registry=registry).replace({("a",): 1.0})
    assert serve_metrics(MetricsSettings(metrics_port=0), registry=registry) is None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = serve_metrics(MetricsSettings(metrics_port=port), registry=registry)
    assert server is not None and server.port == port
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            assert reply.status == 200
            assert 't_served{kind="a"} 1.0' in reply.read().decode()
        # The port is taken now: a second server logs and gives up instead of failing.
        assert serve_metrics(MetricsSettings(metrics_port=port), registry=registry) is None
    finally:
        server.stop()


def test_the_ops_bucket_is_named_after_the_namespace() -> None:
    assert Topology("my-ns").ops_bucket == "my_ns_ops_state"
