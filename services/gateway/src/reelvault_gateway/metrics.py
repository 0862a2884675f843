"""The gateway's metrics and its ``/metrics`` route (Prometheus text, outside the OpenAPI
document and without authentication, like the health probes).

- ``reelvault_http_request_duration_seconds{route,method,status}``: every request, labelled
  with the template of the route that matched (``/v1/videos/{video_id}``), never the raw path;
  a request no route matched is ``unmatched``.
- ``reelvault_egress_bytes_total{bucket}``: stored content handed out. ``/files`` responses
  count the bytes actually sent; a signed download link the gateway hands out (the content
  redirect) counts the object's size, except on the filesystem backend, whose links lead back
  to ``/files`` and are counted there (not twice).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Collection, Sequence

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from reelvault_common.contracts.events import StoredFile
from reelvault_common.runtime.metrics import bounded
from reelvault_common.storage import ObjectStorage
from reelvault_common.storage.filesystem import FilesystemStorage
from reelvault_common.storage.interface import BucketSpec, ListedObject, ObjectInfo
from starlette.routing import Match, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reelvault_gateway.routes import files

log = logging.getLogger(__name__)

UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The route templates whose answers are stored files (``/files/{bucket}/{key:path}``).
FILE_ROUTES = frozenset(str(getattr(route, "path", "")) for route in files.router.routes)
SERVED = frozenset({200, 206})

HTTP_DURATION = Histogram(
    "reelvault_http_request_duration_seconds",
    "Gateway requests by route template, method and status (until the last byte was sent).",
    ["route", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
EGRESS = Counter(
    "reelvault_egress_bytes",
    "Bytes of stored content served by /files, or handed out as signed download links "
    "(the object's size).",
    ["bucket"],
)

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    """Prometheus text format (a plain ``def``: rendered on a worker thread)."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def route_template(scope: Scope, received: Scope) -> str:
    """The template of the route that answered: the API route routing put on the ``scope``;
    else a plain route or mount (the OpenAPI document, ``/static``) matching the scope as it
    was ``received``; else ``unmatched``."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str) and path:
        return path
    for route in getattr(getattr(received.get("app"), "router", None), "routes", ()):
        if isinstance(route, Route | Mount) and route.matches(received)[0] == Match.FULL:
            return f"{route.path}/{{path:path}}" if isinstance(route, Mount) else route.path
    return UNMATCHED


class HttpMetrics:
    """ASGI middleware: times every request and counts the bytes ``/files`` sends."""

    def __init__(self, app: ASGIApp, buckets: Collection[str]) -> None:
        self.app = app
        self.buckets = frozenset(buckets)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = dict(scope)  # routing adds to the scope (and a mount changes its root)
        started = time.perf_counter()
        status = 500
        sent = 0

        async def counting(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, counting)
        finally:
            route = route_template(scope, received)
            HTTP_DURATION.labels(
                route=route, method=bounded(scope["method"], METHODS), status=str(status)
            ).observe(time.perf_counter() - started)
            if route in FILE_ROUTES and status in SERVED and sent:
                bucket = scope.get("path_params", {}).get("bucket")
                if bucket in self.buckets:
                    EGRESS.labels(bucket=bucket).inc(sent)


def metered_storage(storage: ObjectStorage, buckets: Sequence[BucketSpec]) -> ObjectStorage:
    """``storage``, counting the signed links it hands out, unless they lead back to this
    gateway's ``/files`` (the filesystem backend), where the bytes are counted as sent."""
    if isinstance(storage, FilesystemStorage):
        return storage
    return MeteredStorage(storage, [spec.name for spec in buckets])


class MeteredStorage:
    """An ``ObjectStorage`` that counts the size of each object it signs a download link for
    (looked up after the link is returned: the redirect does not wait for it)."""

    def __init__(self, storage: ObjectStorage, buckets: Collection[str]) -> None:
        self._storage = storage
        self._buckets = frozenset(buckets)
        self._counting: set[asyncio.Task[None]] = set()

    async def signed_url(self, bucket: str, key: str, expires_in_s: int) -> str:
        url = await self._storage.signed_url(bucket, key, expires_in_s)
        if bucket in self._buckets:
            task = asyncio.create_task(self._count(bucket, key))
            self._counting.add(task)
            task.add_done_callback(self._counting.discard)
        return url

    async def _count(self, bucket: str, key: str) -> None:
        try:
            info = await self._storage.stat(bucket, key)
        except Exception as exc:  # a metric is not worth an error: the link was handed out
            log.debug("egress of %s not counted: %r", bucket, exc)
            return
        if info is not None:
            EGRESS.labels(bucket=bucket).inc(info.size)

    async def ensure_buckets(self, specs: Sequence[BucketSpec]) -> None:
        await self._storage.ensure_buckets(specs)

    async def put(
        self, bucket: str, key: str, chunks: AsyncIterable[bytes], content_type: str, *,
        size: int | None = None,
    ) -> StoredFile:
        return await self._storage.put(bucket, key, chunks, content_type, size=size)

    async def stat(self, bucket: str, key: str) -> ObjectInfo | None:
        return await self._storage.stat(bucket, key)

    def read(self, bucket: str, key: str) -> AsyncIterator[bytes]:
        return self._storage.read(bucket, key)

    async def public_url(self, bucket: str, key: str) -> str | None:
        return await self._storage.public_url(bucket, key)

    async def delete(self, bucket: str, key: str) -> bool:
        return await self._storage.delete(bucket, key)

    def list_objects(self, bucket: str, prefix: str = "") -> AsyncIterator[ListedObject]:
        return self._storage.list_objects(bucket, prefix)

    async def aclose(self) -> None:
        counting = list(self._counting)
        for task in counting:
            task.cancel()
        await asyncio.gather(*counting, return_exceptions=True)
        await self._storage.aclose()
