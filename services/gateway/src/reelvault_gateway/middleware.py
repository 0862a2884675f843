"""Request ids, an access log without query strings or bodies, and a few safe headers."""

from __future__ import annotations

import logging
import re
import time
import uuid

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
