"""Bootstrap: wire settings, database, broker and handlers together (no logic here)."""

from __future__ import annotations

import logging

from faststream.nats import NatsBroker
from reelvault_common.lifecycle import wait_for_stop_signal
from reelvault_common.logs import configure_logging
from reelvault_common.messaging import make_broker, prepare_topology
from reelvault_common.topology import ConsumerPolicy, Topology
from sqlalchemy.ext.asyncio import AsyncEngine

from reelvault_catalog.handlers import CatalogHandlers, projection_policy, register
from reelvault_catalog.migrate import migrate
from reelvault_catalog.repository import CatalogRepository, make_engine
from reelvault_catalog.settings import CatalogSettings

log = logging.getLogger("reelvault_catalog")


class CatalogService:
    """The catalog: migrates its schema, projects lifecycle events, answers reads over NATS."""

    def __init__(self, settings: CatalogSettings) -> None:
        self.settings = settings
        self.topology = Topology.from_settings(settings)
        self.policy: ConsumerPolicy = projection_policy(self.topology)
        self._engine: AsyncEngine | None = None
        self._repository: CatalogRepository | None = None
        self._broker: NatsBroker | None = None

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
        self._engine = make_engine(settings)
        try:
            await migrate(self._engine)
            self._repository = CatalogRepository(self._engine, settings.public_base_url)
            await prepare_topology(settings, self.topology, [self.policy])
            broker = make_broker(settings, "reelvault-catalog")
            handlers = CatalogHandlers(self._repository, ping_timeout_s=settings.ping_timeout_s)
            register(broker, self.topology, handlers,
                     max_workers=settings.max_workers, rpc_workers=settings.rpc_workers)
            self._broker = broker
            await broker.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop taking messages, let in-flight handlers finish, then close the pool."""
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
    service = CatalogService(settings)
    await service.start()
    log.info("catalog ready")
    try:
        sig = await wait_for_stop_signal()
        log.info("catalog stopping (%s)", sig.name)
    finally:
        await service.stop()
    log.info("catalog stopped")
