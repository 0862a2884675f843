"""Prometheus metrics every process shares: the ``/metrics`` server, periodic collectors, and
the families measured in common code (the consumer runner, JetStream, provider calls).

One registry per process (``prometheus_client``'s default), so a family is declared once, in
the module that measures it. Labels only ever take values from small, known sets: route
templates, statuses, consumer names, bucket names, organizations that have quotas; never ids,
paths or free text (``bounded`` folds anything else into ``other``).

Whatever needs I/O to be known (the database, JetStream consumer info) is read by
``PeriodicCollectors``: asyncio tasks in the service, every ``REELVAULT_METRICS_INTERVAL_S``.
A scrape only reads the values they left; a collector that fails logs, keeps its last values
and tries again next time: metrics never fail the service.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import REGISTRY, Counter, Gauge, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry
from pydantic import Field
from pydantic_settings import BaseSettings

from reelvault_common.runtime.settings import REELVAULT_SETTINGS

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from reelvault_common.messaging.topology import Topology

log = logging.getLogger(__name__)

DEFAULT_METRICS_PORT = 9100
OTHER = "other"


class MetricsSettings(BaseSettings):
    """Where a process serves ``/metrics`` and how often its collectors look
    (``REELVAULT_METRICS_PORT``, ``REELVAULT_METRICS_HOST``, ``REELVAULT_METRICS_INTERVAL_S``).
    The gateway serves ``/metrics`` on its own HTTP port instead."""

    model_config = REELVAULT_SETTINGS

    # 0: no /metrics server (the collectors still run: in-process tests read the registry).
    metrics_port: int = Field(default=DEFAULT_METRICS_PORT, ge=0, le=65535)
    # Loopback unless told otherwise: containers set 0.0.0.0 for their scraper.
    metrics_host: str = "127.0.0.1"
    metrics_interval_s: float = Field(default=15.0, gt=0)


def bounded(value: str, allowed: Collection[str], other: str = OTHER) -> str:
    """``value`` if it is one of ``allowed``, else ``other``: a label stays in a known set."""
    return value if value in allowed else other


# --- the /metrics server ----------------------------------------------------------------------
class MetricsServer:
    """``prometheus_client``'s HTTP server on its own thread (it answers any path, ``/metrics``
    included). ``stop()`` closes it; a process that just exits needs no stop (daemon thread)."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(
    settings: MetricsSettings, *, registry: CollectorRegistry = REGISTRY
) -> MetricsServer | None:
    """Serve ``registry`` on ``metrics_host:metrics_port``; None when the port is 0 or taken
    (logged: a process without ``/metrics`` still does its work)."""
    if settings.metrics_port == 0:
        return None
    host, port = settings.metrics_host, settings.metrics_port
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        log.warning("no /metrics: cannot listen on %s:%d (%s)", host, port, exc.strerror or exc)
        return None
    running = MetricsServer(server, thread)
    log.info("metrics at http://%s:%d/metrics", host, running.port)
    return running


# --- periodic collectors ----------------------------------------------------------------------
Collect = Callable[[], Awaitable[None]]


class PeriodicCollectors:
    """Runs each collector at once and then every ``interval_s``, each as its own task. A
    collector is given at most ``interval_s`` per round; one that fails (or times out) is
    logged once per run of failures and keeps the values it set last."""

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._tasks: list[asyncio.Task[None]] = []
        # Set before the tasks are cancelled: a cancellation lost inside a client call
        # (Python 3.11's asyncio.wait_for can swallow one) must not keep a loop going.
        self._stopping = False

    def start(self, name: str, collect: Collect) -> None:
        self._tasks.append(asyncio.create_task(self._loop(name, collect), name=f"metrics-{name}"))

    async def stop(self) -> None:
        self._stopping = True
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _loop(self, name: str, collect: Collect) -> None:
        failing = False
        while not self._stopping:
            try:
                async with asyncio.timeout(self._interval_s):
                    await collect()
            except Exception as exc:
                if self._stopping:
                    return
                if not failing:
                    log.warning("metrics: collecting %s failed, trying again every %.0fs: %r",
                                name, self._interval_s, exc)
                failing = True
            else:
                if failing:
                    log.info("metrics: collecting %s works again", name)
                failing = False
            await asyncio.sleep(self._interval_s)


