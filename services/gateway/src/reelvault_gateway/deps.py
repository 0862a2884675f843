"""FastAPI dependencies: ``Annotated`` aliases for what routes need (overridable in tests).

All ``async def``: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per
dependency per request (a fifth of the gateway's CPU under load) for what is an attribute
lookup. Nothing here does I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from reelvault_common.storage import ObjectStorage
from reelvault_common.storage.layout import Buckets

from reelvault_gateway.broker import EventSink
from reelvault_gateway.catalog import CatalogClient
from reelvault_gateway.context import GatewayContext
from reelvault_gateway.idempotency import HEADER, checked_key, client_identity
from reelvault_gateway.settings import GatewaySettings


async def get_context(request: Request) -> GatewayContext:
    context: GatewayContext = request.app.state.context
    return context


ContextDep = Annotated[GatewayContext, Depends(get_context)]


async def get_settings(context: ContextDep) -> GatewaySettings:
    return context.settings


async def get_storage(context: ContextDep) -> ObjectStorage:
    return context.storage


async def get_buckets(context: ContextDep) -> Buckets:
    return context.buckets


async def get_catalog(context: ContextDep) -> CatalogClient:
    return context.catalog


async def get_events(context: ContextDep) -> EventSink:
    return context.events


async def get_correlation_id(request: Request) -> str:
    """The request id the middleware assigned; it travels as the events' correlation id."""
    return str(getattr(request.state, "request_id", "") or "")


@dataclass(frozen=True)
class IdempotencyKey:
    client: str
    key: str


async def get_idempotency_key(
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=HEADER,
            description="Makes the request safe to retry: the same key with the same body "
            "returns the same video (no new request) for at least 24 h; with another body it "
            "is a 409. Keys are per client (the `Authorization` header if sent, else the "
            "remote address).",
        ),
    ] = None,
) -> IdempotencyKey | None:
    key = checked_key(idempotency_key)
    if key is None:
        return None
    remote = request.client.host if request.client else None
    return IdempotencyKey(client_identity(request.headers.get("authorization"), remote), key)


SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]
StorageDep = Annotated[ObjectStorage, Depends(get_storage)]
BucketsDep = Annotated[Buckets, Depends(get_buckets)]
CatalogDep = Annotated[CatalogClient, Depends(get_catalog)]
EventsDep = Annotated[EventSink, Depends(get_events)]
CorrelationIdDep = Annotated[str, Depends(get_correlation_id)]
IdempotencyKeyDep = Annotated[IdempotencyKey | None, Depends(get_idempotency_key)]
