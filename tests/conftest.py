"""Session-wide infrastructure: a real NATS JetStream and a real PostgreSQL (see
``tests/support/servers.py`` for where they come from), and per-test isolation: each test
gets its own namespace (stream, subjects, consumers, KV buckets) and its own database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from reelvault_common.runtime.settings import ServiceSettings
from sqlalchemy.engine import make_url

from tests.support import servers

# Fixtures shared by several folders.
pytest_plugins = ["tests.support.metrics_scrape"]

@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("infra")


@pytest.fixture(scope="session")
def nats_url(session_dir: Path) -> Iterator[str]:
    with servers.nats_url(session_dir) as url:
        yield url


@pytest.fixture(scope="session")
def postgres_server_url(session_dir: Path) -> Iterator[str]:
    with servers.database_url(session_dir) as url:
        yield url


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def service_settings(nats_url: str, namespace: str) -> ServiceSettings:
    return ServiceSettings(NATS_URL=nats_url, namespace=namespace, stream_duplicate_window_s=60)


@pytest.fixture
async def database_url(postgres_server_url: str) -> AsyncIterator[str]:
    """A fresh, empty database for this test, dropped afterwards."""
    import asyncpg

    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = make_url(postgres_server_url).set(drivername="postgresql")
    dsn = admin.render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    yield make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
