"""Bootstrap: wire settings, storage, provider client, broker and handlers together."""

from __future__ import annotations

import asyncio
import logging

from faststream.nats import NatsBroker
from faststream.nats.annotations import NatsMessage as MessageParam
from reelvault_common.contracts.events import VideoArchiveRequested, VideoCompleted
from reelvault_common.messaging.consuming import (
    DeadLetterRoute,
    EventPublisher,
    durable_subscriber,
    make_broker,
    raw_body,
    wait_for_nats,
)
from reelvault_common.messaging.topology import ConsumerPolicy, Topology
from reelvault_common.providers.openai_videos import VideosClient
from reelvault_common.runtime.lifecycle import start_unless_stopped, wait_for_stop_signal
from reelvault_common.runtime.logs import configure_logging
from reelvault_common.runtime.startup import Startup
from reelvault_common.storage.factory import open_storage
from reelvault_common.storage.interface import ObjectStorage
from reelvault_common.storage.layout import Buckets

from reelvault_archiver.copier import VideoCopier
from reelvault_archiver.decisions import RetryPolicy
from reelvault_archiver.handlers import ArchiveHandlers
from reelvault_archiver.scheduling import DeadlineScheduler
from reelvault_archiver.settings import ArchiverSettings
from reelvault_archiver.thumbnails import ThumbnailSpec
from reelvault_archiver.tuning import tune_http_reads

log = logging.getLogger(__name__)

SERVICE = "archiver"


def consumer_policies(settings: ArchiverSettings, topology: Topology) -> tuple[ConsumerPolicy, ...]:
    """``video.completed`` and ``video.archive.requested``, each on its own durable.

    The archiver itself decides when to stop (the source's ``expires_at``, or an attempt
    budget when there is none); ``max_deliver`` is only a high safety net, and a message
    still failing on its last delivery is dead-lettered (``settle``), never dropped silently.

    No server-side ``backoff``: with one configured, nats-server (2.15) stretches every
    ``nak(delay)`` after the second delivery to ``backoff[n] - ack_wait + delay`` (measured:
    backoff 1/4/8 s + nak 0.1 s -> redeliveries after 0.1, 3.1, 7.1 s), which would turn a
    30 s download retry into minutes. Retries are paced by our own naks; a crashed worker's
    message comes back after ack_wait."""

    def policy(purpose: str, event_cls: type) -> ConsumerPolicy:
        return ConsumerPolicy(
            durable=topology.durable(SERVICE, purpose),
            filter_subjects=(topology.subject_for(event_cls),),
            ack_wait_s=settings.ack_wait_s,
            max_deliver=settings.max_deliveries,
            backoff_s=(),
        )

    return (policy("completed", VideoCompleted), policy("rearchive", VideoArchiveRequested))


def retry_policy(settings: ArchiverSettings) -> RetryPolicy:
    return RetryPolicy(
        base_delay_s=settings.retry_base_delay_s,
        max_delay_s=settings.retry_max_delay_s,
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
        self._broker: NatsBroker | None = None
        self._storage: ObjectStorage | None = None
        self._videos: VideosClient | None = None
        self._scheduler: DeadlineScheduler | None = None

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
        # NATS may not be up yet: wait for it (one log line per attempt) until
        # REELVAULT_STARTUP_TIMEOUT_S.
        await wait_for_nats(Startup.from_settings(settings), settings, self.topology,
                            self.policies)
        storage = self._storage = open_storage(settings)
        await storage.ensure_buckets(self.buckets.all())
        # Downloads only ever go to the configured provider base URL.
        videos = self._videos = VideosClient(
            settings.openai_base_url, settings.openai_api_key, timeout_s=settings.provider_timeout_s
        )
        copier = VideoCopier(
            storage,
            videos,
            self.buckets,
            policy=retry_policy(settings),
            chunk_bytes=settings.download_chunk_bytes,
            thumbnail_attempts=settings.thumbnail_attempts,
            thumbnails=ThumbnailSpec(max_side=settings.thumbnail_max_side),
        )
        # One set of copy slots for both consumers, handed out earliest expires_at first.
        scheduler = self._scheduler = DeadlineScheduler(
            settings.max_workers, gather_s=settings.schedule_gather_s
        )
        broker = self._broker = make_broker(settings, f"reelvault-{SERVICE}")
        publisher = EventPublisher(broker, self.topology)
        completed, rearchive = self.policies
        handlers = ArchiveHandlers(
            copier,
            publisher,
            heartbeat_interval_s=settings.heartbeat_interval_s,
            completed_dead_letter=DeadLetterRoute(completed, self.topology, publisher, "archive"),
            rearchive_dead_letter=DeadLetterRoute(rearchive, self.topology, publisher, "archive"),
            scheduler=scheduler,
        )

        async def on_completed(body: bytes, msg: MessageParam) -> None:
            await handlers.on_completed(body, msg)

        async def on_archive_requested(body: bytes, msg: MessageParam) -> None:
            await handlers.on_archive_requested(body, msg)

        # Each consumer pulls batches of up to ``intake`` messages and holds that many in
        # process; the scheduler lets ``max_workers`` of them copy at once, by deadline.
        intake = settings.intake_per_consumer
        # raw_body: the handler sees every payload and rejects what it cannot parse.
        for policy, handler in ((completed, on_completed), (rearchive, on_archive_requested)):
            durable_subscriber(
                broker, self.topology, policy, max_workers=intake, decoder=raw_body
            )(handler)
        await broker.start()
        log.info("consuming %s and %s (%d in process each), %d copies at once by deadline",
                 completed.durable, rearchive.durable, intake, settings.max_workers)

    async def stop(self) -> None:
        # Copies still waiting for a slot are handed back at once (nak); then stop taking
        # messages and let in-flight copies finish (FastStream's graceful timeout); a copy cut
        # off here is redelivered and redone idempotently.
        if self._scheduler is not None:
            self._scheduler.close()
            await asyncio.sleep(0.05)  # let the waiting handlers send their naks
        if self._broker is not None:
            await self._broker.stop()
            self._broker = None
        if self._videos is not None:
            await self._videos.aclose()
            self._videos = None
        if self._storage is not None:
            await self._storage.aclose()
            self._storage = None


async def main() -> None:
    settings = ArchiverSettings()
    configure_logging(SERVICE, settings.log_level, settings.log_format)
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
