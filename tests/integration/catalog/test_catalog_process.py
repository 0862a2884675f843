"""``python -m reelvault_catalog`` as the launcher runs it: configured from the environment,
answers a ping once it says it is ready, stops on SIGTERM with exit code 0, logs no password."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import nats
import pytest
from reelvault_common.contracts.catalog import RpcReply
from reelvault_common.messaging.topology import Topology
from reelvault_common.runtime.settings import ServiceSettings

pytestmark = pytest.mark.integration


async def test_the_module_runs_answers_and_stops_cleanly(
    service_settings: ServiceSettings, database_url: str, tmp_path: Path
) -> None:
    log_path = tmp_path / "catalog.log"
    env = {
        **os.environ,
        "NATS_URL": service_settings.nats_url,
        "DATABASE_URL": database_url,
        "REELVAULT_NAMESPACE": service_settings.namespace,
    }
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "reelvault_catalog", env=env, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 30
        while "catalog ready" not in log_path.read_text():
            assert process.returncode is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            await asyncio.sleep(0.05)

        nc = await nats.connect(service_settings.nats_url)
        try:
            topology = Topology.from_settings(service_settings)
            reply = await nc.request(topology.rpc_ping, b"", timeout=5)
            assert RpcReply.model_validate_json(reply.data).ok
        finally:
            await nc.close()

        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = log_path.read_text()
    assert "catalog stopped" in output
    password = database_url.partition("://")[2].partition("@")[0].partition(":")[2]
    if password:
        assert password not in output
