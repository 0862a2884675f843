"""Wiring: the FastAPI app, its lifespan (broker, stream, storage, buckets) and routers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.telemetry import TelemetryConfig
from reelvault_common.messaging.topology import Topology
from reelvault_common.storage.factory import open_storage
from reelvault_common.storage.layout import Buckets

from reelvault_gateway.auth import Authenticator, session_signer
from reelvault_gateway.broker import BrokerLink
from reelvault_gateway.catalog import NatsCatalogClient
from reelvault_gateway.context import GatewayContext
from reelvault_gateway.errors import install_error_handlers
from reelvault_gateway.idempotency_store import KvIdempotencyStore
from reelvault_gateway.key_cache import KeyCache
from reelvault_gateway.live_events import EventStreamSettings, LiveEvents
from reelvault_gateway.metrics import HttpMetrics, metered_storage
from reelvault_gateway.metrics import router as metrics_router
from reelvault_gateway.middleware import (
    ContentLengthGuard,
    RequestContextMiddleware,
    TracingMiddleware,
)
from reelvault_gateway.routes import (
    events,
    files,
    gallery,
    health,
    models,
    seed,
    session,
    uploads,
    usage,
    videos,
    webhook_endpoints,
)
from reelvault_gateway.settings import GatewaySettings
from reelvault_gateway.webhook_endpoints import WebhookEndpointsClient

log = logging.getLogger(__name__)

# Multipart framing around the file (boundaries, part headers) on top of the file limit.
MULTIPART_OVERHEAD = 64 * 1024

# Server spans are TracingMiddleware's: FastAPI's own would record the query string, and
# signed links carry tokens in it.
TELEMETRY: TelemetryConfig = {"tracing": False}

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]

DESCRIPTION = """\
Request AI videos (OpenAI Videos API protocol) from a prompt and up to two reference images;
finished videos are copied into permanent storage and listed by the catalog.

Every error is JSON: `{"error": {"code": "...", "message": "...", "details": ...}}`.

Every `/v1` and `/api` operation needs an API key of your organization,
`Authorization: Bearer rvk_...`, holding the scope the operation names (`videos:read`,
`videos:write`; `admin` holds both); the gallery signs in once (`POST /v1/session`) and uses a
session cookie instead. What you see and create is your organization's only.
"""


def create_app(
    settings: GatewaySettings,
    *,
    on_startup_failure: Callable[[str], None] | None = None,
    stopping: asyncio.Event | None = None,
) -> FastAPI:
    """``on_startup_failure`` hears (once) that NATS did not answer within the start-up
    deadline; the process then exits non-zero (``__main__``). Without it the app stays
    not-ready. ``stopping`` set (SIGTERM) ends the start-up's wait for the broker at once."""
    app = FastAPI(title="reelvault gateway", version="1.0.0", description=DESCRIPTION,
                  lifespan=_lifespan(settings, on_startup_failure, stopping),
                  telemetry=TELEMETRY)
    install_error_handlers(app)
    upload_limit = settings.max_upload_bytes + MULTIPART_OVERHEAD
    _add_middleware(app, settings, upload_limit)
    _include_routers(app, settings, upload_limit)
    return app


def _lifespan(
    settings: GatewaySettings,
    on_startup_failure: Callable[[str], None] | None,
    stopping: asyncio.Event | None,
) -> Lifespan:
    """The app's lifespan: the broker, the catalog's clients, storage and buckets, built at
    start-up and closed at shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        topology = Topology.from_settings(settings)
        buckets = Buckets.from_settings(settings)
        storage = metered_storage(open_storage(settings), buckets.all())
        link = BrokerLink(settings, topology, publish_timeout_s=settings.publish_timeout_s,
                          idempotency_ttl_s=settings.idempotency_ttl_s,
                          on_give_up=on_startup_failure)
        catalog = NatsCatalogClient(link, topology, settings.rpc_timeout_s)
        app.state.webhook_endpoints = WebhookEndpointsClient(link, topology,
                                                             settings.rpc_timeout_s)
        keys = KeyCache(catalog.lookup_key, settings.key_cache_ttl_s)
        # The catalog names each key it revokes: dropped from the cache at once.
        link.listen(topology.key_changes, keys.on_message)
        auth = Authenticator(keys, session_signer(settings), settings.session_ttl_s)
        # GET /v1/events: its streams end as soon as the gateway is told to stop, since
        # uvicorn would otherwise wait for them through the whole grace period.
        live = LiveEvents(settings, topology, EventStreamSettings())
        app.state.live_events = live
        stop_watch = (asyncio.create_task(_shut_down_on(stopping, live))
                      if stopping is not None else None)
        try:
            await storage.ensure_buckets(buckets.all())
            # Connects and prepares the stream (no consumers: the gateway only publishes).
            await link.start(wait_s=settings.broker_connect_wait_s, abort=stopping)
            app.state.context = GatewayContext(
                settings=settings,
                buckets=buckets,
                storage=storage,
                events=link,
                catalog=catalog,
                broker=link,
                auth=auth,
                flags=link.flags,
                models=link.models,
                idempotency=KvIdempotencyStore(link.idempotency_bucket),
                recorded=link.recorded,
            )
            log.info(
                "gateway ready on namespace %s (storage: %s)",
                settings.namespace,
                settings.storage_backend,
            )
            yield
        finally:
            if stop_watch is not None:
                stop_watch.cancel()
            await live.close()
            await link.stop()
            await storage.aclose()
            log.info("gateway stopped")

    return lifespan


def _add_middleware(app: FastAPI, settings: GatewaySettings, upload_limit: int) -> None:
    upload_paths = {route.path for route in uploads.router.routes}  # type: ignore[attr-defined]
    app.add_middleware(
        ContentLengthGuard,
        default_limit=settings.max_json_bytes,
        limits=dict.fromkeys(upload_paths, upload_limit),
    )
    bucket_names = [spec.name for spec in Buckets.from_settings(settings).all()]
    app.add_middleware(HttpMetrics, buckets=bucket_names)  # durations, /files egress
    app.add_middleware(RequestContextMiddleware)  # sees every answer
    app.add_middleware(TracingMiddleware)  # outermost: the access line is inside the span


def _include_routers(app: FastAPI, settings: GatewaySettings, upload_limit: int) -> None:
    app.include_router(uploads.router, max_body_size=upload_limit)
    # Limits per router, not app-wide: FastAPI's app-level limit answers in plain text.
    app.include_router(videos.router, max_body_size=settings.max_json_bytes)
    app.include_router(seed.router, max_body_size=settings.max_json_bytes)
    app.include_router(session.router, max_body_size=settings.max_json_bytes)
    app.include_router(usage.router)
    app.include_router(webhook_endpoints.router, max_body_size=settings.max_json_bytes)
    app.include_router(events.router)
    app.include_router(models.router)
    app.include_router(files.router)
    app.include_router(health.router)
    app.include_router(metrics_router)  # /metrics: not in the OpenAPI document, no key
    app.include_router(gallery.router)
    app.mount("/static", StaticFiles(directory=gallery.STATIC_DIR), name="static")


async def _shut_down_on(stopping: asyncio.Event, live: LiveEvents) -> None:
    await stopping.wait()
    live.shut_down()
