"""Run the whole system with ``reelvault up`` as a subprocess, as a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from reelvault.embedded import free_port


@dataclass
class RunningSystem:
    process: subprocess.Popen[str]
    urls: dict[str, str]
    data_dir: Path
    output: list[str] = field(default_factory=list)

    @property
    def gateway(self) -> str:
        return self.urls["gateway"]

    @property
    def simulator(self) -> str:
        return self.urls["sora-sim"]

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


@contextmanager
def reelvault_up(
    data_dir: Path, env: dict[str, str], *extra_args: str, ready_timeout_s: float = 120.0
) -> Iterator[RunningSystem]:
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
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
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
