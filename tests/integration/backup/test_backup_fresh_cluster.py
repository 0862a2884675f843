"""A restore into a brand-new PostgreSQL cluster: one where the cluster-wide
``reelvault_tenant`` role does not exist yet (the migrations the restore runs create it), and
of another major version than the one the backup was taken from (COPY text reads back the
same)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from backup_harness import TENANT_ROLE, Catalog, Cli, dsn, table_rows

from reelvault.embedded import EmbeddedPostgres

pytestmark = pytest.mark.integration


@pytest.fixture
def fresh_cluster() -> Iterator[str]:
    """The URL of the (empty) ``postgres`` database of a cluster started for this test."""
    pytest.importorskip("pgserver", reason="the pgserver wheel (extra `embedded`) starts it")
    # pgserver runs PostgreSQL as its own system user when we are root: a short folder it can
    # enter (see tests/support/servers.py).
    root = Path(tempfile.mkdtemp(prefix="rv-pg-", dir="/tmp"))
    root.chmod(0o755)
    server = EmbeddedPostgres(root / "data").start()
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


async def test_a_restore_into_a_new_cluster_creates_the_tenant_role(
    catalog: Catalog, beside_system: Path, cli: Cli, fresh_cluster: str,
) -> None:
    conn = await asyncpg.connect(dsn(fresh_cluster))
    try:
        assert await conn.fetchval("SELECT count(*) FROM pg_roles WHERE rolname = $1",
                                   TENANT_ROLE) == 0
    finally:
        await conn.close()
    code, _, said = await cli("backup", "create", "--data-dir", str(beside_system))
    assert code == 0, said
    code, out, said = await cli("backup", "restore", "--database-url", fresh_cluster,
                                "--data-dir", str(beside_system))
    assert code == 0 and said == [] and out.startswith("restored backup "), said
    assert await table_rows(fresh_cluster) == await table_rows(catalog.url)
