"""Bootstrap: wires settings, the NATS connection, KV buckets, storage, provider, the two
consumers and the webhook endpoint together. No logic here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import httpx2
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue
from reelvault_common.messaging.consumer import ConsumerRunner
from reelvault_common.messaging.model_catalog import open_models_bucket, publish_catalog
from reelvault_common.messaging.publisher import EventPublisher
from reelvault_common.messaging.setup import wait_for_connection, wait_for_nats
from reelvault_common.messaging.topology import Topology
from reelvault_common.providers.gemini_veo import GeminiVeoClient
from reelvault_common.providers.openrouter_videos import OpenRouterVideosClient
from reelvault_common.runtime.lifecycle import start_unless_stopped, wait_for_stop_signal
from reelvault_common.runtime.logs import configure_logging
from reelvault_common.runtime.metrics import PeriodicCollectors, serve_metrics
from reelvault_common.runtime.startup import Startup
from reelvault_common.runtime.telemetry import configure_telemetry
from reelvault_common.storage import ObjectStorage
from reelvault_common.storage.factory import open_storage

from reelvault_generator import consumers
from reelvault_generator.budget import KvRequestBudget
from reelvault_generator.callbacks import CallbackTargets
from reelvault_generator.canceling import JobCanceler
from reelvault_generator.consumers import SERVICE
from reelvault_generator.job_protocols import GeminiVeoProvider, OpenRouterProvider
from reelvault_generator.ledger import ClaimTiming
from reelvault_generator.ledger_store import JobLedger, open_bucket
from reelvault_generator.metrics import MeteredVideosClient, observe_budget, start_collectors
from reelvault_generator.polling import PollSchedule
from reelvault_generator.provider import OpenAIVideosProvider, RequestBudget, VideoProvider
from reelvault_generator.reference_loader import ReferenceLoader
from reelvault_generator.registry import ProviderRegistry
from reelvault_generator.settings import GeneratorSettings
from reelvault_generator.starting import JobStarter
from reelvault_generator.tracking import JobTracker
from reelvault_generator.webhook_app import WebhookServer, create_webhook_app
from reelvault_generator.webhook_protocols import (
    GeminiWebhooks,
    OpenAIWebhooks,
    OpenRouterWebhooks,
    WebhookProtocol,
)
from reelvault_generator.webhooks import KvSeenWebhooks, WebhookReceiver

log = logging.getLogger(__name__)


def build_providers(
    settings: GeneratorSettings,
    *,
    budgets: Callable[[str], RequestBudget | None] = lambda _: None,
    transport: httpx2.AsyncBaseTransport | None = None,
) -> ProviderRegistry:
    """Every provider some route names, each with its own request budget."""
    routes = settings.routes()
    # OpenRouter's callbacks are verified (and their tokens checked) with its secret.
    secret = settings.webhook_secret_for("openrouter")
    callbacks = (CallbackTargets(settings.webhook_public_url, secret)
                 if settings.webhook_public_url and secret else None)
    providers: dict[str, VideoProvider] = {}
    for kind in dict.fromkeys(routes.values()):
        budget = budgets(kind)
        if kind == "openai":
            providers[kind] = build_provider(settings, budget=budget, transport=transport)
        elif kind == "openrouter":
            providers[kind] = OpenRouterProvider(
                OpenRouterVideosClient(settings.openrouter_base_url,
                                       api_key=settings.openrouter_api_key,
                                       timeout_s=settings.provider_timeout_s,
                                       transport=transport, app_title="reelvault"),
                create_timeout_s=settings.create_timeout_s, budget=budget, callbacks=callbacks,
                content_ttl_s=settings.openrouter_content_ttl_s,
                poll_interval_s=settings.openrouter_poll_interval_s)
        else:
            providers[kind] = GeminiVeoProvider(
                GeminiVeoClient(settings.gemini_base_url, api_key=settings.gemini_api_key,
                                timeout_s=settings.provider_timeout_s, transport=transport),
                create_timeout_s=settings.create_timeout_s, budget=budget,
                content_ttl_s=settings.gemini_content_ttl_s,
                poll_interval_s=settings.gemini_poll_interval_s)
    return ProviderRegistry(providers, routes, settings.chosen_default_model())


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
        self._providers = ProviderRegistry.single(provider) if provider is not None else None
        self._owns_provider = provider is None
        self._storage = storage
        self._owns_storage = storage is None
        self._transport = http_transport
        self._nc: NatsClient | None = None
        self._runner: ConsumerRunner | None = None
        self._metrics: PeriodicCollectors | None = None
        self._webhooks: WebhookServer | None = None
        self._refresh: asyncio.Task[None] | None = None
        self.ledger: JobLedger | None = None
        self.started = False

    @property
    def providers(self) -> ProviderRegistry:
        assert self._providers is not None, "start() first"
        return self._providers

    def bucket(self, purpose: str) -> str:
        """KV bucket names: ``jobs`` (the ledger), ``budget``, ``webhooks``."""
        return self.topology.kv_bucket(SERVICE, purpose)

    @property
    def webhook_base(self) -> str | None:
        """The webhook endpoint's own address (None without it)."""
        if self._webhooks is None:
            return None
        return f"http://{self._webhooks.host}:{self._webhooks.port}"

    @property
    def webhook_url(self) -> str | None:
        """Where the OpenAI protocol's webhooks go (None without the endpoint)."""
        base = self.webhook_base
        return None if base is None else f"{base}/webhooks/{self.settings.provider_name}"

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
        providers = await self._open_providers(js)
        await self._publish_models(providers)
        storage = self._open_storage()
        publisher = EventPublisher(self._nc, self.topology)
        canceler = JobCanceler(ledger=self.ledger, events=publisher, owner=settings.instance_id)
        tracker = self._tracker(providers, publisher, canceler)
        starter = self._starter(self.ledger, providers, storage, publisher, tracker)
        self._runner = ConsumerRunner(
            self._nc, self.topology,
            consumers.consumers(settings, self.topology, starter=starter, tracker=tracker,
                               canceler=canceler, publisher=publisher),
            grace_s=settings.shutdown_grace_s,
        )
        await self._runner.start()
        self._metrics = start_collectors(settings, js, self.topology)
        await self._start_webhooks(js, self.ledger, providers, starter, tracker)
        self.started = True
        log.info("generator consuming %s (providers %s)", self.topology.stream,
                 ", ".join(p.name for p in providers.providers))

    # --- wiring steps -----------------------------------------------------------------------
    async def _connect(self, startup: Startup) -> NatsClient:
        """The one NATS connection: consumers, events, KV buckets (reconnects forever)."""
        return await wait_for_connection(startup, self.settings, f"reelvault-{SERVICE}")

    async def _open_providers(self, js: JetStreamContext) -> ProviderRegistry:
        """The given provider, or every configured one (each with its request budget)."""
        if self._providers is None:
            budget_kv = await self._budget_bucket(js)
            settings = self.settings

            def budget(provider: str) -> RequestBudget | None:
                limit = settings.provider_budget_limit
                if budget_kv is None or limit is None:
                    return None
                # With webhooks, polls are a safety net: capped even when no create waits.
                idle = settings.poll_share if settings.webhooks_enabled else 1.0
                return KvRequestBudget(budget_kv, provider=provider, limit=limit,
                                       window_s=settings.provider_budget_window_s,
                                       horizon_s=settings.provider_budget_horizon_s,
                                       poll_share=settings.poll_share, idle_poll_share=idle,
                                       observer=observe_budget)

            self._providers = build_providers(settings, budgets=budget,
                                              transport=self._transport)
        return self._providers

    async def _budget_bucket(self, js: JetStreamContext) -> KeyValue | None:
        settings = self.settings
        if settings.provider_budget_limit is None:
            return None
        # File storage: the budget's state (and waiters' tickets) survive a NATS restart, so
        # the calls before it still count. The TTL only clears tickets nobody came back for.
        return await open_bucket(js, self.bucket("budget"), config=KeyValueConfig(
            bucket=self.bucket("budget"), history=1, storage=StorageType.FILE,
            replicas=settings.stream_replicas,
            ttl=max(24 * 3600.0, 3 * settings.provider_budget_window_s)))

    async def _publish_models(self, providers: ProviderRegistry) -> None:
        """What this deployment can generate, for every gateway (only a generator built from
        the settings has routes to publish)."""
        if not self._owns_provider:
            return
        assert self._nc is not None
        bucket = await open_models_bucket(self._nc, self.topology)
        catalog = await providers.refresh_catalog()
        await publish_catalog(bucket, catalog)
        log.info("models offered: %s", ", ".join(spec.id for spec in catalog.specs))
        self._refresh = asyncio.create_task(self._refresh_models(providers, bucket),
                                            name="models-refresh")

    async def _refresh_models(self, providers: ProviderRegistry, bucket: KeyValue) -> None:
        """Providers' capability data (OpenRouter's models and prices) changes: re-read it
        now and then, and publish only what changed."""
        while True:
            await asyncio.sleep(self.settings.models_refresh_s)
            before = providers.catalog.to_json()
            try:
                catalog = await providers.refresh_catalog()
                if catalog.to_json() != before:
                    await publish_catalog(bucket, catalog)
                    log.info("models offered now: %s",
                             ", ".join(spec.id for spec in catalog.specs))
            except Exception as exc:  # the next round tries again; the catalog stays
                log.warning("refreshing the model catalog failed: %r", exc)

    def _open_storage(self) -> ObjectStorage:
        """The given storage, or the configured backend (reference images are read there)."""
        if self._storage is None:
            self._storage = open_storage(self.settings)
        return self._storage

    def _tracker(self, providers: ProviderRegistry, publisher: EventPublisher,
                 canceler: JobCanceler) -> JobTracker:
        settings = self.settings
        return JobTracker(
            provider=providers,
            canceled=canceler.canceled,
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

    def _starter(self, ledger: JobLedger, providers: ProviderRegistry, storage: ObjectStorage,
                 publisher: EventPublisher, tracker: JobTracker) -> JobStarter:
        settings = self.settings
        return JobStarter(
            ledger=ledger,
            provider=providers,
            adoption_window_s=settings.adoption_window_s,
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
                              providers: ProviderRegistry, starter: JobStarter,
                              tracker: JobTracker) -> None:
        settings = self.settings
        port = settings.webhook_port
        if settings.webhook_secret is None or port is None:
            return  # no endpoint configured: polling alone follows the jobs
        seen = KvSeenWebhooks(await open_bucket(js, self.bucket("webhooks"), config=KeyValueConfig(
            bucket=self.bucket("webhooks"), history=1, storage=StorageType.FILE,
            replicas=settings.stream_replicas, ttl=settings.webhook_dedupe_ttl_s)))
        receivers = {
            provider.name: WebhookReceiver(
                seen=seen, ledger=ledger, provider=provider, tracker=tracker,
                protocol=self._webhook_protocol(provider.name), adopt=starter.adopt,
                creating=lambda: starter.creating,
            )
            for provider in providers.providers
        }
        self._webhooks = WebhookServer(create_webhook_app(receivers), settings.webhook_host, port)
        await self._webhooks.start()
        log.info("webhook endpoints at %s", ", ".join(
            f"{self.webhook_base}/webhooks/{name}" for name in receivers))

    def _webhook_protocol(self, provider: str) -> WebhookProtocol:
        settings = self.settings
        secret = settings.webhook_secret_for(provider)
        assert secret is not None
        tolerance = settings.webhook_tolerance_s
        if provider == "openrouter":
            public = settings.webhook_public_url
            return OpenRouterWebhooks(secret, tolerance_s=tolerance,
                                      callbacks=CallbackTargets(public, secret) if public
                                      else None)
        if provider == "gemini":
            return GeminiWebhooks(secret, tolerance_s=tolerance)
        return OpenAIWebhooks(secret, tolerance_s=tolerance)

    async def stop(self) -> None:
        # No new messages: in-flight handlers get shutdown_grace_s to finish, the rest hand
        # their messages back (an interrupted create leaves its claim, which the next owner
        # recovers). Then no new webhooks, then release what they used.
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh
            self._refresh = None
        if self._metrics is not None:
            await self._metrics.stop()
            self._metrics = None
        if self._runner is not None:
            await self._runner.stop()
            self._runner = None
        if self._webhooks is not None:
            await self._webhooks.stop()
            self._webhooks = None
        if self._providers is not None and self._owns_provider:
            await self._providers.aclose()
            self._providers = None
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
