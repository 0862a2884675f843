"""The HTTP endpoint providers deliver webhooks to, and its in-process uvicorn server.

A bare ASGI app, not FastAPI: two fixed routes, and under load one delivery per video, where
FastAPI's routing, dependency solving and middleware stack cost about as much as the work."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from reelvault_generator.webhooks import WebhookReceiver

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/{provider}"
# Provider events are a few hundred bytes; anything this large is not one.
MAX_BODY_BYTES = 1024 * 1024


async def _reply(send: Send, status: int, payload: dict[str, Any],
                 extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()), *extra]})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes | None:
    """The request body, or None once it exceeds ``MAX_BODY_BYTES``."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


class WebhookApp:
    """``POST /webhooks/<provider>`` for each provider (the raw body: the signature covers it
    exactly as sent; the query string is the provider's, e.g. our callback's video) and
    ``GET /healthz``; JSON answers, 404/405 for anything else."""

    def __init__(self, receivers: Mapping[str, WebhookReceiver]) -> None:
        self._receivers = {WEBHOOK_PATH.format(provider=name): receiver
                           for name, receiver in receivers.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == "/healthz":
            if method in ("GET", "HEAD"):
                await _reply(send, 200, {"status": "ok"})
            else:
                await _reply(send, 405, {"detail": "Method Not Allowed"}, ((b"allow", b"GET"),))
            return
        receiver = self._receivers.get(path)
        if receiver is None:
            await _reply(send, 404, {"detail": "Not Found"})
            return
        if method != "POST":
            await _reply(send, 405, {"detail": "Method Not Allowed"}, ((b"allow", b"POST"),))
            return
        body = await _read_body(receive)
        if body is None:
            await _reply(send, 413, {"error": "request body too large"})
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope["headers"]}
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        try:
            status, payload = await receiver.handle(headers, body, query)
        except Exception:
            log.exception("webhook delivery failed unexpectedly")
            status, payload = 500, {"error": "internal error"}
        await _reply(send, status, payload)


def create_webhook_app(receiver: WebhookReceiver | Mapping[str, WebhookReceiver], *,
                       provider: str = "openai") -> ASGIApp:
    receivers = receiver if isinstance(receiver, Mapping) else {provider: receiver}
    return WebhookApp(receivers)


class WebhookServer:
    """uvicorn serving the webhook app inside the generator's event loop."""

    def __init__(self, app: ASGIApp, host: str, port: int) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host, self.port = self._sock.getsockname()[:2]
        self._server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._sock.close()