class GaugeSnapshot(Collector):
    """A gauge whose whole set of series is replaced at once (``replace``): series that are
    gone disappear, and a scrape never sees half of an update. Nothing is exported until the
    first ``replace``/``set``: a value that was never read is absent, not 0."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str],
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._values: Mapping[tuple[str, ...], float] = {}
        if registry is not None:
            registry.register(self)

    def replace(self, values: Mapping[tuple[str, ...], float]) -> None:
        for labels in values:
            if len(labels) != len(self._labelnames):
                raise ValueError(f"{self._name} takes labels {self._labelnames}, not {labels}")
        self._values = dict(values)  # one assignment: atomic for the scrape thread

    def set(self, value: float) -> None:
        """The value of a gauge without labels."""
        self.replace({(): value})

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(self._name, self._documentation, labels=self._labelnames)
        for labels, value in sorted(self._values.items()):
            family.add_metric(list(labels), value)
        yield family

    def describe(self) -> Iterable[GaugeMetricFamily]:
        yield GaugeMetricFamily(self._name, self._documentation, labels=self._labelnames)


# --- JetStream: consumer lag, redeliveries, dead letters --------------------------------------
CONSUMER_PENDING = Gauge(
    "reelvault_consumer_pending",
    "Messages of the stream a durable consumer has not delivered yet (its lag), from "
    "JetStream's consumer info.",
    ["consumer"],
)
CONSUMER_ACK_PENDING = Gauge(
    "reelvault_consumer_ack_pending",
    "Messages delivered to a durable consumer and not acknowledged yet.",
    ["consumer"],
)
CONSUMER_REDELIVERIES = Counter(
    "reelvault_consumer_redeliveries",
    "Deliveries this process received that were not a message's first (attempt > 1).",
    ["consumer"],
)
DEAD_LETTERS = GaugeSnapshot(
    "reelvault_dead_letters",
    "Messages in the dead-letter stream (replayed ones stay until purged).", (),
)


def count_redelivery(consumer: str, attempt: int) -> None:
    """The consumer runner's hook: one delivery of ``consumer`` with this ``attempt``."""
    if attempt > 1:
        CONSUMER_REDELIVERIES.labels(consumer=consumer).inc()


class JetStreamInfo(Protocol):
    """What the collectors read of JetStream (``nats.js.JetStreamContext`` is one)."""

    async def consumer_info(self, stream: str, consumer: str, /) -> Any: ...

    async def stream_info(self, name: str, /) -> Any: ...


def watch_jetstream(
    collectors: PeriodicCollectors, js: JetStreamInfo, topology: Topology,
    consumers: Sequence[str],
) -> None:
    """Collect the lag of ``consumers`` (durable names) and the dead-letter count."""
    for name in consumers:
        CONSUMER_REDELIVERIES.labels(consumer=name)  # exported from the start, at 0

    async def lag() -> None:
        for name in consumers:
            info = await js.consumer_info(topology.stream, name)
            CONSUMER_PENDING.labels(consumer=name).set(int(info.num_pending or 0))
            CONSUMER_ACK_PENDING.labels(consumer=name).set(int(info.num_ack_pending or 0))

    async def dead_letters() -> None:
        info = await js.stream_info(topology.dead_letter_stream)
        DEAD_LETTERS.set(int(info.state.messages or 0))

    collectors.start("consumer lag", lag)
    collectors.start("dead letters", dead_letters)


# --- the video provider -----------------------------------------------------------------------
PROVIDER_REQUESTS = Counter(
    "reelvault_provider_requests",
    "HTTP calls to the video provider, by route (create, retrieve, list, delete, content) and "
    "answer (the HTTP status, or 'error' when no answer came).",
    ["provider", "route", "code"],
)
PROVIDER_ROUTES = frozenset({"create", "retrieve", "list", "delete", "content"})


def count_provider_request(provider: str, route: str, status: int | None) -> None:
    code = "error" if status is None else str(status)
    PROVIDER_REQUESTS.labels(provider=provider, route=bounded(route, PROVIDER_ROUTES),
                             code=code).inc()
