"""Bootstrap: wire settings, database, broker and handlers together (no logic here).

One NATS connection: FastStream's broker answers the requests (core-NATS request/reply) and
its public ``broker.connection`` carries the projection's ``ConsumerRunner``, the events it
publishes (dead letters, quota crossings) and the ``catalog_recorded`` and ``key_changes``
announcements."""

from __future__ import annotations

import asyncio
import logging
import uuid

from faststream.nats import NatsBroker
from reelvault_common.contracts.events import (
    OrgWebhookEndpointDisabled,
    VideoCancelRequested,
    VideoDeleted,
)
from reelvault_common.messaging.broker import make_broker
from reelvault_common.messaging.consumer import ConsumerRunner
from reelvault_common.messaging.publisher import EventPublisher
from reelvault_common.messaging.setup import wait_for_nats
from reelvault_common.messaging.topology import ConsumerPolicy, Topology
from reelvault_common.runtime.lifecycle import start_unless_stopped, wait_for_stop_signal
from reelvault_common.runtime.logs import configure_logging
from reelvault_common.runtime.metrics import PeriodicCollectors, serve_metrics
from reelvault_common.runtime.startup import Startup
from reelvault_common.runtime.telemetry import configure_telemetry
from sqlalchemy.ext.asyncio import AsyncEngine

from reelvault_catalog.consumers import projection_consumer, projection_policy
from reelvault_catalog.deletion import DeletionHandlers, Deletions
from reelvault_catalog.handlers import CatalogHandlers, register_rpc
from reelvault_catalog.metrics import (
    CountingRepository,
    instrument_engine,
    start_collectors,
    start_counting,
)
from reelvault_catalog.migrate import database_unreachable, migrate
from reelvault_catalog.repository import CatalogRepository, make_engine
from reelvault_catalog.settings import CatalogSettings
from reelvault_catalog.storage_audit import StorageAudit, StorageAuditHandlers
from reelvault_catalog.tenancy_handlers import TenancyHandlers
from reelvault_catalog.tenancy_repository import TenancyRepository
from reelvault_catalog.usage_repository import QuotaEvent, UsageRepository
from reelvault_catalog.webhooks.addresses import Resolver, system_resolver
from reelvault_catalog.webhooks.service import Webhooks

log = logging.getLogger("reelvault_catalog")


