"""Infrastructure a chaos run owns and breaks on purpose: NATS (one node, or a three-node
cluster on loopback ports) that can be killed and started again on the same port and data
dir, and an embedded PostgreSQL that can crash (``pg_ctl stop -m immediate``: no checkpoint,
crash recovery on the next start) and come back on the same data dir."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.js.errors import ServiceUnavailableError

from reelvault.embedded import EmbeddedPostgres, NatsServer, free_port


@dataclass
class NatsNodes:
    """One JetStream server, or a cluster of ``size`` servers routed to each other."""

    root: Path
    size: int = 1
    nodes: list[NatsServer] = field(default_factory=list)

    def start(self) -> NatsNodes:
        if self.size == 1:
            self.nodes = [NatsServer(self.root / "n1", port=free_port(), name="chaos-n1")]
        else:
            cluster_ports = [free_port() for _ in range(self.size)]
            self.nodes = [
                NatsServer(
                    self.root / f"n{i + 1}",
                    port=free_port(),
                    name=f"chaos-n{i + 1}",
                    cluster_port=cluster_ports[i],
                    routes=[p for j, p in enumerate(cluster_ports) if j != i],
                )
                for i in range(self.size)
            ]
        for node in self.nodes:
            node.start()
        return self

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def kill(self, index: int) -> None:
        """SIGKILL one node (its port and data dir are kept for ``revive``)."""
        self.nodes[index].kill()

    def revive(self, index: int) -> None:
        self.nodes[index].start()

    def alive(self, index: int) -> bool:
        process = self.nodes[index].process
        return process is not None and process.poll() is None

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


async def wait_for_jetstream(urls: list[str], timeout_s: float) -> None:
    """Until every node answers JetStream requests (a cluster needs a meta leader first)."""
    deadline = time.monotonic() + timeout_s
    for url in urls:
        while True:
            try:
                nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
                try:
                    await nc.jetstream().account_info()
                    break
                finally:
                    await nc.close()
            except (nats.errors.Error, ServiceUnavailableError, OSError, TimeoutError) as exc:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"JetStream at {url} not ready: {exc!r}") from exc
                await asyncio.sleep(0.3)


@dataclass
class CrashablePostgres:
    """``EmbeddedPostgres`` that can crash and restart on the same data dir (and socket)."""

    data_dir: Path
    _embedded: EmbeddedPostgres | None = None

    def start(self) -> CrashablePostgres:
        self._embedded = EmbeddedPostgres(self.data_dir).start()
        return self

    @property
    def url(self) -> str:
        assert self._embedded is not None
        return str(self._embedded.url)

    @property
    def dsn(self) -> str:
        """A libpq/asyncpg DSN (the harness's own reads)."""
        return f"postgresql://postgres@/postgres?host={self.data_dir.resolve()}"

    def _server(self) -> Any:
        """pgserver's ``PostgresServer`` (untyped)."""
        assert self._embedded is not None and self._embedded._server is not None
        return self._embedded._server

    def crash(self) -> None:
        """Every server process killed without a clean shutdown, as in a crash."""
        import pgserver

        server = self._server()
        pg_ctl = pgserver.pg_ctl  # type: ignore[attr-defined]  # generated at import
        pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=server.pgdata, user=server.system_user)

    def restart(self) -> None:
        """Start again on the same data dir (crash recovery runs first)."""
        server = self._server()
        with server._lock:  # pgserver's own rule for (re)starting a server
            server.ensure_postgres_running()

    def stop(self) -> None:
        if self._embedded is not None:
            try:
                self._embedded.stop()
            finally:
                self._embedded = None
