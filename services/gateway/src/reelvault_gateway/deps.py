"""FastAPI dependencies: ``Annotated`` aliases for what routes need (overridable in tests).

All ``async def``: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per
dependency per request (a fifth of the gateway's CPU under load) for what is an attribute
lookup. Nothing here does I/O but the key check (a cache, asking the catalog on a miss)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, Request, Security
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from reelvault_common.contracts.tenancy import Scope
from reelvault_common.runtime import telemetry
from reelvault_common.storage import ObjectStorage
from reelvault_common.storage.layout import Buckets

from reelvault_gateway.broker import EventSink
from reelvault_gateway.catalog import CatalogClient
from reelvault_gateway.context import GatewayContext
from reelvault_gateway.credentials import Principal, authorize
from reelvault_gateway.flags import refuse_writes_in_maintenance
from reelvault_gateway.idempotency import HEADER, checked_key
from reelvault_gateway.sessions import COOKIE_NAME, SAFE_METHODS, session_may_write
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


# --- who is asking ------------------------------------------------------------------------------
# Declared for the OpenAPI document (each operation lists them as alternatives, with the scope
# it needs); the request itself is read by ``Authenticator``, which tells the failures apart.
BEARER = HTTPBearer(
    scheme_name="bearer",
    description="An API key of your organization: `Authorization: Bearer rvk_...`.",
    auto_error=False,
)
SESSION = APIKeyCookie(
    name=COOKIE_NAME,
    scheme_name="session",
    description="The gallery's session cookie, set by `POST /v1/session`.",
    auto_error=False,
)


def require(scope: Scope, *, write: bool = False) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, authenticated, holding ``scope``; ``write``: also refused
    (503) while the maintenance flag is on."""
    # The schemes as defaults, not in ``Annotated``: annotations are strings here, and the
    # scopes are local to this call.
    bearer = Security(BEARER, scopes=[scope.value])
    session = Security(SESSION, scopes=[scope.value])

    async def principal(
        request: Request,
        context: ContextDep,
        _bearer: HTTPAuthorizationCredentials | None = bearer,
        _session: str | None = session,
    ) -> Principal:
        headers = request.headers
        usable = request.method in SAFE_METHODS or session_may_write(
            headers.get("origin"), headers.get("host"), context.settings.public_base_url
        )
        found = await context.auth.authenticate(
            headers.getlist("authorization"), request.cookies.get(COOKIE_NAME),
            session_usable=usable,
        )
        telemetry.tag(org=found.org)  # the request's log lines and span name it
        authorize(found, scope)
        if write:
            flags = context.flags.current
            refuse_writes_in_maintenance(flags, context.settings.maintenance_retry_after_s)
        return found

    return principal


ReadPrincipal = Annotated[Principal, Security(require(Scope.VIDEOS_READ))]
WritePrincipal = Annotated[Principal, Security(require(Scope.VIDEOS_WRITE, write=True))]


async def get_idempotency_key(
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=HEADER,
            description="Makes the request safe to retry: the same key with the same body "
            "returns the same video (no new request) for at least 24 h; with another body it "
            "is a 409. Keys are per API key (and so per organization).",
        ),
    ] = None,
) -> str | None:
    return checked_key(idempotency_key)


SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]
StorageDep = Annotated[ObjectStorage, Depends(get_storage)]
BucketsDep = Annotated[Buckets, Depends(get_buckets)]
CatalogDep = Annotated[CatalogClient, Depends(get_catalog)]
EventsDep = Annotated[EventSink, Depends(get_events)]
CorrelationIdDep = Annotated[str, Depends(get_correlation_id)]
IdempotencyKeyDep = Annotated[str | None, Depends(get_idempotency_key)]
