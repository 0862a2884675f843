"""``python -m reelvault_providersim`` as its own process: refuses to start without a key, serves
/healthz, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from providersim_helpers import API_KEY, AUTH


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sim_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVIDER_SIM_")}
    env.update({"PROVIDER_SIM_DATA_DIR": str(tmp_path / "data"), **extra})
    return env


def test_refuses_to_start_without_key(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "reelvault_providersim"],
        env=sim_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "PROVIDER_SIM_API_KEY" in done.stderr


def test_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = sim_env(
        tmp_path,
        PROVIDER_SIM_API_KEY=API_KEY,
        PROVIDER_SIM_PORT=str(port),
        PROVIDER_SIM_FAST_MODE="true",
        PROVIDER_SIM_LOG_LEVEL="WARNING",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "reelvault_providersim"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).json() == {"status": "ok"}:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "simulator did not become ready"
            time.sleep(0.05)
        created = httpx.post(f"{base}/v1/videos", headers=AUTH, json={"prompt": "p"}, timeout=10)
        assert created.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (tmp_path / "data" / created.json()["id"] / "video.mp4").exists()
