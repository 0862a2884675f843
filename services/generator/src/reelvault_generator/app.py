"""Bootstrap: wires settings, the NATS connection, KV buckets, storage, provider, the two
consumers and the webhook endpoint together. No logic here."""

from __future__ import annotations

import logging

import httpx2
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from reelvault_common.messaging.consumer import ConsumerRunner
from reelvault_common.messaging.publisher import EventPublisher
from reelvault_common.messaging.setup import wait_for_connection, wait_for_nats
from reelvault_common.messaging.topology import Topology
from reelvault_common.runtime.lifecycle import start_unless_stopped, wait_for_stop_signal
from reelvault_common.runtime.logs import configure_logging
from reelvault_common.runtime.metrics import PeriodicCollectors, serve_metrics
from reelvault_common.runtime.startup import Startup
from reelvault_common.runtime.telemetry import configure_telemetry
from reelvault_common.storage import ObjectStorage
from reelvault_common.storage.factory import open_storage

from reelvault_generator import consumers
from reelvault_generator.budget import KvRequestBudget
from reelvault_generator.consumers import SERVICE
from reelvault_generator.ledger import ClaimTiming
from reelvault_generator.ledger_store import JobLedger, open_bucket
from reelvault_generator.metrics import MeteredVideosClient, start_collectors
from reelvault_generator.polling import PollSchedule
from reelvault_generator.provider import OpenAIVideosProvider, RequestBudget, VideoProvider
from reelvault_generator.reference_loader import ReferenceLoader
from reelvault_generator.settings import GeneratorSettings
from reelvault_generator.starting import JobStarter
from reelvault_generator.tracking import JobTracker
from reelvault_generator.webhook_app import WebhookServer, create_webhook_app
from reelvault_generator.webhooks import KvSeenWebhooks, WebhookReceiver

log = logging.getLogger(__name__)


