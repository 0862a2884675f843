"""Run the simulator in-process on a real loopback socket (uvicorn), one per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from providersim_helpers import API_KEY, GENERATION_S
from pydantic import SecretStr
from reelvault_providersim.app import create_app
from reelvault_providersim.engine import Simulator
from reelvault_providersim.settings import SimSettings

from tests.support.asgi_server import serve_app


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
