"""The HTTP endpoint providers deliver webhooks to, and its in-process uvicorn server."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import uvicorn
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse

from reelvault_generator.webhooks import WebhookReceiver

WEBHOOK_PATH = "/webhooks/{provider}"


def create_webhook_app(receiver: WebhookReceiver, *, provider: str) -> FastAPI:
    app = FastAPI(title="reelvault generator webhooks", docs_url=None, redoc_url=None,
                  openapi_url=None)

    @app.post(WEBHOOK_PATH.format(provider=provider))
    async def receive(request: Request) -> JSONResponse:
        # The raw bytes: the signature covers the body exactly as sent.
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        status, payload = await receiver.handle(headers, body)
        return JSONResponse(payload, status_code=status)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


class WebhookServer:
    """uvicorn serving the webhook app inside the generator's event loop."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
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
