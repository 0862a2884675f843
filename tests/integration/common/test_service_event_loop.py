"""Every service process runs on uvloop: its log names the loop right after start-up. Each is
started with NATS (and, for the catalog, PostgreSQL) on a dead loopback port, so it waits for
it; SIGTERM (the loop's signal handling) then still stops it with exit 0."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from reelvault.embedded import free_port
from tests.support.service_process import service_process

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(sys.platform == "win32", reason="uvloop is not on Windows"),
]

MODULES = {
    "gateway": "reelvault_gateway",
    "generator": "reelvault_generator",
    "archiver": "reelvault_archiver",
    "catalog": "reelvault_catalog",
}


def waiting_env(name: str, tmp_path: Path) -> dict[str, str]:
    port = free_port()
    return {
        "NATS_URL": f"nats://127.0.0.1:{free_port()}",
        "REELVAULT_NAMESPACE": f"loop{port}",
        "REELVAULT_STORAGE_DIR": str(tmp_path / "storage"),
        "REELVAULT_STORAGE_SIGNING_KEY": "event-loop-test-signing-key",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",
        "OPENAI_API_KEY": "sk-event-loop-test",
        "DATABASE_URL": f"postgresql://reelvault:pw@127.0.0.1:{free_port()}/x",
        "REELVAULT_PORT": str(port),
        "REELVAULT_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "REELVAULT_STARTUP_TIMEOUT_S": "60",
        "REELVAULT_LOG_LEVEL": "INFO",
    }


@pytest.mark.parametrize("name", list(MODULES))
async def test_the_service_runs_on_uvloop(name: str, tmp_path: Path) -> None:
    env = waiting_env(name, tmp_path)
    async with service_process(name, MODULES[name], env, tmp_path / "logs") as service:
        await service.wait_for_log("event loop: uvloop.Loop")
        await service.wait_for_log(" (attempt 1): ")  # waiting for NATS or PostgreSQL
        service.terminate()
        code = await service.exit_code(20)
        assert code == 0, f"exit {code}:\n{service.log()[-4000:]}"
