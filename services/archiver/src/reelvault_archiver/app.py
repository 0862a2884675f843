"""Bootstrap: wire settings, storage, provider client, NATS and the consumers together."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from nats.aio.client import Client as NatsClient
from reelvault_common.messaging.consumer import ConsumerRunner
from reelvault_common.messaging.publisher import EventPublisher
from reelvault_common.messaging.setup import wait_for_connection, wait_for_nats
from reelvault_common.messaging.topology import Topology
from reelvault_common.runtime.lifecycle import start_unless_stopped, wait_for_stop_signal
from reelvault_common.runtime.logs import configure_logging
from reelvault_common.runtime.metrics import PeriodicCollectors, serve_metrics
from reelvault_common.runtime.settings import ConsumerSettings
from reelvault_common.runtime.startup import Startup
from reelvault_common.runtime.telemetry import configure_telemetry
from reelvault_common.storage.claims import ClaimedStorage, KeyClaims, NatsClaimStore
from reelvault_common.storage.factory import open_storage
from reelvault_common.storage.interface import ObjectStorage
from reelvault_common.storage.layout import Buckets

from reelvault_archiver.consumers import (
    SERVICE,
    archive_consumers,
    consumer_policies,
    deletions_consumer,
)
from reelvault_archiver.decisions import RetryPolicy
from reelvault_archiver.handlers import ArchiveHandler
from reelvault_archiver.metrics import MeteredContentSource, MeteredCopier, start_collectors
from reelvault_archiver.orphans import CatalogReferences, NatsSweepLease, OrphanSweeper
from reelvault_archiver.removal import RemoveDeletedObjects
from reelvault_archiver.scheduling import DeadlineScheduler
from reelvault_archiver.settings import ArchiverSettings
from reelvault_archiver.sources import ContentSources
from reelvault_archiver.thumbnails import ThumbnailSpec
from reelvault_archiver.tuning import tune_http_reads, tune_malloc

log = logging.getLogger(__name__)


def retry_policy(
    settings: ArchiverSettings, pacing: ConsumerSettings | None = None
) -> RetryPolicy:
    """When download retries stop (``settings``) and how they are paced (a consumer's
    ``retry_base_s``/``retry_max_s``; ``completed``'s when not given)."""
    pacing = pacing or settings.completed
    return RetryPolicy(
        base_delay_s=pacing.retry_base_s,
        max_delay_s=pacing.retry_max_s,
        not_found_attempts=settings.not_found_attempts,
        verification_attempts=settings.verification_attempts,
        max_attempts_without_deadline=settings.max_attempts_without_deadline,
        min_time_left_s=settings.min_time_left_s,
    )


class ArchiverService:
    def __init__(self, settings: ArchiverSettings) -> None:
        self.settings = settings
        self.topology = Topology.from_settings(settings)
        self.buckets = Buckets.from_settings(settings)
        self.policies = consumer_policies(settings, self.topology)
        self._nc: NatsClient | None = None
        self._runner: ConsumerRunner | None = None
        self._storage: ObjectStorage | None = None
        self._sources: ContentSources | None = None
        self._scheduler: DeadlineScheduler | None = None
        self._metrics: PeriodicCollectors | None = None
        self._orphans_stopping = asyncio.Event()
        self._orphans: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            # E.g. a bucket with other rules (BucketRulesMismatch): release what was opened.
            await self.stop()
            raise

    async def _start(self) -> None:
        settings = self.settings
        tune_http_reads(settings.download_chunk_bytes)
        tune_malloc()
        # NATS may not be up yet: wait for it (one log line per attempt) until
        # REELVAULT_STARTUP_TIMEOUT_S.
        startup = Startup.from_settings(settings)
        await wait_for_nats(startup, settings, self.topology, self.policies)
        storage = self._storage = open_storage(settings)
        await storage.ensure_buckets(self.buckets.all())
        # Downloads only ever go to each provider's configured base URL.
        sources = self._sources = ContentSources.from_settings(settings)
        # One set of copy slots for both consumers, handed out earliest expires_at first.
        scheduler = self._scheduler = DeadlineScheduler(
            settings.max_workers, gather_s=settings.schedule_gather_s
        )
        nc = self._nc = await self._connect(startup)
        publisher = EventPublisher(nc, self.topology)
        # Writers of one key take turns (a Supabase server upserts at the end of an upload
        # without checking again): every put holds the key's claim in NATS KV.
        claims = await NatsClaimStore.open(
            nc.jetstream(), self.topology.kv_bucket(SERVICE, "storage_claims"),
            replicas=settings.stream_replicas,
        )
        storage = ClaimedStorage(storage, KeyClaims(claims))

        def handler_for(pacing: ConsumerSettings) -> ArchiveHandler:
            copier = MeteredCopier(
                storage,
                sources.wrapped(MeteredContentSource),
                self.buckets,
                policy=retry_policy(settings, pacing),
                thumbnail_attempts=settings.thumbnail_attempts,
                thumbnails=ThumbnailSpec(max_side=settings.thumbnail_max_side),
            )
            return ArchiveHandler(copier, publisher, scheduler)

        # Each consumer holds ``workers`` messages in process; the scheduler lets
        # ``max_workers`` of them copy at once, by deadline.
        consumers = archive_consumers(settings, self.topology, handler_for)
        removal = deletions_consumer(settings, self.topology, RemoveDeletedObjects(storage))
        self._runner = ConsumerRunner(nc, self.topology, [*consumers, removal],
                                      grace_s=settings.shutdown_grace_s)
        await self._runner.start()
        if settings.orphan_sweep_interval_s > 0:
            await self._start_orphan_sweeper(nc, storage)
        self._metrics = start_collectors(settings, nc.jetstream(), self.topology,
                                         [policy.durable for policy in self.policies])
        log.info("consuming %s, %d copies at once by deadline", ", ".join(
            f"{c.name} ({c.workers} in process)" for c in consumers), settings.max_workers)

    async def _start_orphan_sweeper(self, nc: NatsClient, storage: ObjectStorage) -> None:
        settings = self.settings
        lease = await NatsSweepLease.open(
            nc.jetstream(), self.topology.kv_bucket(SERVICE, "orphan_sweeps"),
            timedelta(seconds=settings.orphan_sweep_interval_s),
            replicas=settings.stream_replicas,
        )
        sweeper = OrphanSweeper(
            storage, self.buckets.images.name,
            CatalogReferences(nc, self.topology, settings.rpc_timeout_s), lease,
            grace_s=settings.orphan_upload_grace_s, batch_size=settings.orphan_batch_size,
            max_deletions_per_s=settings.orphan_max_deletions_per_s,
        )
        self._orphans_stopping.clear()
        self._orphans = asyncio.create_task(
            sweeper.run(settings.orphan_sweep_interval_s, self._orphans_stopping),
            name="orphan-uploads-sweeper",
        )

    async def _connect(self, startup: Startup) -> NatsClient:
        """The one NATS connection: consumers and events (reconnects forever)."""
        return await wait_for_connection(startup, self.settings, f"reelvault-{SERVICE}")

    async def stop(self) -> None:
        # Copies still waiting for a slot are handed back at once (SchedulerClosed ->
        # RetryLater -> nak); the runner then stops taking messages and gives the copies in
        # flight shutdown_grace_s to finish; a copy cut off there is handed back and redone
        # idempotently. Then release what was opened.
        orphans, self._orphans = self._orphans, None
        if orphans is not None:
            self._orphans_stopping.set()
            await orphans
        if self._metrics is not None:
            await self._metrics.stop()
            self._metrics = None
        if self._scheduler is not None:
            self._scheduler.close()
        if self._runner is not None:
            await self._runner.stop()
            self._runner = None
        if self._nc is not None:
            nc, self._nc = self._nc, None
            try:
                await nc.drain()  # sends the last acks and naks
            except Exception as exc:  # e.g. reconnecting: nothing more to send
                log.debug("could not drain the NATS connection: %r", exc)
                await nc.close()
        if self._sources is not None:
            await self._sources.aclose()
            self._sources = None
        if self._storage is not None:
            await self._storage.aclose()
            self._storage = None


async def main() -> None:
    settings = ArchiverSettings()
    configure_logging(SERVICE, settings.log_level, settings.log_format)
    serve_metrics(settings)
    configure_telemetry(SERVICE)
    service = ArchiverService(settings)
    if await start_unless_stopped(service.start, service.stop, service=SERVICE,
                                  logger=log) is not None:
        log.info("%s stopped", SERVICE)
        return
    log.info("%s ready", SERVICE)
    signal_received = await wait_for_stop_signal()
    log.info("%s stopping (%s)", SERVICE, signal_received.name)
    await service.stop()
    log.info("%s stopped", SERVICE)
