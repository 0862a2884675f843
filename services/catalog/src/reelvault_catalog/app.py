"""Bootstrap: wire settings, database, broker and handlers together (no logic here)."""

from __future__ import annotations

import logging
import uuid

from faststream.nats import NatsBroker
from reelvault_common.messaging.consuming import (
    DeadLetterRoute,
    EventPublisher,
    make_broker,
    stop_consuming,
    track_fetched,
    wait_for_nats,
)
from reelvault_common.messaging.topology import ConsumerPolicy, Topology
from reelvault_common.runtime.lifecycle import start_unless_stopped, wait_for_stop_signal
from reelvault_common.runtime.logs import configure_logging
from reelvault_common.runtime.startup import Startup
from sqlalchemy.ext.asyncio import AsyncEngine

from reelvault_catalog.handlers import (
    CatalogHandlers,
    ProjectionRetry,
    failure_stage,
    projection_policy,
    register,
)
from reelvault_catalog.migrate import database_unreachable, migrate
from reelvault_catalog.repository import CatalogRepository, make_engine
from reelvault_catalog.settings import CatalogSettings

log = logging.getLogger("reelvault_catalog")


class CatalogService:
    """The catalog: migrates its schema, projects lifecycle events, answers reads over NATS."""

    def __init__(self, settings: CatalogSettings) -> None:
        self.settings = settings
        self.topology = Topology.from_settings(settings)
        self.policy: ConsumerPolicy = projection_policy(
            self.topology,
            ack_wait_s=settings.projection_ack_wait_s,
            max_deliver=settings.projection_max_deliver,
            max_ack_pending=settings.projection_max_ack_pending,
        )
        self._engine: AsyncEngine | None = None
        self._repository: CatalogRepository | None = None
        self._broker: NatsBroker | None = None
        self._handlers: CatalogHandlers | None = None

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
        # Postgres and NATS may not be up yet (compose, Kubernetes, a restart): wait for them,
        # one log line per attempt, until REELVAULT_STARTUP_TIMEOUT_S.
        startup = Startup.from_settings(settings)
        try:
            await startup.wait_for("PostgreSQL", settings.database_url_for_logs,
                                   lambda: migrate(engine), retryable=database_unreachable)
            self._repository = CatalogRepository(engine, settings.public_base_url)
            await wait_for_nats(startup, settings, self.topology, [self.policy])
            broker = make_broker(settings, "reelvault-catalog")
            publisher = EventPublisher(broker, self.topology)
            handlers = CatalogHandlers(
                self._repository,
                ping_timeout_s=settings.ping_timeout_s,
                # The stage is the failing event's (a refused video.requested fails the request).
                dead_letter=DeadLetterRoute(self.policy, self.topology, publisher, "request",
                                            stage_of=failure_stage),
                retry=ProjectionRetry(
                    base_s=settings.projection_retry_base_s,
                    max_s=settings.projection_retry_max_s,
                    outage_poll_s=settings.db_outage_poll_s,
                ),
                batch_size=settings.projection_batch_size,
                on_recorded=self._announce_recorded,
            )
            register(broker, self.topology, handlers, max_workers=settings.max_workers,
                     rpc_workers=settings.rpc_workers, policy=self.policy)
            self._handlers = handlers
            self._broker = broker
            await broker.start()
            track_fetched(broker)
        except BaseException:
            await self.stop()
            raise

    async def _announce_recorded(self, video_id: uuid.UUID) -> None:
        broker = self._broker
        if broker is not None:
            await broker.connection.publish(self.topology.catalog_recorded,
                                            str(video_id).encode())

    async def stop(self) -> None:
        """Stop taking messages, let in-flight handlers finish within ``shutdown_grace_s``
        (the rest hand their messages back), then close the pool."""
        broker, self._broker = self._broker, None
        if broker is not None:
            await stop_consuming(broker)
        handlers, self._handlers = self._handlers, None
        if handlers is not None:
            await handlers.close()
        engine, self._engine = self._engine, None
        self._repository = None
        if engine is not None:
            await engine.dispose()


async def main() -> None:
    settings = CatalogSettings()
    configure_logging("catalog", settings.log_level, settings.log_format)
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
