"""Bootstrap: wires settings, broker, KV buckets, storage, provider and the webhook endpoint
together. No logic here."""

from __future__ import annotations

import logging

import httpx
from nats.aio.client import Client as NatsClient
from nats.js.api import KeyValueConfig, StorageType
from reelvault_common.messaging.consuming import (
    EventPublisher,
    make_broker,
    stop_consuming,
    track_fetched,
    wait_for_nats,
)
from reelvault_common.messaging.nats_client import connect_nats, is_nats_unreachable
from reelvault_common.messaging.topology import Topology
from reelvault_common.providers.openai_videos import VideosClient
from reelvault_common.runtime.lifecycle import start_unless_stopped, wait_for_stop_signal
from reelvault_common.runtime.logs import configure_logging
from reelvault_common.runtime.startup import Startup
from reelvault_common.storage import ObjectStorage
from reelvault_common.storage.factory import open_storage

from reelvault_generator import handlers
from reelvault_generator.budget import KvRequestBudget
from reelvault_generator.ledger import ClaimTiming
from reelvault_generator.ledger_store import JobLedger, open_bucket
from reelvault_generator.polling import PollSchedule
from reelvault_generator.provider import OpenAIVideosProvider, RequestBudget, VideoProvider
from reelvault_generator.reference_loader import ReferenceLoader
from reelvault_generator.settings import GeneratorSettings
from reelvault_generator.starting import JobStarter
from reelvault_generator.tracking import JobTracker
from reelvault_generator.webhook_app import WebhookServer, create_webhook_app
from reelvault_generator.webhooks import KvSeenWebhooks, WebhookReceiver

log = logging.getLogger(__name__)

SERVICE = "generator"


