"""``python -m reelvault_gateway`` as its own process: serves on the configured port, stops
cleanly on SIGTERM with exit code 0, and its log holds no link tokens, keys or prompts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from reelvault.embedded import free_port

pytestmark = pytest.mark.integration

SIGNING_KEY = "process-test-signing-key-abcdef0123456789"
SERVICE_ROLE_KEY = "service-role-secret-never-logged"


def test_process_serves_and_stops_cleanly_on_sigterm(
    nats_url: str, namespace: str, tmp_path: Path
) -> None:
    port = free_port()
    log_path = tmp_path / "gateway.log"
    env = {
        **os.environ,
        "NATS_URL": nats_url,
        "REELVAULT_NAMESPACE": namespace,
        "REELVAULT_STREAM_DUPLICATE_WINDOW_S": "60",
        "REELVAULT_PORT": str(port),
        "REELVAULT_STORAGE_DIR": str(tmp_path / "storage"),
        "REELVAULT_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "REELVAULT_STORAGE_SIGNING_KEY": SIGNING_KEY,
        "REELVAULT_CREATE_VISIBILITY_TIMEOUT_S": "0.2",
        "SUPABASE_SERVICE_ROLE_KEY": SERVICE_ROLE_KEY,
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "reelvault_gateway"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)

        ready = httpx.get(f"{base}/readyz", timeout=5)
        assert ready.status_code == 503  # no catalog in this test
        assert ready.json()["error"]["details"]["checks"]["broker"] == "ok"
        prompt = "a very particular prompt 7f3a"
        created = httpx.post(f"{base}/v1/videos", json={"prompt": prompt}, timeout=10)
        assert created.status_code == 202, created.text
        denied = httpx.get(
            f"{base}/files/videos/a/b.mp4", params={"expires": 1, "token": "t0ken-xyz"}
        )
        assert denied.status_code == 403
        page = httpx.get(f"{base}/", timeout=5)
        assert SERVICE_ROLE_KEY not in page.text

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log_path.read_text()
    assert "gateway ready" in output
    assert "/v1/videos 202" in output  # the access log line
    for secret in (SIGNING_KEY, SERVICE_ROLE_KEY, "t0ken-xyz", prompt):
        assert secret not in output
