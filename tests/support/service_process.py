"""A service as its own process (``python -m <package>``), for shutdown tests: start it, wait
until its log says it is ready, send SIGTERM and time the exit. Async-friendly: every wait
polls with ``asyncio.sleep`` so a test's event loop keeps serving in-process peers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from reelvault.embedded import free_port


@dataclass
class ServiceProcess:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_for_log(self, text: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.log():
            assert self.process.poll() is None, f"{self.name} exited early:\n{self.log()[-4000:]}"
            assert time.monotonic() < deadline, f"{self.name}: no {text!r}:\n{self.log()[-4000:]}"
            await asyncio.sleep(0.05)

    async def wait_http(self, url: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=1) as client:
            while True:
                assert self.process.poll() is None, f"{self.name} exited:\n{self.log()[-4000:]}"
                try:
                    if (await client.get(url)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"{self.name} not up:\n{self.log()[-4000:]}"
                await asyncio.sleep(0.05)

    def terminate(self) -> float:
        """Send SIGTERM; returns the moment it was sent (``time.monotonic``)."""
        self.process.send_signal(signal.SIGTERM)
        return time.monotonic()

    async def exit_code(self, timeout_s: float) -> int | None:
        """The exit code once it exits, or None if it is still running after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.02)
        return self.process.returncode


def spawn(name: str, module: str, env: dict[str, str], log_dir: Path) -> ServiceProcess:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", module], env={**os.environ, **env}, stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    return ServiceProcess(name, process, log_path)


@asynccontextmanager
async def service_process(
    name: str, module: str, env: dict[str, str], log_dir: Path
) -> AsyncIterator[ServiceProcess]:
    running = spawn(name, module, env, log_dir)
    process = running.process
    try:
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@dataclass
class SimProcess:
    service: ServiceProcess
    root_url: str
    api_key: str

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    async def admin(self, method: str, path: str, **kwargs: object) -> object:
        async with httpx.AsyncClient(base_url=self.root_url, timeout=10) as http:
            reply = await http.request(method, f"/_sim{path}", **kwargs)  # type: ignore[arg-type]
            reply.raise_for_status()
            return reply.json()

    async def calls(self, route: str) -> int:
        jobs = await self.admin("GET", "/jobs")
        assert isinstance(jobs, dict)
        return int(jobs["calls"].get(route, 0))


@asynccontextmanager
async def sim_process(log_dir: Path, **settings: str) -> AsyncIterator[SimProcess]:
    """The provider simulator on a free loopback port (``PROVIDER_SIM_*`` from ``settings``)."""
    port = free_port()
    api_key = "sk-shutdown-test-0123456789"
    env = {"PROVIDER_SIM_PORT": str(port), "PROVIDER_SIM_API_KEY": api_key,
           "PROVIDER_SIM_DATA_DIR": str(log_dir / "sim-data"),
           **{f"PROVIDER_SIM_{key.upper()}": value for key, value in settings.items()}}
    async with service_process("provider-sim", "reelvault_providersim", env, log_dir) as service:
        root = f"http://127.0.0.1:{port}"
        await service.wait_http(f"{root}/healthz")
        yield SimProcess(service, root, api_key)
