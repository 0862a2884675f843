"""Run the whole system with ``reelvault up`` as a subprocess, as a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from reelvault.embedded import free_port


@dataclass
class RunningSystem:
    process: subprocess.Popen[str]
    urls: dict[str, str]
    data_dir: Path
    output: list[str] = field(default_factory=list)
    # The default organization's key that ``reelvault up`` prints.
    api_key: str = ""

    @property
    def gateway(self) -> str:
        return self.urls["gateway"]

    @property
    def simulator(self) -> str:
        return self.urls["provider-sim"]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def client(self, key: str | None = None, **options: Any) -> httpx.Client:
        """An HTTP client of the gateway that authenticates with ``key`` (default: the
        default organization's)."""
        headers = {"Authorization": f"Bearer {key or self.api_key}"}
        options.setdefault("timeout", 30)
        return httpx.Client(base_url=self.gateway, headers=headers, **options)

    def logs(self) -> str:
        parts = []
        for log in sorted((self.data_dir / "logs").glob("*.log")):
            parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    def stop(self, timeout_s: float = 40.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            out, _ = self.process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate()
        self.output.extend(out.splitlines())
        return self.process.returncode


def system_env(nats_url: str, database_url: str, namespace: str,
                    **overrides: str) -> dict[str, str]:
    """A whole system on the test servers, in its own namespace, with quick simulated jobs
    (``overrides``: more variables, or other values)."""
    return {
        "NATS_URL": nats_url,
        "DATABASE_URL": database_url,
        "REELVAULT_NAMESPACE": namespace,
        "PROVIDER_SIM_GENERATION_S": "1.5",
        "REELVAULT_POLL_INTERVAL_S": "0.5",
        **overrides,
    }


@contextmanager
def reelvault_up(
    data_dir: Path,
    env: dict[str, str],
    *extra_args: str,
    ready_timeout_s: float = 120.0,
    unset: Sequence[str] = (),
    cwd: Path | None = None,
) -> Iterator[RunningSystem]:
    """``reelvault up`` with this process's environment plus ``env``, less the variables named
    in ``unset`` (e.g. ``NATS_URL``, for the embedded servers whatever the shell says), run in
    ``cwd`` (default: this process's)."""
    argv = [
        str(Path(sys.executable).parent / "reelvault"),
        "up",
        "--data-dir",
        str(data_dir),
        "--gateway-port",
        str(free_port()),
        "--sim-port",
        str(free_port()),
        "--nats-port",
        str(free_port()),
        *extra_args,
    ]
    process = subprocess.Popen(
        argv,
        env={**{k: v for k, v in os.environ.items() if k not in unset}, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        cwd=cwd,
    )
    system = RunningSystem(process, {}, data_dir)
    deadline = time.monotonic() + ready_timeout_s
    assert process.stdout is not None
    try:
        for line in process.stdout:
            system.output.append(line.rstrip())
            name, _, url = line.strip().partition(" ")
            if url.strip().startswith(("http://", "nats://")):
                system.urls[name] = url.strip()
            if name == "api-key":
                system.api_key = url.strip()
            if line.startswith("logs in"):
                break
            if time.monotonic() > deadline:
                raise TimeoutError("reelvault up did not get ready in time")
        else:
            raise RuntimeError(
                "reelvault up exited early:\n" + "\n".join(system.output) + system.logs()
            )
        yield system
    finally:
        system.stop()


# --- driving a running system over HTTP (the e2e tests) ------------------------------------------
def stop_cleanly(system: RunningSystem) -> dict[str, str]:
    """Stop ``reelvault up`` and check every service stopped on SIGTERM by itself with exit code
    0; each process's exit code by name."""
    code = system.stop()
    assert code == 0, "\n".join(system.output)
    stopped = [line for line in system.output if line.startswith("stopped:")]
    assert stopped, system.output
    codes = dict(part.split("=", 1) for part in stopped[0].removeprefix("stopped: ").split(", "))
    assert set(codes.values()) == {"0"}, stopped
    return codes


def wait_for_status(
    client: httpx.Client, video_id: str, wanted: set[str], timeout_s: float = 90
) -> dict[str, Any]:
    """Poll ``GET /v1/videos/{id}`` until its status is one of ``wanted``; the video then."""
    deadline = time.monotonic() + timeout_s
    seen = None
    while time.monotonic() < deadline:
        response = client.get(f"/v1/videos/{video_id}")
        if response.status_code == 200:
            seen = response.json()
            if seen["status"] in wanted:
                return dict(seen)
        time.sleep(0.25)
    raise AssertionError(f"video {video_id} not in {wanted} after {timeout_s}s; last seen {seen}")


def wait_for_seed_check(
    client: httpx.Client, video_id: str, timeout_s: float = 90
) -> dict[str, Any]:
    """Poll the seed app's ``POST /api/check-video`` until the video is completed or failed."""
    deadline = time.monotonic() + timeout_s
    while True:
        check = client.post("/api/check-video", json={"id": video_id})
        assert check.status_code == 200, check.text
        if check.json()["status"] in ("completed", "failed"):
            return dict(check.json())
        assert time.monotonic() < deadline, check.json()
        time.sleep(0.25)


def served_by_simulator(
    system: RunningSystem, job_id: str, variant: str = "video"
) -> tuple[str, int]:
    """The sha256 and size of what the simulator serves for a job (``video``/``thumbnail``)."""
    response = httpx.get(
        f"{system.simulator.removesuffix('/v1')}/_sim/jobs/{job_id}/sha256",
        params={"variant": variant},
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["sha256"]), int(response.json()["size"])
