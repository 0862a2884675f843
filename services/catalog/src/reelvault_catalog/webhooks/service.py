"""The webhooks part of the catalog, wired once: its RPC answers, its stream consumer, and the
dispatcher that sends (started after the consumer runner, stopped before the database)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
from reelvault_common.contracts.catalog import CatalogRpc
from reelvault_common.contracts.events import OrgWebhookEndpointDisabled
from reelvault_common.messaging.consumer import Consumer
from reelvault_common.messaging.topology import ConsumerPolicy, Topology
from sqlalchemy.ext.asyncio import AsyncEngine

from reelvault_catalog.replies import Answer
from reelvault_catalog.settings import CatalogSettings
from reelvault_catalog.webhooks.addresses import AddressPolicy, Resolver, system_resolver
from reelvault_catalog.webhooks.dispatcher import WebhookDispatcher
from reelvault_catalog.webhooks.handlers import WebhookHandlers
from reelvault_catalog.webhooks.recorder import (
    SourceEvent,
    WebhookRecorder,
    recorder_consumer,
    recorder_policy,
)
from reelvault_catalog.webhooks.repository import Disabled, WebhookRepository
from reelvault_catalog.webhooks.sender import WebhookSender, webhook_client

PublishDisabled = Callable[[OrgWebhookEndpointDisabled], Awaitable[object]]


class Webhooks:
    def __init__(self, engine: AsyncEngine, settings: CatalogSettings, topology: Topology,
                 publish: PublishDisabled, *, resolve: Resolver = system_resolver,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        delivery = settings.webhooks
        policy = AddressPolicy.for_deployment(settings.deployment)
        self._settings = settings
        self._topology = topology
        self._publish = publish
        self.repository = WebhookRepository(engine, delivery)
        self._client = webhook_client(delivery.timeout_s, delivery.connect_timeout_s, transport)
        self.dispatcher = WebhookDispatcher(
            self.repository, WebhookSender(self._client, policy, delivery.timeout_s, resolve),
            delivery, self._announce_disabled)
        self._handlers = WebhookHandlers(self.repository, policy, resolve=resolve,
                                         replayed=self.dispatcher.wake)
        self._recorder = WebhookRecorder(self.repository, settings.public_base_url,
                                         self.dispatcher.wake)

    @property
    def policy(self) -> ConsumerPolicy:
        return recorder_policy(self._topology, self._settings.webhook_recorder)

    def answers(self) -> dict[CatalogRpc, Answer]:
        return self._handlers.answers()

    def consumer(self) -> Consumer[SourceEvent]:
        return recorder_consumer(self._topology, self._settings.webhook_recorder,
                                 self._recorder)

    def start(self) -> None:
        self.dispatcher.start()

    async def stop(self) -> None:
        await self.dispatcher.stop(self._settings.shutdown_grace_s)
        await self._client.aclose()

    async def _announce_disabled(self, disabled: Disabled) -> None:
        await self._publish(OrgWebhookEndpointDisabled.of(
            org=disabled.org, endpoint_id=disabled.endpoint_id, reason="failing",
            consecutive_failures=disabled.consecutive_failures,
            failing_since=disabled.failing_since, disabled_at=disabled.disabled_at,
        ))
