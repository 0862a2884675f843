"""Request ids, an access log without query strings or bodies, a few safe headers, and a
server span per request (traces)."""

from __future__ import annotations

import logging
import re
import time
import uuid

from opentelemetry import context, propagate
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from reelvault_common.runtime import telemetry
from reelvault_common.runtime.logs import log_scope
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reelvault_gateway.errors import error_response

log = logging.getLogger("reelvault_gateway.access")

REQUEST_ID_HEADER = "X-Request-ID"
# A client-chosen id is kept only when it is short and plain (it is logged and sent on events).
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def request_id_from(headers: Headers) -> str:
    given = headers.get(REQUEST_ID_HEADER)
    if given and _REQUEST_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


class RequestContextMiddleware:
    """Assigns ``request.state.request_id`` (echoed in ``X-Request-ID``) and logs one line per
    request: method, path, status, duration. Never the query string (signed links carry tokens)
    nor bodies."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(Headers(scope=scope))
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = request_id
                headers.setdefault("X-Content-Type-Options", "nosniff")
                # Signed links must not leak to other sites through Referer.
                headers.setdefault("Referrer-Policy", "no-referrer")
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            log.info(
                "%s %s %s %.1fms id=%s",
                scope["method"],
                scope["path"],
                status,
                (time.perf_counter() - started) * 1000,
                request_id,
            )


# Probes and scrapes come many times a minute and mean nothing to a trace.
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class TracingMiddleware:
    """The outermost layer: a fresh log context per request and, when traces are exported, a
    server span continuing the caller's ``traceparent`` (if any). The span is named after the
    route template once routing has matched (``POST /v1/videos``, ``GET
    /v1/videos/{video_id}``), never the query string; health probes are not traced."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with log_scope():
            tracer = telemetry.tracer()
            if tracer is None or scope["path"] in UNTRACED_PATHS:
                await self.app(scope, receive, send)
                return
            method = scope["method"]
            with tracer.start_as_current_span(
                method,
                # The caller's trace, if it sent one (else whatever is current).
                context=propagate.extract(Headers(scope=scope), context.get_current()),
                kind=SpanKind.SERVER,
                attributes={
                    "http.request.method": method,
                    "url.scheme": scope.get("scheme", "http"),
                    "url.path": scope["path"],
                },
            ) as span:
                status = 500

                async def send_status(message: Message) -> None:
                    nonlocal status
                    if message["type"] == "http.response.start":
                        status = message["status"]
                    await send(message)

                try:
                    await self.app(scope, receive, send_status)
                finally:
                    _describe(span, scope, method, status)


def _describe(span: Span, scope: Scope, method: str, status: int) -> None:
    """What the request turned out to be: its route template (routing put the matched route
    on the scope, Starlette's ``route``), status and request id."""
    template = getattr(scope.get("route"), "path_format", None)
    if isinstance(template, str):
        span.update_name(f"{method} {template}")
        span.set_attribute("http.route", template)
    span.set_attribute("http.response.status_code", status)
    request_id = scope.get("state", {}).get("request_id")
    if request_id:
        span.set_attribute("reelvault.request_id", str(request_id))
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))


class ContentLengthGuard:
    """Refuses a body whose declared ``Content-Length`` exceeds the route's limit with a 413 in
    the error envelope, before anything is read. (FastAPI's ``max_body_size`` still counts the
    bytes of bodies sent without a length.)"""

    def __init__(self, app: ASGIApp, default_limit: int, limits: dict[str, int]) -> None:
        self.app = app
        self.default_limit = default_limit
        self.limits = limits  # path -> limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            limit = self.limits.get(scope["path"], self.default_limit)
            declared = Headers(scope=scope).get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                response = error_response(
                    413, "payload_too_large", f"The request body exceeds {limit} bytes."
                )
                # The body is left unread; the server closes the connection after answering.
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