class CatalogService:
    """The catalog: migrates its schema, projects lifecycle events, answers reads over NATS."""

    def __init__(self, settings: CatalogSettings, *,
                 webhook_resolver: Resolver = system_resolver) -> None:
        self.settings = settings
        self._webhook_resolver = webhook_resolver
        self._webhooks: Webhooks | None = None
        self.topology = Topology.from_settings(settings)
        self.policy: ConsumerPolicy = projection_policy(self.topology, settings.projection)
        self._engine: AsyncEngine | None = None
        self._repository: CatalogRepository | None = None
        self._broker: NatsBroker | None = None
        self._handlers: CatalogHandlers | None = None
        self._publisher: EventPublisher | None = None
        self._runner: ConsumerRunner | None = None
        self._metrics: PeriodicCollectors | None = None
        self._deletions: Deletions | None = None
        self._sweeping = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def deletions(self) -> Deletions:
        """The delete path and the retention sweeper (tests drive its passes)."""
        if self._deletions is None:
            raise RuntimeError("the catalog is not started")
        return self._deletions

    @property
    def webhooks(self) -> Webhooks:
        """Outbound webhooks: endpoints, the delivery log and the dispatcher (tests)."""
        if self._webhooks is None:
            raise RuntimeError("the catalog is not started")
        return self._webhooks

    @property
    def repository(self) -> CatalogRepository:
        """Direct database access (admin tools, tests); other services use the RPC API."""
        if self._repository is None:
            raise RuntimeError("the catalog is not started")
        return self._repository

    async def start(self) -> None:
        settings = self.settings
        log.info("catalog starting: database %s, namespace %s",
                 settings.database_url_for_logs, settings.namespace)
        engine = self._engine = make_engine(settings)
        instrument_engine(engine)
        # Postgres and NATS may not be up yet (compose, Kubernetes, a restart): wait for them,
        # one log line per attempt, until REELVAULT_STARTUP_TIMEOUT_S.
        startup = Startup.from_settings(settings)
        try:
            await startup.wait_for("PostgreSQL", settings.database_url_for_logs,
                                   lambda: migrate(engine), retryable=database_unreachable)
            self._repository = CountingRepository(engine, settings.public_base_url)
            start_counting()
            webhooks = self._webhooks = Webhooks(engine, settings, self.topology, self._publish,
                                                 resolve=self._webhook_resolver)
            await wait_for_nats(startup, settings, self.topology, [self.policy, webhooks.policy])
            tenancy = TenancyHandlers(
                TenancyRepository(engine),
                UsageRepository(engine, settings.prices_usd_per_second),
                publish=self._publish,
                key_changed=self._announce_key_changed,
            )
            handlers = self._handlers = CatalogHandlers(
                self._repository,
                ping_timeout_s=settings.ping_timeout_s,
                outage_poll_s=settings.db_outage_poll_s,
                batch_size=settings.projection_batch_size,
                on_recorded=self._announce_recorded,
                on_stored=tenancy.after_stored,
            )
            deletions = self._deletions = Deletions(
                engine, self._publish,
                batch_size=settings.retention_batch_size,
                max_deletions_per_s=settings.retention_max_deletions_per_s,
            )
            broker = self._broker = make_broker(settings, "reelvault-catalog")
            register_rpc(broker, self.topology, handlers, tenancy,
                         rpc_workers=settings.rpc_workers,
                         more={**DeletionHandlers(deletions).answers(), **webhooks.answers(),
                               **StorageAuditHandlers(StorageAudit(engine)).answers()})
            await broker.start()
            publisher = self._publisher = EventPublisher(broker.connection, self.topology)
            self._runner = ConsumerRunner(
                broker.connection, self.topology,
                [projection_consumer(self.topology, settings.projection, handlers, publisher),
                 webhooks.consumer()],
                grace_s=settings.shutdown_grace_s,
            )
            await self._runner.start()
            webhooks.start()
            if settings.retention_sweep_interval_s > 0:
                self._sweeping.clear()
                self._sweeper = asyncio.create_task(
                    deletions.run(settings.retention_sweep_interval_s, self._sweeping),
                    name="retention-sweeper",
                )
            self._metrics = start_collectors(settings, engine, broker.connection.jetstream(),
                                             self.topology, [self.policy.durable])
        except BaseException:
            await self.stop()
            raise

    async def _announce_recorded(self, video_id: uuid.UUID) -> None:
        """Core NATS, at most once: "video <id> has its row now" (the gateway waits for it)."""
        broker = self._broker
        if broker is not None:
            await broker.connection.publish(self.topology.catalog_recorded,
                                            str(video_id).encode())

    async def _announce_key_changed(self, public_id: str) -> None:
        """Core NATS, at most once: "key <public id> changed" (gateways drop it from cache)."""
        broker = self._broker
        if broker is not None:
            await broker.connection.publish(self.topology.key_changes, public_id.encode())

    async def _publish(self, event: QuotaEvent | VideoDeleted | VideoCancelRequested
                       | OrgWebhookEndpointDisabled) -> None:
        publisher = self._publisher
        if publisher is None:
            raise RuntimeError("the catalog's publisher is not started")
        await publisher.publish(event)

    async def stop(self) -> None:
        """Stop taking events, let the ones in flight finish within ``shutdown_grace_s`` (the
        rest are handed back), then stop answering reads and close the connection and pool."""
        metrics, self._metrics = self._metrics, None
        if metrics is not None:
            await metrics.stop()
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            self._sweeping.set()
            await sweeper
        self._deletions = None
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.stop()
        webhooks, self._webhooks = self._webhooks, None
        if webhooks is not None:
            await webhooks.stop()
        handlers, self._handlers = self._handlers, None
        if handlers is not None:
            await handlers.close()
        self._publisher = None
        broker, self._broker = self._broker, None
        if broker is not None:
            await broker.stop()
        engine, self._engine = self._engine, None
        self._repository = None
        if engine is not None:
            await engine.dispose()


async def main() -> None:
    settings = CatalogSettings()
    configure_logging("catalog", settings.log_level, settings.log_format)
    serve_metrics(settings)
    configure_telemetry("catalog")
    service = CatalogService(settings)
    if await start_unless_stopped(service.start, service.stop, service="catalog",
                                  logger=log) is not None:
        log.info("catalog stopped")
        return
    log.info("catalog ready")
    try:
        sig = await wait_for_stop_signal()
        log.info("catalog stopping (%s)", sig.name)
    finally:
        await service.stop()
    log.info("catalog stopped")
