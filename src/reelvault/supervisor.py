"""Runs each service as its own process: start, wait until ready, restart if it dies, stop all
cleanly (SIGTERM, then SIGKILL after a grace period)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

log = logging.getLogger("reelvault.supervisor")


@dataclass
class ProcessSpec:
    name: str
    module: str
    env: dict[str, str]
    ready_url: str | None = None  # polled until it answers 200
    public_url: str | None = None  # printed for people


@dataclass
class ManagedProcess:
    spec: ProcessSpec
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = field(default=0.0)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.spec.module],
                env={**os.environ, **self.spec.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in the terminal reaches only the supervisor
            )
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.alive():
            assert self.process is not None
            self.process.send_signal(sig)

    def wait(self, timeout_s: float) -> int | None:
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None


class Supervisor:
    def __init__(self, log_dir: Path, grace_s: float = 15.0) -> None:
        self.log_dir = log_dir
        self.grace_s = grace_s
        self.processes: list[ManagedProcess] = []

    def add(self, spec: ProcessSpec) -> ManagedProcess:
        managed = ManagedProcess(spec, self.log_dir / f"{spec.name}.log")
        self.processes.append(managed)
        return managed

    def start_all(self) -> None:
        for managed in self.processes:
            managed.start()

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        for managed in self.processes:
            url = managed.spec.ready_url
            if url is None:
                continue
            while True:
                if not managed.alive():
                    raise RuntimeError(
                        f"{managed.spec.name} exited during start-up; see {managed.log_path}"
                    )
                try:
                    if httpx.get(url, timeout=1.0).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{managed.spec.name} not ready after {timeout_s}s: {url}")
                time.sleep(0.1)

    def restart_dead(self) -> list[ManagedProcess]:
        """Restart children that exited on their own; returns the ones restarted."""
        restarted = []
        for managed in self.processes:
            if managed.process is not None and not managed.alive():
                code = managed.process.returncode
                log.warning("%s exited with %s; restarting", managed.spec.name, code)
                managed.restarts += 1
                managed.start()
                restarted.append(managed)
        return restarted

    def stop_all(self) -> dict[str, int | None]:
        """SIGTERM everyone, wait up to the grace period, SIGKILL the rest; exit codes by name."""
        for managed in self.processes:
            managed.signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        codes: dict[str, int | None] = {}
        for managed in self.processes:
            code = managed.wait(max(0.0, deadline - time.monotonic()))
            if code is None and managed.alive():
                log.warning(
                    "%s did not stop within %.0fs; killing it", managed.spec.name, self.grace_s
                )
                managed.signal(signal.SIGKILL)
                code = managed.wait(5.0)
            codes[managed.spec.name] = code
        return codes
