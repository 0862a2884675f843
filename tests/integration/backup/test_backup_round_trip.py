"""``reelvault backup create`` then ``restore`` into a fresh database gives back every row of
every table (and the revision, policies, row security and grants); a database that holds
anything is refused; ``--keep`` keeps the newest backups; the last success is in NATS KV. A
backup holds the webhook endpoints' signing secrets, so only its owner may read it."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest
from backup_harness import ORGS, Catalog, Cli, Cluster, backup_folders, read_state, table_rows
from reelvault_catalog.migrate import head_revision
from reelvault_catalog.tenant import tenant_transaction
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

pytestmark = pytest.mark.integration

CATALOG_TABLES = ("organizations", "api_keys", "org_quotas", "usage_reservations",
                  "quota_notices", "videos", "webhook_endpoints", "webhook_deliveries")


async def test_a_restore_brings_back_every_row_of_every_table(
    catalog: Catalog, cluster: Cluster, beside_system: Path, cli: Cli, nats_url: str,
    namespace: str,
) -> None:
    before = await table_rows(catalog.url)
    for table in CATALOG_TABLES:
        assert len(before[table]) >= len(ORGS), table  # every table has rows of every org
    assert before["(policies)"] and before["(row security)"]
    # The deletion columns hold something: a tombstone and a retention rule per organization.
    assert sum('"status":"deleted"' in row for row in before["videos"]) == len(ORGS)
    assert sum('"delete_after_days":30' in row for row in before["organizations"]) == len(ORGS)

    started = time.time()
    code, out, said = await cli("backup", "create", "--data-dir", str(beside_system))
    assert code == 0 and said == [], said
    [name] = backup_folders(beside_system)
    assert out.startswith(f"backup {name}: schema {head_revision()}")
    folder = beside_system / "backups" / name
    # Restored endpoints must keep signing as their receivers expect: the secrets are in the
    # backup, which is therefore readable by its owner only.
    endpoints = (folder / "tables" / "webhook_endpoints.copy").read_text()
    assert catalog.webhook_secrets and all(s in endpoints for s in catalog.webhook_secrets)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    manifest = json.loads((folder / "backup.json").read_text())
    assert manifest["schema_revision"] == head_revision()
    assert {t["name"]: t["rows"] for t in manifest["tables"]} == {
        table: len(before[table]) for table in CATALOG_TABLES}
    listed = [json.loads(line) for line in (folder / "objects.jsonl").read_text().splitlines()]
    assert sorted((o["bucket"], o["key"]) for o in listed) == sorted(catalog.objects)
    for entry in listed:
        info = await catalog.storage.stat(entry["bucket"], entry["key"])
        assert info is not None and (info.size, info.sha256) == (entry["size"], entry["sha256"])
    success = await read_state(nats_url, namespace, "backup.last_success")
    assert success is not None and started - 1 <= int(success) <= time.time() + 1

    target = await cluster.database()
    code, out, said = await cli("backup", "restore", "--database-url", target,
                                "--data-dir", str(beside_system))
    assert code == 0 and said == [], said
    assert out.startswith(f"restored backup {name} into ") and "***" in out  # no password
    assert await table_rows(target) == before

    # The policies came back with the rows: a tenant sees its own organization's videos.
    engine = create_async_engine(target)
    try:
        async with tenant_transaction(engine, "acme") as conn:
            seen = await conn.execute(text("SELECT DISTINCT org FROM videos"))
            assert [row[0] for row in seen] == ["acme"]
    finally:
        await engine.dispose()

    code, out, said = await cli("backup", "verify", "--data-dir", str(beside_system))
    assert code == 0 and said == [], said
    assert f"{len(catalog.objects)} objects checked" in out
    assert f"{len(catalog.objects)} also by sha256" in out


async def test_a_database_that_holds_anything_is_refused_and_left_alone(
    catalog: Catalog, beside_system: Path, cli: Cli,
) -> None:
    code, _, said = await cli("backup", "create", "--data-dir", str(beside_system))
    assert code == 0, said
    before = await table_rows(catalog.url)
    code, out, said = await cli("backup", "restore", "--database-url", catalog.url,
                                "--data-dir", str(beside_system))
    assert code == 1 and out == ""
    assert len(said) == 1 and "will not restore into" in said[0] and "not empty" in said[0]
    assert await table_rows(catalog.url) == before


async def test_keep_2_after_3_backups_leaves_the_newest_2(
    catalog: Catalog, beside_system: Path, cli: Cli,
) -> None:
    (beside_system / "backups" / "my-notes").mkdir(parents=True)  # not a backup: not ours
    made = []
    for _ in range(3):
        code, out, said = await cli("backup", "create", "--keep", "2",
                                    "--data-dir", str(beside_system))
        assert code == 0, said
        made.append(out.split()[1].rstrip(":"))
    assert "deleted 1 older backup(s): " + made[0] in out
    assert backup_folders(beside_system) == sorted([*made[1:], "my-notes"])
    code, out, _ = await cli("backup", "list", "--data-dir", str(beside_system))
    listed = [line.split()[0] for line in out.splitlines()[1:-1]]
    assert code == 0 and listed == made[1:]


async def test_a_user_that_row_security_would_filter_gets_an_error_not_a_partial_backup(
    catalog: Catalog, cluster: Cluster, beside_system: Path, cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", await cluster.reader(catalog.url))
    code, out, said = await cli("backup", "create", "--data-dir", str(beside_system))
    assert code == 1 and out == "" and len(said) == 1
    assert said[0].startswith("reelvault: backup failed: database: ")
    assert "row-level security" in said[0]
    assert backup_folders(beside_system) == []
