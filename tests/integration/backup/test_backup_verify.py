"""``reelvault backup verify`` names every object that is missing or changed (by size and
storage's sha256; ``--deep`` also bytes changed in place behind unchanged metadata) and every
damaged file of the backup itself; a failed backup exits 1 with one line, leaves no folder and
records ``backup.last_failure``; without NATS a backup still succeeds, with a warning."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
from backup_harness import Catalog, Cli, backup_folders, read_state
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.integration


def _overwrite(path: Path, data: bytes) -> None:
    path.chmod(0o644)
    with path.open("r+b") as handle:
        handle.write(data)
        handle.truncate()


async def test_verify_names_each_missing_or_changed_object(
    catalog: Catalog, beside_system: Path, cli: Cli,
) -> None:
    code, _, said = await cli("backup", "create", "--data-dir", str(beside_system))
    assert code == 0, said
    code, out, said = await cli("backup", "verify", "--data-dir", str(beside_system))
    assert code == 0 and said == [] and f"{len(catalog.objects)} objects checked" in out

    videos = sorted(key for bucket, key in catalog.objects if bucket == "videos")
    thumbnails = sorted(key for bucket, key in catalog.objects if bucket == "thumbnails")
    catalog.storage.local_path("videos", videos[0]).unlink()
    grown = catalog.storage.local_path("videos", videos[1])
    _overwrite(grown, grown.read_bytes() + b"!")
    # Same length, other bytes, metadata untouched: only reading the bytes can tell.
    in_place = catalog.storage.local_path("thumbnails", thumbnails[0])
    _overwrite(in_place, in_place.read_bytes().upper())

    code, out, said = await cli("backup", "verify", "--data-dir", str(beside_system))
    assert code == 1 and len(said) == 1 and "2 object(s) missing or changed" in said[0]
    assert f"object videos/{videos[0]}: missing" in out
    assert f"object videos/{videos[1]}: " in out and "bytes, the backup recorded" in out
    assert thumbnails[0] not in out

    code, out, said = await cli("backup", "verify", "--deep", "--data-dir", str(beside_system))
    assert code == 1 and len(said) == 1 and "3 object(s) missing or changed" in said[0]
    assert f"object thumbnails/{thumbnails[0]}: sha256 " in out
    assert "from their bytes" in out


async def test_verify_and_restore_refuse_a_backup_whose_own_files_changed(
    catalog: Catalog, beside_system: Path, cli: Cli,
) -> None:
    code, _, said = await cli("backup", "create", "--data-dir", str(beside_system))
    assert code == 0, said
    [name] = backup_folders(beside_system)
    table = beside_system / "backups" / name / "tables" / "videos.copy"
    table.write_bytes(table.read_bytes().replace(b"acme", b"acne", 1))
    code, out, said = await cli("backup", "verify", "--data-dir", str(beside_system))
    assert code == 1 and len(said) == 1 and "do not match backup.json" in said[0]
    assert "damaged: tables/videos.copy: sha256 " in out
    code, out, said = await cli("backup", "restore", name, "--database-url", catalog.url,
                                "--data-dir", str(beside_system))
    assert code == 1 and len(said) == 1 and "is damaged" in said[0] and "nothing restored" \
        in said[0]


async def test_a_failed_backup_says_why_in_one_line_and_in_nats(
    catalog: Catalog, beside_system: Path, cli: Cli, nats_url: str, namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wrong = make_url(catalog.url).set(database="no_such_database").render_as_string(
        hide_password=False)
    monkeypatch.setenv("DATABASE_URL", wrong)  # the environment wins over system.json
    started = time.time()
    code, out, said = await cli("backup", "create", "--data-dir", str(beside_system))
    assert code == 1 and out == ""
    assert said == ['reelvault: backup failed: database: database "no_such_database" does '
                    'not exist']
    assert backup_folders(beside_system) == []  # nothing half-written left behind
    failure = await read_state(nats_url, namespace, "backup.last_failure")
    assert failure is not None
    stamp, reason = failure.split(" ", 1)
    assert started - 1 <= int(stamp) <= time.time() + 1
    assert reason == 'database: database "no_such_database" does not exist'
    assert await read_state(nats_url, namespace, "backup.last_success") is None


async def test_without_nats_the_backup_succeeds_and_warns(
    catalog: Catalog, beside_system: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("NATS_URL", f"nats://127.0.0.1:{port}")
    code, out, said = await cli("backup", "create", "--data-dir", str(beside_system))
    assert code == 0 and out.startswith("backup ")
    assert len(said) == 1 and said[0].startswith("reelvault: warning: the backup is complete")
    assert "backup.last_success was not recorded" in said[0]
    [name] = backup_folders(beside_system)
    manifest = json.loads((beside_system / "backups" / name / "backup.json").read_text())
    assert manifest["objects"]["count"] == len(catalog.objects)
    assert os.access(beside_system / "backups" / name / "backup.json", os.R_OK)
