"""Fixtures of the backup tests (see ``backup_harness``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from backup_harness import Catalog, Cli, Cluster, make_catalog
from sqlalchemy.engine import make_url

from reelvault.cli import main
from reelvault.local_system import SYSTEM_VARIABLES, record_system


@pytest.fixture
async def cluster(postgres_server_url: str) -> AsyncIterator[Cluster]:
    cluster = Cluster(postgres_server_url)
    await cluster.create_role()
    yield cluster
    await cluster.drop()


@pytest.fixture
async def catalog(cluster: Cluster, tmp_path: Path) -> Catalog:
    """Rows in every table of the catalog, for three organizations, and their objects."""
    return await make_catalog(cluster, tmp_path / "storage")


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run ``reelvault ...`` (in a thread: it runs its own event loop); its exit code, stdout
    and the ``reelvault: ...`` lines of stderr."""

    async def run(*argv: str) -> tuple[int, str, list[str]]:
        def call() -> int:
            with pytest.raises(SystemExit) as exit_info:
                main(list(argv))
            return int(exit_info.value.code or 0)

        code = await asyncio.to_thread(call)
        captured = capsys.readouterr()
        said = [line for line in captured.err.splitlines() if line.startswith("reelvault: ")]
        return code, captured.out, said

    return run


@pytest.fixture
def beside_system(tmp_path: Path, catalog: Catalog, nats_url: str, namespace: str,
                  monkeypatch: pytest.MonkeyPatch) -> Path:
    """The data folder of a system ``reelvault up`` runs (its ``system.json``), and an
    environment that says nothing else (the database password only in PGPASSWORD, as
    ``system.json`` never holds it)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    record_system(data_dir, {"DATABASE_URL": catalog.url, "NATS_URL": nats_url,
                             "REELVAULT_NAMESPACE": namespace,
                             "REELVAULT_STORAGE_DIR": str(catalog.storage_dir)})
    for name in (*SYSTEM_VARIABLES, "REELVAULT_BACKUP_DIR", "REELVAULT_STORAGE_SIGNING_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PGPASSWORD", make_url(catalog.url).password or "")
    return data_dir


