"""Run the simulator in-process on a real loopback socket (uvicorn), one per test."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from providersim_helpers import API_KEY, GENERATION_S
from pydantic import SecretStr
from reelvault_providersim.app import create_app
from reelvault_providersim.engine import Simulator
from reelvault_providersim.settings import SimSettings


@dataclass
class RunningSim:
    root_url: str
    sim: Simulator

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def admin(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.root_url, timeout=10)


SimFactory = Callable[..., AbstractAsyncContextManager[RunningSim]]


@asynccontextmanager
async def serve_app(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on a free 127.0.0.1 port; yields its root URL."""
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets that say so, and
    # without it every keep-alive request waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.005)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@asynccontextmanager
async def run_sim(data_dir: Path, **overrides: Any) -> AsyncIterator[RunningSim]:
    values: dict[str, Any] = {
        "api_key": SecretStr(API_KEY),
        "generation_s": GENERATION_S,
        "data_dir": data_dir,
        "seed": 7,
        # Real MP4s still, but fewer frames: renders stay well inside GENERATION_S.
        "fps": 2,
    }
    values.update(overrides)
    app = create_app(SimSettings(**values))
    async with serve_app(app) as root_url:
        yield RunningSim(root_url, app.state.sim)


@pytest.fixture
def sim_factory(tmp_path: Path) -> SimFactory:
    counter = iter(range(1000))

    def factory(**overrides: Any) -> AbstractAsyncContextManager[RunningSim]:
        return run_sim(tmp_path / f"sim{next(counter)}", **overrides)

    return factory


@pytest.fixture
async def sim(sim_factory: SimFactory) -> AsyncIterator[RunningSim]:
    async with sim_factory() as running:
        yield running
