"""The rules of ``reelvault backup`` without a database, storage or NATS: names, retention,
restore order, the empty-database check, object checks, ``backup.json`` and its files, and
the command line's refusals."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from reelvault.backup.environment import backup_environment
from reelvault.backup.folder import BackupDirectory, describe_files, found_files, write_manifest
from reelvault.backup.manifest import (
    MANIFEST_FILE,
    FileRecord,
    Manifest,
    ManifestError,
    ObjectsSummary,
    TableRecord,
    file_problems,
)
from reelvault.backup.rules import (
    FolderEntry,
    Observed,
    backup_name,
    choose_deletions,
    dependency_order,
    failure_value,
    name_time,
    newest_complete,
    non_empty_reason,
    object_problem,
    sha256_checked,
    success_value,
)
from reelvault.cli import main
from reelvault.local_system import record_system, without_password
from tests.support.command_line import refusal

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SHA_A, SHA_B = "a" * 64, "b" * 64


def test_backups_are_named_by_their_utc_start_and_never_share_a_name() -> None:
    elsewhere = T0.astimezone(timezone(timedelta(hours=-5)))
    assert backup_name(elsewhere, set()) == "20260102T030405Z"
    assert backup_name(T0, {"20260102T030405Z"}) == "20260102T030405Z-2"
    assert backup_name(T0, {"20260102T030405Z", "20260102T030405Z-2"}) == "20260102T030405Z-3"
    assert name_time("20260102T030405Z-2") == T0
    assert name_time("notes") is None and name_time("20260102T030405") is None


def entries(*names: str, unfinished: tuple[str, ...] = ()) -> list[FolderEntry]:
    return [FolderEntry(n, True) for n in names] + [FolderEntry(n, False) for n in unfinished]


def test_keep_deletes_the_oldest_complete_backups_only() -> None:
    now = T0 + timedelta(days=3)
    names = ("20260101T000000Z", "20260102T000000Z", "20260102T000000Z-2", "20260103T000000Z")
    assert choose_deletions(entries(*names), 2, now) == list(names[:2])
    assert choose_deletions(entries(*names), 4, now) == []
    assert choose_deletions(entries(*names), 10, now) == []
    # Same-second backups are ordered by their suffix; -10 after -9.
    same = ("20260102T000000Z", "20260102T000000Z-9", "20260102T000000Z-10")
    assert choose_deletions(entries(*same), 1, now) == list(same[:2])
    with pytest.raises(ValueError, match="at least one"):
        choose_deletions(entries(*names), 0, now)


def test_keep_leaves_young_unfinished_folders_and_foreign_names_alone() -> None:
    now = datetime(2026, 1, 5, 12, tzinfo=UTC)
    found = entries("20260105T110000Z",
                    unfinished=("20260101T000000Z", "20260105T100000Z", "20260105T113000Z"))
    foreign = [FolderEntry("my-notes", False), FolderEntry("manual-copy", True)]
    chosen = choose_deletions([*found, *foreign], 1, now)
    # A crash's leftover days old goes; a younger unfinished folder may still be written; one
    # newer than the newest backup certainly is; names that are not backups' are not ours.
    assert chosen == ["20260101T000000Z"]


def test_newest_complete_skips_unfinished_backups() -> None:
    assert newest_complete(entries("20260101T000000Z", unfinished=("20260102T000000Z",))) \
        == "20260101T000000Z"
    assert newest_complete(entries(unfinished=("20260102T000000Z",))) is None


def test_tables_are_restored_after_the_tables_they_refer_to() -> None:
    tables = ["videos", "api_keys", "organizations", "org_quotas", "quota_notices",
              "usage_reservations"]
    references = [("api_keys", "organizations"), ("org_quotas", "organizations"),
                  ("videos", "organizations"), ("quota_notices", "organizations"),
                  ("usage_reservations", "organizations"), ("videos", "videos"),
                  ("audit", "organizations")]  # a table not restored is ignored
    order = dependency_order(tables, references)
    assert order[0] == "organizations" and sorted(order) == sorted(tables)
    assert dependency_order(["b", "a", "c"], [("a", "c")]) == ["b", "c", "a"]
    with pytest.raises(ValueError, match="cycle"):
        dependency_order(["a", "b"], [("a", "b"), ("b", "a")])


def test_only_a_database_whose_schema_holds_nothing_receives_a_restore() -> None:
    assert non_empty_reason("public", []) is None
    reason = non_empty_reason("public", ["alembic_version", "api_keys", "organizations",
                                         "org_quotas", "quota_notices", "videos"])
    assert reason is not None and "not empty" in reason and "6 relation(s)" in reason
    assert "alembic_version" in reason and "..." in reason


def test_an_object_matches_by_presence_size_and_a_known_sha256() -> None:
    assert object_problem("videos", "k", 10, SHA_A, Observed(10, SHA_A)) is None
    assert object_problem("videos", "k", 10, SHA_A, None) == "videos/k: missing"
    problem = object_problem("videos", "k", 10, SHA_A, Observed(11, SHA_A))
    assert problem is not None and "11 bytes" in problem
    problem = object_problem("videos", "k", 10, SHA_A, Observed(10, SHA_B))
    assert problem is not None and SHA_B in problem
    # Storage keeps no sha256: only presence and size can be checked, and that is counted.
    assert object_problem("videos", "k", 10, SHA_A, Observed(10, None)) is None
    assert not sha256_checked(SHA_A, Observed(10, None))
    assert sha256_checked(SHA_A, Observed(10, SHA_A))


def test_the_last_outcome_is_a_unix_time_as_text() -> None:
    assert success_value(T0) == str(int(T0.timestamp()))
    value = failure_value(T0, "database:\n  connection refused " + "x" * 500)
    stamp, reason = value.split(" ", 1)
    assert int(stamp) == int(T0.timestamp())
    assert reason.startswith("database: connection refused") and len(reason) == 200
    assert "\n" not in value


def manifest_dict(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "format": 1, "started_at": T0.isoformat(), "finished_at": T0.isoformat(),
        "schema_revision": "0002_organizations",
        "tables": [{"name": "organizations", "columns": ["id", "slug"], "rows": 2,
                    "file": "tables/organizations.copy"}],
        "objects": {"count": 0, "bytes": 0},
        "files": [{"path": "tables/organizations.copy", "size": 3, "sha256": SHA_A},
                  {"path": "objects.jsonl", "size": 0, "sha256": SHA_B}],
    }
    base.update(changes)
    return base


def test_backup_json_round_trips() -> None:
    manifest = Manifest.from_json(json.dumps(manifest_dict()), "x")
    assert manifest.rows == 2 and manifest.tables[0].columns == ("id", "slug")
    assert Manifest.from_json(manifest.to_json(), "x") == manifest


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"tables": [{"name": "x; DROP TABLE videos", "columns": ["id"], "rows": 1,
                      "file": "tables/x.copy"}]}, "identifier"),
        ({"tables": [{"name": "t", "columns": ['id"--'], "rows": 1, "file": "tables/t.copy"}]},
         "identifier"),
        ({"tables": [{"name": "t", "columns": ["id"], "rows": 1, "file": "../../etc/passwd"}]},
         "inside the backup"),
        ({"files": [{"path": "/etc/passwd", "size": 1, "sha256": SHA_A}]}, "inside the backup"),
        ({"files": [{"path": "objects.jsonl", "size": 0, "sha256": SHA_B}]}, "no sha256"),
        ({"format": 2}, "format"),
        ({"schema_revision": None}, "schema_revision"),
        ({"files": [{"path": "a", "size": 1, "sha256": "nope"}]}, "files"),
    ],
)
def test_a_damaged_or_foreign_backup_json_is_refused(changes: dict[str, object],
                                                     says: str) -> None:
    with pytest.raises(ManifestError, match=says):
        Manifest.from_json(json.dumps(manifest_dict(**changes)), "x")
    with pytest.raises(ManifestError, match="damaged"):
        Manifest.from_json("{not json", "x")


def test_the_backups_own_files_are_checked_by_size_and_sha256(tmp_path: Path) -> None:
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "a.copy").write_bytes(b"1\tx\n")
    (tmp_path / "objects.jsonl").write_bytes(b"")
    records = tuple(describe_files(tmp_path, ["tables/a.copy", "objects.jsonl"]))
    assert file_problems(records, found_files(tmp_path, records)) == []
    (tmp_path / "tables" / "a.copy").write_bytes(b"1\ty\n")  # same size, other bytes
    (tmp_path / "objects.jsonl").unlink()
    now = hashlib.sha256(b"1\ty\n").hexdigest()
    assert file_problems(records, found_files(tmp_path, records)) == [
        f"tables/a.copy: sha256 {now}, backup.json says {records[0].sha256}",
        "objects.jsonl: missing from the backup",
    ]
    (tmp_path / "tables" / "a.copy").write_bytes(b"1\tyy\n")
    assert "5 bytes, backup.json says 4" in file_problems(
        records, found_files(tmp_path, records))[0]


def test_a_folder_is_a_backup_only_once_backup_json_is_in_place(tmp_path: Path) -> None:
    directory = BackupDirectory(tmp_path / "backups")
    assert directory.entries() == []
    folder = directory.start(T0)
    (folder / "objects.jsonl").write_text("")
    assert directory.entries() == [FolderEntry(folder.name, False)]
    with pytest.raises(ManifestError, match="unfinished"):
        directory.read_manifest(folder.name)
    manifest = Manifest(
        started_at=T0, finished_at=T0, schema_revision="r", tables=(),
        objects=ObjectsSummary(count=0, bytes=0),
        files=tuple(describe_files(folder, ["objects.jsonl"])))
    write_manifest(folder, manifest)
    assert directory.entries() == [FolderEntry(folder.name, True)]
    assert directory.read_manifest(folder.name) == manifest
    assert not list(folder.glob(".*"))  # no temp file left
    second = directory.start(T0)
    assert second.name == f"{folder.name}-2"
    assert directory.delete([folder.name]) == [folder.name] and not folder.exists()


def test_a_table_record_needs_columns() -> None:
    with pytest.raises(ValueError, match="at least one column"):
        TableRecord(name="t", columns=(), rows=0, file="tables/t.copy")
    FileRecord(path="tables/t.copy", size=0, sha256=SHA_A)


def test_the_command_finds_the_system_started_beside_it(tmp_path: Path) -> None:
    record_system(tmp_path, {"DATABASE_URL": "postgresql://app:pw@/db?host=/run/pg",
                             "NATS_URL": "nats://127.0.0.1:14222", "REELVAULT_NAMESPACE": "rv",
                             "REELVAULT_STORAGE_DIR": "/data/storage"})
    env = backup_environment(tmp_path, None, {})
    assert env.backup_dir == tmp_path / "backups"
    assert env.database_url == "postgresql://app@/db?host=/run/pg"  # the password stays out
    assert env.storage.storage_dir == Path("/data/storage")
    assert env.service.namespace == "rv"
    assert env.storage.storage_signing_key is not None  # no warning about per-process links
    given = backup_environment(tmp_path, None, {
        "DATABASE_URL": "postgresql://app:pw@db/x", "REELVAULT_BACKUP_DIR": "/b",
        "REELVAULT_STORAGE_BACKEND": "supabase", "SUPABASE_URL": "http://127.0.0.1:1",
        "REELVAULT_BUCKET_VIDEOS": "clips"})
    assert given.database_url == "postgresql://app:pw@db/x" and given.backup_dir == Path("/b")
    assert given.storage.storage_backend == "supabase" and given.storage.bucket_videos == "clips"
    assert given.storage.supabase_url == "http://127.0.0.1:1"
    assert backup_environment(tmp_path, tmp_path / "here", {}).backup_dir == tmp_path / "here"


@pytest.mark.parametrize(
    ("url", "recorded"),
    [
        ("postgresql://app:s3cret@db:5432/x?sslmode=require",
         "postgresql://app@db:5432/x?sslmode=require"),
        ("postgresql+asyncpg://postgres@/postgres?host=/srv/rv/pg",
         "postgresql+asyncpg://postgres@/postgres?host=/srv/rv/pg"),
        ("postgres://:s3cret@db/x", "postgres://db/x"),
        ("postgresql://app:s3cret@[::1/x", None),  # unparseable: not recorded at all
    ],
)
def test_a_recorded_database_url_keeps_everything_but_the_password(
    url: str, recorded: str | None
) -> None:
    assert without_password(url) == recorded


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["backup"], "required"),
        (["backup", "create", "--keep", "0"], "at least 1"),
        (["backup", "create", "--keep", "two"], "whole number"),
        (["backup", "restore"], "--database-url"),
        (["backup", "restore", "--database-url", "mysql://db/x"], "PostgreSQL URL"),
        (["backup", "prune"], "invalid choice"),
        (["backup", "verify", "../elsewhere"], "no backup's name"),
        (["backup", "restore", "latest", "--database-url", "postgresql://h/x"],
         "no backup's name"),
    ],
)
def test_bad_backup_command_lines_exit_2_with_one_line(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert says in refusal(argv, capsys, tmp_path)


def test_verify_and_restore_without_a_finished_backup_fail_with_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for argv in (["backup", "verify"], ["backup", "restore", "--database-url",
                                        "postgresql://127.0.0.1:1/x"]):
        with pytest.raises(SystemExit) as exit_:
            main([*argv, "--data-dir", str(tmp_path)])
        assert exit_.value.code == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"reelvault: no finished backup in {tmp_path / 'backups'}"]
    assert not (tmp_path / "backups" / MANIFEST_FILE).exists()
