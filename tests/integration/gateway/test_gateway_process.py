"""``python -m reelvault_gateway`` as its own process: serves on the configured port, stops
cleanly on SIGTERM with exit code 0, and its log holds no link tokens, keys, session secrets or
prompts. A catalog double answers key lookups and quota reservations (no catalog reads)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from reelvault.embedded import free_port
from tests.support.gateway_fakes import KEYS_AND_QUOTAS, CatalogDouble, serve_catalog_double
from tests.support.service_process import service_process

pytestmark = pytest.mark.integration

SIGNING_KEY = "process-test-signing-key-abcdef0123456789"
SERVICE_ROLE_KEY = "service-role-secret-never-logged"
SESSION_SECRET = "session-secret-never-logged-0123456789"


async def test_process_serves_and_stops_cleanly_on_sigterm(
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
        "REELVAULT_STORAGE_SIGNING_KEY": SIGNING_KEY,
        "REELVAULT_SESSION_SECRET": SESSION_SECRET,
        "REELVAULT_CREATE_VISIBILITY_TIMEOUT_S": "0.2",
        "SUPABASE_SERVICE_ROLE_KEY": SERVICE_ROLE_KEY,
    }
    double = CatalogDouble()
    key = double.add_key()
    prompt = "a very particular prompt 7f3a"
    async with (serve_catalog_double(nats_url, namespace, double, KEYS_AND_QUOTAS),
                service_process("gateway", "reelvault_gateway", env, tmp_path) as gateway):
        await gateway.wait_http(f"{base}/healthz")
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 503  # no catalog reads in this test
            assert ready.json()["error"]["details"]["checks"]["broker"] == "ok"
            anonymous = await client.post("/v1/videos", json={"prompt": prompt})
            assert anonymous.status_code == 401
            created = await client.post("/v1/videos", json={"prompt": prompt},
                                        headers={"Authorization": f"Bearer {key}"})
            assert created.status_code == 202, created.text
            signed_in = await client.post("/v1/session", json={"key": key})
            assert signed_in.status_code == 204, signed_in.text
            denied = await client.get(
                "/files/videos/a/b.mp4", params={"expires": 1, "token": "t0ken-xyz"}
            )
            assert denied.status_code == 403
            page = await client.get("/")
            assert SERVICE_ROLE_KEY not in page.text
        gateway.terminate()
        assert await gateway.exit_code(timeout_s=20) == 0, gateway.log()[-3000:]
    output = gateway.log()
    assert "gateway ready" in output
    assert "/v1/videos 202" in output  # the access log line
    assert "REELVAULT_SESSION_SECRET is not set" not in output
    for secret in (SIGNING_KEY, SERVICE_ROLE_KEY, SESSION_SECRET, "t0ken-xyz", prompt, key,
                   key.split("_", 2)[2]):
        assert secret not in output