def build_provider(
    settings: GeneratorSettings,
    *,
    budget: RequestBudget | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> OpenAIVideosProvider:
    client = VideosClient(
        settings.openai_base_url,
        settings.openai_api_key,
        timeout_s=settings.provider_timeout_s,
        transport=transport,
    )
    return OpenAIVideosProvider(
        client,
        name=settings.provider_name,
        create_timeout_s=settings.create_timeout_s,
        budget=budget,
        max_pages=settings.recovery_max_pages,
    )


class GeneratorService:
    """``start()`` prepares the topology and KV buckets, starts both consumers (and the webhook
    endpoint when configured); ``stop()`` stops taking messages and lets in-flight ones finish
    (FastStream's graceful timeout), then closes what it opened.

    For tests: ``provider`` replaces the whole provider (not closed on stop); ``http_transport``
    keeps the real provider but sends its HTTP through the given transport."""

    def __init__(
        self,
        settings: GeneratorSettings,
        *,
        provider: VideoProvider | None = None,
        storage: ObjectStorage | None = None,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.topology = Topology.from_settings(settings)
        self._provider = provider
        self._owns_provider = provider is None
        self._storage = storage
        self._owns_storage = storage is None
        self._transport = http_transport
        self._nc: NatsClient | None = None
        self._broker = make_broker(settings, f"reelvault-{SERVICE}")
        self._webhooks: WebhookServer | None = None
        self.ledger: JobLedger | None = None
        self.started = False

    @property
    def provider(self) -> VideoProvider:
        assert self._provider is not None, "start() first"
        return self._provider

    def bucket(self, purpose: str) -> str:
        """KV bucket names: ``jobs`` (the ledger), ``budget``, ``webhooks``."""
        return self.topology.kv_bucket(SERVICE, purpose)

    @property
    def webhook_url(self) -> str | None:
        """Where providers deliver webhooks (None without the endpoint)."""
        if self._webhooks is None:
            return None
        return (f"http://{self._webhooks.host}:{self._webhooks.port}"
                f"/webhooks/{self.settings.provider_name}")

    async def start(self) -> None:
        settings = self.settings
        # NATS may not be up yet: wait for it (one log line per attempt) until
        # REELVAULT_STARTUP_TIMEOUT_S.
        startup = Startup.from_settings(settings)
        await wait_for_nats(
            startup,
            settings,
            self.topology,
            [handlers.requests_policy(settings, self.topology),
             handlers.poll_policy(settings, self.topology)],
        )
        self._nc = await startup.wait_for(
            "NATS",
            settings.nats_url_for_logs,
            lambda: connect_nats(
                settings.nats_servers,
                name=f"reelvault-{SERVICE}-kv",
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                connect_timeout=5,
            ),
            retryable=is_nats_unreachable,
        )
        js = self._nc.jetstream()
        self.ledger = await JobLedger.open(js, self.bucket("jobs"),
                                           replicas=settings.stream_replicas)
        if self._provider is None:
            budget = None
            if (limit := settings.provider_budget_limit) is not None:
                kv = await open_bucket(js, self.bucket("budget"), config=KeyValueConfig(
                    bucket=self.bucket("budget"), history=1, storage=StorageType.MEMORY,
                    replicas=settings.stream_replicas,
                    ttl=3 * settings.provider_budget_window_s))
                budget = KvRequestBudget(kv, provider=settings.provider_name, limit=limit,
                                         window_s=settings.provider_budget_window_s)
            self._provider = build_provider(settings, budget=budget, transport=self._transport)
        if self._storage is None:
            self._storage = open_storage(settings)
        publisher = EventPublisher(self._broker, self.topology)
        starter = JobStarter(
            ledger=self.ledger,
            provider=self._provider,
            references=ReferenceLoader(self._storage, max_bytes=settings.reference_max_bytes),
            events=publisher,
            owner=settings.instance_id,
            timing=ClaimTiming(
                create_timeout_s=settings.create_timeout_s,
                claim_margin_s=settings.claim_margin_s,
                recovery_margin_s=settings.recovery_margin_s,
            ),
            retry_base_s=settings.create_retry_base_s,
            retry_max_s=settings.create_retry_max_s,
            unauthorized_retry_s=settings.unauthorized_retry_s,
            on_recorded=lambda job: tracker.follow(job),
        )
        tracker = JobTracker(
            provider=self._provider,
            events=publisher,
            schedule=PollSchedule(
                interval_s=settings.poll_interval_s,
                max_interval_s=settings.poll_max_interval_s,
                backoff_factor=settings.poll_backoff_factor,
                jitter=settings.poll_jitter,
                poll_after_max_s=settings.poll_after_max_s,
            ),
            deadline_s=settings.job_deadline_s,
            retry_base_s=settings.poll_retry_base_s,
            first_look_after_s=settings.first_poll_delay_s,
        )
        handlers.register(self._broker, self.topology, settings, starter=starter, tracker=tracker,
                          publisher=publisher)
        await self._broker.start()
        track_fetched(self._broker)
        if settings.webhook_port is not None and settings.webhook_secret is not None:
            seen = await open_bucket(js, self.bucket("webhooks"), config=KeyValueConfig(
                bucket=self.bucket("webhooks"), history=1, storage=StorageType.FILE,
                replicas=settings.stream_replicas, ttl=settings.webhook_dedupe_ttl_s))
            receiver = WebhookReceiver(
                secret=settings.webhook_secret.get_secret_value(),
                seen=KvSeenWebhooks(seen),
                ledger=self.ledger,
                provider=self._provider,
                tracker=tracker,
                tolerance_s=settings.webhook_tolerance_s,
                creating=lambda: starter.creating,
            )
            app = create_webhook_app(receiver, provider=settings.provider_name)
            self._webhooks = WebhookServer(app, settings.webhook_host, settings.webhook_port)
            await self._webhooks.start()
            log.info("webhook endpoint at %s", self.webhook_url)
        self.started = True
        log.info("generator consuming %s (provider %s at %s)", self.topology.stream,
                 self._provider.name, settings.openai_base_url)

    async def stop(self) -> None:
        # No new webhooks, then no new messages: in-flight handlers get shutdown_grace_s to
        # finish, the rest hand their messages back (an interrupted create leaves its claim,
        # which the next owner recovers); then release what they used.
        if self._webhooks is not None:
            await self._webhooks.stop()
            self._webhooks = None
        await stop_consuming(self._broker)
        if self._provider is not None and self._owns_provider:
            await self._provider.aclose()
        if self._storage is not None and self._owns_storage:
            await self._storage.aclose()
        if self._nc is not None:
            await self._nc.drain()
            self._nc = None
        self.started = False


async def main() -> None:
    settings = GeneratorSettings()
    configure_logging(SERVICE, settings.log_level, settings.log_format)
    service = GeneratorService(settings)
    if await start_unless_stopped(service.start, service.stop, service=SERVICE,
                                  logger=log) is not None:
        return
    log.info("generator ready")
    signal = await wait_for_stop_signal()
    log.info("received %s, stopping", signal.name)
    await service.stop()
