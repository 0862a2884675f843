"""Thin handlers of the webhook endpoint RPCs: decode, check, call the repository, reply.

A URL is checked (``addresses.vet_url``, DNS included) when it is registered; it is checked
again before every attempt. A refused URL is ``invalid_request`` with the reason.
"""

from __future__ import annotations

from collections.abc import Callable

from reelvault_common.contracts.catalog import (
    CatalogRpc,
    CreateWebhookEndpoint,
    DeleteWebhookEndpoint,
    GetWebhookEndpoint,
    ListWebhookDeliveries,
    ListWebhookEndpoints,
    ReplayWebhookDelivery,
    RpcReply,
)

from reelvault_catalog.errors import CatalogRefusal
from reelvault_catalog.replies import Answer, answer_with
from reelvault_catalog.webhooks.addresses import (
    AddressPolicy,
    Resolver,
    UnsafeUrl,
    system_resolver,
    vet_url,
)
from reelvault_catalog.webhooks.repository import WebhookRepository
from reelvault_catalog.webhooks.signing import new_secret


class WebhookHandlers:
    def __init__(self, repository: WebhookRepository, policy: AddressPolicy,
                 *, resolve: Resolver = system_resolver,
                 replayed: Callable[[], None] | None = None) -> None:
        self._repository = repository
        self._policy = policy
        self._resolve = resolve
        self._replayed = replayed

    def answers(self) -> dict[CatalogRpc, Answer]:
        return {
            CatalogRpc.WEBHOOKS_CREATE: self.answer_create,
            CatalogRpc.WEBHOOKS_LIST: self.answer_list,
            CatalogRpc.WEBHOOKS_GET: self.answer_get,
            CatalogRpc.WEBHOOKS_DELETE: self.answer_delete,
            CatalogRpc.WEBHOOKS_DELIVERIES: self.answer_deliveries,
            CatalogRpc.WEBHOOKS_REPLAY: self.answer_replay,
        }

    async def answer_create(self, body: bytes) -> RpcReply:
        async def act(request: CreateWebhookEndpoint) -> RpcReply:
            try:
                await vet_url(request.url, self._policy, self._resolve)
            except UnsafeUrl as refused:
                raise CatalogRefusal(f"url: {refused}") from None
            created = await self._repository.create_endpoint(
                request.org, url=request.url, event_types=request.event_types,
                description=request.description, secret=new_secret(),
            )
            return RpcReply(ok=True, created_webhook_endpoint=created)
        return await answer_with(CreateWebhookEndpoint, body, act)

    async def answer_list(self, body: bytes) -> RpcReply:
        async def act(request: ListWebhookEndpoints) -> RpcReply:
            return RpcReply(ok=True,
                            webhook_endpoints=await self._repository.list_endpoints(request.org))
        return await answer_with(ListWebhookEndpoints, body, act)

    async def answer_get(self, body: bytes) -> RpcReply:
        async def act(request: GetWebhookEndpoint) -> RpcReply:
            found = await self._repository.get_endpoint(request.org, request.endpoint_id)
            return RpcReply(ok=True, webhook_endpoint=found)
        return await answer_with(GetWebhookEndpoint, body, act)

    async def answer_delete(self, body: bytes) -> RpcReply:
        async def act(request: DeleteWebhookEndpoint) -> RpcReply:
            gone = await self._repository.delete_endpoint(request.org, request.endpoint_id)
            return RpcReply(ok=True, webhook_endpoint=gone)
        return await answer_with(DeleteWebhookEndpoint, body, act)

    async def answer_deliveries(self, body: bytes) -> RpcReply:
        async def act(request: ListWebhookDeliveries) -> RpcReply:
            found = await self._repository.list_deliveries(request.org, request.endpoint_id,
                                                           request.limit)
            return RpcReply(ok=True, webhook_deliveries=found)
        return await answer_with(ListWebhookDeliveries, body, act)

    async def answer_replay(self, body: bytes) -> RpcReply:
        async def act(request: ReplayWebhookDelivery) -> RpcReply:
            again = await self._repository.replay(request.org, request.endpoint_id,
                                                  request.delivery_id)
            if self._replayed is not None:
                self._replayed()
            return RpcReply(ok=True, webhook_delivery=again)
        return await answer_with(ReplayWebhookDelivery, body, act)