def build_provider(
    settings: GeneratorSettings,
    *,
    budget: RequestBudget | None = None,
    transport: httpx2.AsyncBaseTransport | None = None,
) -> OpenAIVideosProvider:
    client = MeteredVideosClient(
        settings.openai_base_url,
        settings.openai_api_key,
        provider=settings.provider_name,
        prices=settings.prices_usd_per_second,
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
    (``shutdown_grace_s``, then they are handed back), then closes what it opened.

    For tests: ``provider`` replaces the whole provider (not closed on stop); ``http_transport``
    keeps the real provider but sends its HTTP through the given transport."""

    def __init__(
        self,
        settings: GeneratorSettings,
        *,
        provider: VideoProvider | None = None,
        storage: ObjectStorage | None = None,
        http_transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.topology = Topology.from_settings(settings)
        self._provider = provider
        self._owns_provider = provider is None
        self._storage = storage
        self._owns_storage = storage is None
        self._transport = http_transport
        self._nc: NatsClient | None = None
        self._runner: ConsumerRunner | None = None
        self._metrics: PeriodicCollectors | None = None
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
        await wait_for_nats(startup, settings, self.topology,
                            consumers.policies(settings, self.topology))
        self._nc = await self._connect(startup)
        js = self._nc.jetstream()
        self.ledger = await JobLedger.open(js, self.bucket("jobs"),
                                           replicas=settings.stream_replicas)
        provider = await self._open_provider(js)
        storage = self._open_storage()
        publisher = EventPublisher(self._nc, self.topology)
        tracker = self._tracker(provider, publisher)
        starter = self._starter(self.ledger, provider, storage, publisher, tracker)
        self._runner = ConsumerRunner(
            self._nc, self.topology,
            consumers.consumers(settings, self.topology, starter=starter, tracker=tracker,
                               publisher=publisher),
            grace_s=settings.shutdown_grace_s,
        )
        await self._runner.start()
        self._metrics = start_collectors(settings, js, self.topology)
        await self._start_webhooks(js, self.ledger, provider, starter, tracker)
        self.started = True
        log.info("generator consuming %s (provider %s at %s)", self.topology.stream,
                 provider.name, settings.openai_base_url)

    # --- wiring steps -----------------------------------------------------------------------
    async def _connect(self, startup: Startup) -> NatsClient:
        """The one NATS connection: consumers, events, KV buckets (reconnects forever)."""
        return await wait_for_connection(startup, self.settings, f"reelvault-{SERVICE}")

    async def _open_provider(self, js: JetStreamContext) -> VideoProvider:
        """The given provider, or the real one (with the shared request budget if set)."""
        if self._provider is None:
            self._provider = build_provider(self.settings, budget=await self._budget(js),
                                            transport=self._transport)
        return self._provider

    async def _budget(self, js: JetStreamContext) -> RequestBudget | None:
        settings = self.settings
        if (limit := settings.provider_budget_limit) is None:
            return None
        kv = await open_bucket(js, self.bucket("budget"), config=KeyValueConfig(
            bucket=self.bucket("budget"), history=1, storage=StorageType.MEMORY,
            replicas=settings.stream_replicas, ttl=3 * settings.provider_budget_window_s))
        return KvRequestBudget(kv, provider=settings.provider_name, limit=limit,
                               window_s=settings.provider_budget_window_s)

    def _open_storage(self) -> ObjectStorage:
        """The given storage, or the configured backend (reference images are read there)."""
        if self._storage is None:
            self._storage = open_storage(self.settings)
        return self._storage

    def _tracker(self, provider: VideoProvider, publisher: EventPublisher) -> JobTracker:
        settings = self.settings
        return JobTracker(
            provider=provider,
            events=publisher,
            schedule=PollSchedule(
                interval_s=settings.poll_interval_s,
                max_interval_s=settings.poll_max_interval_s,
                backoff_factor=settings.poll_backoff_factor,
                jitter=settings.poll_jitter,
                poll_after_max_s=settings.poll_after_max_s,
            ),
            deadline_s=settings.job_deadline_s,
            retry_base_s=settings.poll.retry_base_s,
            retry_max_s=settings.poll.retry_max_s,
            first_look_after_s=settings.first_poll_delay_s,
        )

    def _starter(self, ledger: JobLedger, provider: VideoProvider, storage: ObjectStorage,
                 publisher: EventPublisher, tracker: JobTracker) -> JobStarter:
        settings = self.settings
        return JobStarter(
            ledger=ledger,
            provider=provider,
            references=ReferenceLoader(storage, max_bytes=settings.reference_max_bytes),
            events=publisher,
            owner=settings.instance_id,
            timing=ClaimTiming(
                create_timeout_s=settings.create_timeout_s,
                claim_margin_s=settings.claim_margin_s,
                recovery_margin_s=settings.recovery_margin_s,
            ),
            retry_base_s=settings.requests.retry_base_s,
            retry_max_s=settings.requests.retry_max_s,
            unauthorized_retry_s=settings.unauthorized_retry_s,
            on_recorded=tracker.follow,
        )

    async def _start_webhooks(self, js: JetStreamContext, ledger: JobLedger,
                              provider: VideoProvider, starter: JobStarter,
                              tracker: JobTracker) -> None:
        settings = self.settings
        secret, port = settings.webhook_secret, settings.webhook_port
        if secret is None or port is None:
            return  # no endpoint configured: polling alone follows the jobs
        seen = await open_bucket(js, self.bucket("webhooks"), config=KeyValueConfig(
            bucket=self.bucket("webhooks"), history=1, storage=StorageType.FILE,
            replicas=settings.stream_replicas, ttl=settings.webhook_dedupe_ttl_s))
        receiver = WebhookReceiver(
            secret=secret.get_secret_value(),
            seen=KvSeenWebhooks(seen),
            ledger=ledger,
            provider=provider,
            tracker=tracker,
            tolerance_s=settings.webhook_tolerance_s,
            creating=lambda: starter.creating,
        )
        app = create_webhook_app(receiver, provider=settings.provider_name)
        self._webhooks = WebhookServer(app, settings.webhook_host, port)
        await self._webhooks.start()
        log.info("webhook endpoint at %s", self.webhook_url)

    async def stop(self) -> None:
        # No new messages: in-flight handlers get shutdown_grace_s to finish, the rest hand
        # their messages back (an interrupted create leaves its claim, which the next owner
        # recovers). Then no new webhooks, then release what they used.
        if self._metrics is not None:
            await self._metrics.stop()
            self._metrics = None
        if self._runner is not None:
            await self._runner.stop()
            self._runner = None
        if self._webhooks is not None:
            await self._webhooks.stop()
            self._webhooks = None
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
    serve_metrics(settings)
    configure_telemetry(SERVICE)
    service = GeneratorService(settings)
    if await start_unless_stopped(service.start, service.stop, service=SERVICE,
                                  logger=log) is not None:
        return
    log.info("generator ready")
    signal = await wait_for_stop_signal()
    log.info("received %s, stopping", signal.name)
    await service.stop()
