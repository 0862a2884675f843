"""Graceful shutdown of ``python -m reelvault_providersim``: SIGTERM lets the request in
flight (held by a ``slow_response`` rule) finish within ``PROVIDER_SIM_SHUTDOWN_GRACE_S``
and exits 0."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from tests.support.service_process import sim_process

pytestmark = pytest.mark.integration


async def test_sigterm_finishes_the_request_in_flight_and_exits_0(tmp_path: Path) -> None:
    async with sim_process(tmp_path, shutdown_grace_s="8") as sim:
        await sim.admin("POST", "/faults", json={"rules": [
            {"kind": "slow_response", "route": "list", "delay_s": 2.0}]})
        headers = {"Authorization": f"Bearer {sim.api_key}"}
        async with httpx.AsyncClient(base_url=sim.base_url, timeout=20) as client:
            in_flight = asyncio.create_task(client.get("/videos", headers=headers))
            await asyncio.sleep(0.5)
            assert not in_flight.done()  # held by the rule
            sent = sim.service.terminate()
            answer = await in_flight
        assert answer.status_code == 200, answer.text
        assert answer.json()["object"] == "list"
        code = await sim.service.exit_code(timeout_s=12)
        assert code == 0, sim.service.log()[-3000:]
        assert 1.0 < time.monotonic() - sent < 8 + 3
