"""Graceful shutdown of ``python -m reelvault_gateway``: SIGTERM stops accepting connections,
lets the request in flight finish (here a create waiting for the catalog to show the video)
within ``REELVAULT_SHUTDOWN_GRACE_S``, then exits 0. The answered request is in the stream.
A catalog double answers key lookups and quota reservations (no catalog reads)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import nats
import pytest
from reelvault_common.contracts.events import parse_event
from reelvault_common.messaging.topology import Topology

from reelvault.embedded import free_port
from tests.support.gateway_fakes import KEYS_AND_QUOTAS, CatalogDouble, serve_catalog_double
from tests.support.service_process import service_process

pytestmark = pytest.mark.integration


async def test_sigterm_finishes_the_request_in_flight_refuses_new_ones_and_exits_0(
    nats_url: str, namespace: str, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "NATS_URL": nats_url,
        "REELVAULT_NAMESPACE": namespace,
        "REELVAULT_STREAM_DUPLICATE_WINDOW_S": "60",
        "REELVAULT_PORT": str(port),
        "REELVAULT_STORAGE_DIR": str(tmp_path / "storage"),
        "REELVAULT_PUBLIC_BASE_URL": base,
        "REELVAULT_STORAGE_SIGNING_KEY": "shutdown-test-signing-key-0123456789",
        # No catalog runs: each create waits this long for it after the stream's ack.
        "REELVAULT_CREATE_VISIBILITY_TIMEOUT_S": "3",
        "REELVAULT_SHUTDOWN_GRACE_S": "8",
    }
    double = CatalogDouble()
    auth = {"Authorization": f"Bearer {double.add_key()}"}
    async with (serve_catalog_double(nats_url, namespace, double, KEYS_AND_QUOTAS),
                service_process("gateway", "reelvault_gateway", env, tmp_path) as gateway):
        await gateway.wait_http(f"{base}/healthz")
        async with httpx.AsyncClient(base_url=base, timeout=20, headers=auth) as client:
            in_flight = asyncio.create_task(
                client.post("/v1/videos", json={"prompt": "a request caught by a shutdown"}))
            await asyncio.sleep(0.8)
            assert not in_flight.done()
            sent = gateway.terminate()
            await asyncio.sleep(0.5)
            with pytest.raises(httpx.ConnectError):  # no new connections once stopping
                async with httpx.AsyncClient(base_url=base, timeout=2) as fresh:
                    await fresh.get("/healthz")
            answer = await in_flight
        assert answer.status_code == 202, answer.text
        code = await gateway.exit_code(timeout_s=12)
        assert code == 0, gateway.log()[-3000:]
        assert time.monotonic() - sent < 8 + 3

    topology = Topology(namespace=namespace)
    nc = await nats.connect(nats_url)
    try:
        raw = await nc.jetstream().get_last_msg(topology.stream,
                                                topology.subject("video.requested", "default"))
        assert str(parse_event(raw.data).video_id) == answer.json()["id"]
    finally:
        await nc.close()
