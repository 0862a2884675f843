"""Webhook endpoints are the catalog's: the gateway asks it over NATS request/reply, always
naming the caller's organization (another organization's endpoint is ``not_found``)."""

from __future__ import annotations

import logging
import uuid
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from reelvault_common.contracts.catalog import (
    CatalogErrorCode,
    CreatedWebhookEndpoint,
    CreateWebhookEndpoint,
    DeleteWebhookEndpoint,
    GetWebhookEndpoint,
    ListWebhookDeliveries,
    ListWebhookEndpoints,
    ReplayWebhookDelivery,
    RpcReply,
    WebhookDeliveryInfo,
    WebhookEndpointInfo,
    WebhookEventType,
)
from reelvault_common.messaging.topology import Topology

from reelvault_gateway.broker import BrokerUnavailable, Requester
from reelvault_gateway.catalog import CatalogError, CatalogUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")


class EndpointNotFound(Exception):
    """No such endpoint (or delivery) in the caller's organization."""


class EndpointRefused(Exception):
    """The catalog refused the request (e.g. a URL that may not be called); ``message`` says
    why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class WebhookEndpointsClient:
    def __init__(self, requester: Requester, topology: Topology, timeout_s: float) -> None:
        self._requester = requester
        self._topology = topology
        self._timeout_s = timeout_s

    async def _call(self, message: BaseModel, timeout_s: float | None = None) -> RpcReply:
        subject = self._topology.rpc_subject(message)
        try:
            raw = await self._requester.request(
                subject, message.model_dump_json().encode(), timeout_s or self._timeout_s)
        except BrokerUnavailable as exc:
            raise CatalogUnavailable(str(exc)) from exc
        try:
            reply = RpcReply.model_validate_json(raw)
        except ValidationError as exc:
            log.error("undecodable catalog reply on %s: %s", subject, exc)
            raise CatalogError("bad_reply", "the catalog sent a reply the gateway cannot read"
                               ) from exc
        error = reply.error
        if reply.ok or error is None:
            return reply
        if error.code is CatalogErrorCode.UNAVAILABLE:
            raise CatalogUnavailable(f"{error.code}: {error.message}")
        if error.code is CatalogErrorCode.NOT_FOUND:
            raise EndpointNotFound(error.message)
        if error.code is CatalogErrorCode.INVALID_REQUEST:
            raise EndpointRefused(error.message)
        raise CatalogError(error.code, error.message)

    async def create(self, org: str, *, url: str, event_types: list[WebhookEventType],
                     description: str) -> CreatedWebhookEndpoint:
        # DNS resolution happens in the catalog: give it time for a slow resolver.
        reply = await self._call(CreateWebhookEndpoint(
            org=org, url=url, event_types=event_types, description=description),
            timeout_s=self._timeout_s * 2)
        return _present(reply.created_webhook_endpoint)

    async def endpoints(self, org: str) -> list[WebhookEndpointInfo]:
        return _present((await self._call(ListWebhookEndpoints(org=org))).webhook_endpoints)

    async def get(self, org: str, endpoint_id: uuid.UUID) -> WebhookEndpointInfo:
        reply = await self._call(GetWebhookEndpoint(org=org, endpoint_id=endpoint_id))
        return _present(reply.webhook_endpoint)

    async def delete(self, org: str, endpoint_id: uuid.UUID) -> WebhookEndpointInfo:
        reply = await self._call(DeleteWebhookEndpoint(org=org, endpoint_id=endpoint_id))
        return _present(reply.webhook_endpoint)

    async def deliveries(self, org: str, endpoint_id: uuid.UUID, limit: int
                         ) -> list[WebhookDeliveryInfo]:
        reply = await self._call(ListWebhookDeliveries(org=org, endpoint_id=endpoint_id,
                                                       limit=limit))
        return _present(reply.webhook_deliveries)

    async def replay(self, org: str, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
                     ) -> WebhookDeliveryInfo:
        reply = await self._call(ReplayWebhookDelivery(org=org, endpoint_id=endpoint_id,
                                                       delivery_id=delivery_id))
        return _present(reply.webhook_delivery)


def _present(value: T | None) -> T:
    if value is None:
        raise CatalogError("bad_reply", "the catalog answered without a result")
    return value
