"""A local webhook receiver on loopback (Starlette under uvicorn, in the test's event loop):
``/hooks/<name>`` answers what the test planned for ``name`` (status codes in turn, the last
one repeating; optionally after a delay) and records every request it got."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass(frozen=True)
class Received:
    name: str
    headers: dict[str, str]
    body: str
    at: float


@dataclass
class Plan:
    codes: list[int] = field(default_factory=lambda: [204])
    delay_s: float = 0.0
    # Only the first ``slow_times`` requests wait ``delay_s`` (None: every one).
    slow_times: int | None = None


class WebhookReceiver:
    def __init__(self) -> None:
        self.base_url = ""
        self.received: list[Received] = []
        self._plans: dict[str, Plan] = {}
        self._served: dict[str, int] = {}

    def url(self, name: str) -> str:
        return f"{self.base_url}/hooks/{name}"

    def plan(self, name: str, *codes: int, delay_s: float = 0.0,
             slow_times: int | None = None) -> None:
        self._plans[name] = Plan(list(codes) or [204], delay_s, slow_times)

    def of(self, name: str) -> list[Received]:
        return [r for r in self.received if r.name == name]

    async def _hook(self, request: Request) -> Response:
        name = request.path_params["name"]
        plan = self._plans.get(name, Plan())
        served = self._served.get(name, 0)
        self._served[name] = served + 1
        if plan.delay_s and (plan.slow_times is None or served < plan.slow_times):
            await asyncio.sleep(plan.delay_s)
        body = (await request.body()).decode()
        self.received.append(Received(name, dict(request.headers), body, time.monotonic()))
        code = plan.codes[min(served, len(plan.codes) - 1)]
        return Response(status_code=code)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hooks/{name}", self._hook, methods=["POST"])])


@contextlib.asynccontextmanager
async def webhook_receiver() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    receiver.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(receiver.app(), log_level="warning",
                                           lifespan="off", timeout_graceful_shutdown=1))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield receiver
    finally:
        server.should_exit = True
        await task
        sock.close()
