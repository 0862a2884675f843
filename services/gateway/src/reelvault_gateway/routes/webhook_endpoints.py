"""``/v1/webhook-endpoints``: an organization's webhook endpoints, their delivery log and
replays. They send the organization's video events, so they take the videos' scopes: changes
need ``videos:write``, reads ``videos:read``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from reelvault_common.contracts.catalog import (
    WebhookDeliveryInfo,
    WebhookDeliveryStatus,
    WebhookEndpointInfo,
    WebhookEventType,
)

from reelvault_gateway.catalog import CatalogUnavailable
from reelvault_gateway.deps import ReadPrincipal, WritePrincipal
from reelvault_gateway.errors import ApiError, error_responses, field_error
from reelvault_gateway.webhook_endpoints import (
    EndpointNotFound,
    EndpointRefused,
    WebhookEndpointsClient,
)

router = APIRouter(prefix="/v1/webhook-endpoints", tags=["webhooks"])


async def get_webhook_endpoints(request: Request) -> WebhookEndpointsClient:
    """The client the app's lifespan made (overridable in tests, like ``get_context``)."""
    client: WebhookEndpointsClient | None = getattr(request.app.state, "webhook_endpoints",
                                                    None)
    if client is None:
        raise CatalogUnavailable("webhook endpoints are not connected yet")
    return client


ClientDep = Annotated[WebhookEndpointsClient, Depends(get_webhook_endpoints)]


# --- what clients send and see -------------------------------------------------------------
class NewWebhookEndpoint(BaseModel):
    url: str = Field(min_length=1, max_length=2000, description="Where events are POSTed: "
                     "an https URL whose host resolves to public addresses only.")
    event_types: list[WebhookEventType] = Field(
        min_length=1, description="Which events to send: `video.completed`, `video.failed`, "
        "`video.deleted`, `quota.warning`.")
    description: str = Field(default="", max_length=500)


class WebhookEndpoint(BaseModel):
    """An endpoint events of your organization are sent to, signed per Standard Webhooks."""

    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    id: uuid.UUID
    url: str
    description: str
    event_types: list[WebhookEventType]
    enabled: bool = Field(description="False once it failed for too long (`disabled_reason`); "
                          "replaying a delivery enables it again.")
    disabled_reason: str | None
    disabled_at: datetime | None
    consecutive_failures: int
    failing_since: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, info: WebhookEndpointInfo) -> WebhookEndpoint:
        return cls.model_validate(info.model_dump(exclude={"org"}))


class CreatedWebhookEndpoint(WebhookEndpoint):
    secret: str = Field(description="The signing secret (`whsec_...`), shown this once.")


class WebhookEndpointList(BaseModel):
    object: Literal["list"] = "list"
    data: list[WebhookEndpoint]


class WebhookEndpointDeletion(BaseModel):
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    id: uuid.UUID
    deleted: Literal[True] = True


class WebhookDelivery(BaseModel):
    """One event sent to the endpoint; ``id`` is the ``webhook-id`` of every attempt."""

    object: Literal["webhook_delivery"] = "webhook_delivery"
    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    event_type: WebhookEventType
    status: WebhookDeliveryStatus = Field(description="`pending` (next_attempt_at says when), "
                                          "`succeeded` (a 2xx answer) or `failed` (gave up).")
    attempts: int
    last_attempt_at: datetime | None
    last_response_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, info: WebhookDeliveryInfo) -> WebhookDelivery:
        return cls.model_validate(info.model_dump())


class WebhookDeliveryList(BaseModel):
    object: Literal["list"] = "list"
    data: list[WebhookDelivery]


def _refused(exc: EndpointRefused) -> ApiError:
    message = exc.message
    if message.startswith("url: "):
        return field_error(["body", "url"], message.removeprefix("url: "), "unsafe_url")
    return ApiError(422, "webhook_endpoint_refused", message)


def _not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"No such {what}.")


# --- routes --------------------------------------------------------------------------------
@router.post(
    "",
    status_code=201,
    response_model=CreatedWebhookEndpoint,
    summary="Add a webhook endpoint",
    responses=error_responses(401, 403, 422, 502, 503),
)
async def create_endpoint(body: NewWebhookEndpoint, principal: WritePrincipal,
                          client: ClientDep) -> CreatedWebhookEndpoint:
    """The answer holds the endpoint's signing secret; it is never shown again. In production
    the URL must be https and its host must resolve to public addresses only."""
    try:
        created = await client.create(principal.org, url=body.url, event_types=body.event_types,
                                      description=body.description)
    except EndpointRefused as exc:
        raise _refused(exc) from None
    return CreatedWebhookEndpoint.model_validate(
        {**WebhookEndpoint.of(created.endpoint).model_dump(), "secret": created.secret})


@router.get(
    "",
    response_model=WebhookEndpointList,
    summary="List webhook endpoints",
    responses=error_responses(401, 403, 502, 503),
)
async def list_endpoints(principal: ReadPrincipal, client: ClientDep) -> WebhookEndpointList:
    found = await client.endpoints(principal.org)
    return WebhookEndpointList(data=[WebhookEndpoint.of(info) for info in found])


@router.get(
    "/{endpoint_id}",
    response_model=WebhookEndpoint,
    summary="Get a webhook endpoint",
    responses=error_responses(401, 403, 404, 422, 502, 503),
)
async def get_endpoint(endpoint_id: uuid.UUID, principal: ReadPrincipal,
                       client: ClientDep) -> WebhookEndpoint:
    try:
        return WebhookEndpoint.of(await client.get(principal.org, endpoint_id))
    except EndpointNotFound:
        raise _not_found("webhook endpoint") from None


@router.delete(
    "/{endpoint_id}",
    response_model=WebhookEndpointDeletion,
    summary="Delete a webhook endpoint",
    responses=error_responses(401, 403, 404, 422, 502, 503),
)
async def delete_endpoint(endpoint_id: uuid.UUID, principal: WritePrincipal,
                          client: ClientDep) -> WebhookEndpointDeletion:
    """Nothing more is sent to it; its delivery log goes with it."""
    try:
        gone = await client.delete(principal.org, endpoint_id)
    except EndpointNotFound:
        raise _not_found("webhook endpoint") from None
    return WebhookEndpointDeletion(id=gone.id)


@router.get(
    "/{endpoint_id}/deliveries",
    response_model=WebhookDeliveryList,
    summary="An endpoint's delivery log, newest first",
    responses=error_responses(401, 403, 404, 422, 502, 503),
)
async def list_deliveries(
    endpoint_id: uuid.UUID, principal: ReadPrincipal, client: ClientDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> WebhookDeliveryList:
    try:
        found = await client.deliveries(principal.org, endpoint_id, limit)
    except EndpointNotFound:
        raise _not_found("webhook endpoint") from None
    return WebhookDeliveryList(data=[WebhookDelivery.of(info) for info in found])


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/replay",
    status_code=202,
    response_model=WebhookDelivery,
    summary="Send one delivery again",
    responses=error_responses(401, 403, 404, 422, 502, 503),
)
async def replay_delivery(endpoint_id: uuid.UUID, delivery_id: uuid.UUID,
                          principal: WritePrincipal, client: ClientDep) -> WebhookDelivery:
    """One more attempt at once, with the same `webhook-id`; an endpoint disabled for failing
    is enabled again (its pending deliveries resume)."""
    try:
        return WebhookDelivery.of(await client.replay(principal.org, endpoint_id, delivery_id))
    except EndpointNotFound:
        raise _not_found("webhook delivery") from None
