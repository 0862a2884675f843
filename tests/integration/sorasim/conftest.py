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
from pydantic import SecretStr

from reelvault_sorasim.app import create_app
from reelvault_sorasim.engine import Simulator
from reelvault_sorasim.settings import SimSettings

API_KEY = "sk-test-sorasim-0123456789abcdef"
GENERATION_S = 0.2


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
async def run_sim(data_dir: Path, **overrides: Any) -> AsyncIterator[RunningSim]:
    values: dict[str, Any] = {
        "api_key": SecretStr(API_KEY),
        "generation_s": GENERATION_S,
        "data_dir": data_dir,
        "seed": 7,
    }
    values.update(overrides)
    settings = SimSettings(**values)
    app = create_app(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield RunningSim(f"http://127.0.0.1:{port}", app.state.sim)
    finally:
        server.should_exit = True
        await task
        sock.close()


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
