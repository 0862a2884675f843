"""``reelvault backup create|list|verify|restore``: the command line over the backup modules.

Like the other operator commands, bad input exits 2 with one line and a failure exits 1 with
one line (``reelvault.admin.BadInput`` / ``CommandFailed``); progress and findings go to
stdout, warnings to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reelvault_common.storage import ObjectStorage, StorageError
from reelvault_common.storage.factory import open_storage

from reelvault.admin import BadInput, CommandFailed
from reelvault.backup.environment import BackupEnvironment, EnvironmentProblem, backup_environment
from reelvault.backup.folder import (
    BackupDirectory,
    describe_files,
    found_files,
    write_manifest,
)
from reelvault.backup.manifest import (
    OBJECTS_FILE,
    Manifest,
    ManifestError,
    ObjectsSummary,
    file_problems,
)
from reelvault.backup.rules import (
    choose_deletions,
    failure_value,
    name_time,
    newest_complete,
    success_value,
)
from reelvault.backup.state import LAST_FAILURE_KEY, LAST_SUCCESS_KEY

if TYPE_CHECKING:  # the adapters are imported when a command runs (SQLAlchemy is slow to load)
    from collections.abc import Iterable

    from reelvault.backup.objects import Described, ObjectsChecked


class StepFailed(Exception):
    """One step of a command failed; the message says which and why, in one line."""


def describe_error(exc: BaseException) -> str:
    """One line about ``exc``: the driver's own message for database errors (never the SQL's
    parameters), the storage error's message, else the exception's first line."""
    original = getattr(exc, "orig", None)  # SQLAlchemy's DBAPIError wraps the driver's
    if isinstance(original, BaseException):
        exc = original
    message = exc.message if isinstance(exc, StorageError) else str(exc)
    first = message.strip().splitlines()[0] if message.strip() else ""
    return first or type(exc).__name__


def _warn(message: str) -> None:
    print(f"reelvault: warning: {message}", file=sys.stderr, flush=True)


def _environment(args: argparse.Namespace) -> BackupEnvironment:
    try:
        return backup_environment(args.data_dir, args.backup_dir, os.environ)
    except EnvironmentProblem as exc:
        raise CommandFailed(str(exc)) from None


def _open_storage(env: BackupEnvironment) -> ObjectStorage:
    settings = env.storage
    if settings.storage_backend == "filesystem" and not settings.storage_dir.is_dir():
        raise StepFailed(f"storage: the folder {settings.storage_dir} does not exist "
                         "(REELVAULT_STORAGE_DIR)")
    try:
        return open_storage(settings)
    except (ValueError, StorageError) as exc:
        raise StepFailed(f"storage: {describe_error(exc)}") from None


def _size(count: int) -> str:
    amount = float(count)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if amount < 1000 or unit == "TB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1000
    return f"{count} B"


# --- create ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Made:
    name: str
    folder: Path
    manifest: Manifest


async def _describe_storage(env: BackupEnvironment,
                            references: Iterable[tuple[str, str]]) -> Described:
    from reelvault.backup.objects import describe_objects

    storage = _open_storage(env)
    try:
        return await describe_objects(storage, references)
    except (StorageError, OSError) as exc:
        raise StepFailed(f"storage: {describe_error(exc)}") from exc
    finally:
        await storage.aclose()


async def _make_backup(env: BackupEnvironment, folder: Path, started: datetime) -> Manifest:
    from reelvault.backup.database import dump_database
    from reelvault.backup.objects import write_objects

    try:
        dump = await dump_database(env.database_url, folder, env.storage.bucket_images)
    except Exception as exc:  # ours, the driver's and SQLAlchemy's many error types
        raise StepFailed(f"database: {describe_error(exc)}") from exc
    described = await _describe_storage(env, dump.references)
    try:
        write_objects(folder / OBJECTS_FILE, described.records)
        files = describe_files(folder, [table.file for table in dump.tables] + [OBJECTS_FILE])
    except OSError as exc:
        raise StepFailed(f"backup folder: {describe_error(exc)}") from exc
    manifest = Manifest(
        started_at=started,
        finished_at=datetime.now(UTC),
        schema_revision=dump.revision,
        database_server=dump.server,
        tables=dump.tables,
        sequences=dump.sequences,
        objects=ObjectsSummary(count=len(described.records),
                               bytes=sum(record.size for record in described.records),
                               missing=tuple(described.missing)),
        files=tuple(files),
    )
    try:
        write_manifest(folder, manifest)
    except OSError as exc:
        raise StepFailed(f"backup folder: {describe_error(exc)}") from exc
    return manifest


def _create(env: BackupEnvironment, started: datetime) -> Made:
    directory = BackupDirectory(env.backup_dir)
    try:
        folder = directory.start(started)
    except OSError as exc:
        raise StepFailed(f"backup folder: {describe_error(exc)}") from exc
    try:
        manifest = asyncio.run(_make_backup(env, folder, started))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # unfinished: nothing would ever use it
        raise
    return Made(folder.name, folder, manifest)


def _record(env: BackupEnvironment, key: str, value: str) -> str | None:
    """Write ``key`` to the ops state bucket; a reason if that was not possible."""
    from reelvault.backup.state import record_state

    async def write() -> None:
        await asyncio.wait_for(record_state(env.service, key, value), timeout=20)

    try:
        asyncio.run(write())
    except Exception as exc:
        return f"NATS at {env.service.nats_url_for_logs}: {describe_error(exc)}"
    return None


def _retain(env: BackupEnvironment, keep: int) -> None:
    directory = BackupDirectory(env.backup_dir)
    try:
        deleted = directory.delete(choose_deletions(directory.entries(), keep, datetime.now(UTC)))
    except OSError as exc:
        _warn(f"the backup succeeded but older backups could not be deleted: "
              f"{describe_error(exc)}")
        return
    if deleted:
        print(f"deleted {len(deleted)} older backup(s): {' '.join(deleted)}")


def backup_create(args: argparse.Namespace) -> int:
    env = _environment(args)
    started = datetime.now(UTC)
    try:
        made = _create(env, started)
    except Exception as exc:
        reason = str(exc) if isinstance(exc, StepFailed) else describe_error(exc)
        unrecorded = _record(env, LAST_FAILURE_KEY, failure_value(datetime.now(UTC), reason))
        if unrecorded is not None:
            _warn(f"{LAST_FAILURE_KEY} not recorded: {unrecorded}")
        raise CommandFailed(f"backup failed: {reason}") from None
    manifest = made.manifest
    print(f"backup {made.name}: schema {manifest.schema_revision}, {len(manifest.tables)} "
          f"tables, {manifest.rows} rows, {manifest.objects.count} objects "
          f"({_size(manifest.objects.bytes)}) in {made.folder}")
    missing = manifest.objects.missing
    if missing:
        _warn(f"{len(missing)} object(s) the catalog refers to are missing from storage "
              f"(listed in backup.json): {', '.join(missing[:3])}"
              f"{', ...' if len(missing) > 3 else ''}")
    if args.keep is not None:
        _retain(env, args.keep)
    unrecorded = _record(env, LAST_SUCCESS_KEY, success_value(manifest.finished_at))
    if unrecorded is not None:
        _warn(f"the backup is complete, but {LAST_SUCCESS_KEY} was not recorded: {unrecorded}")
    return 0


# --- list --------------------------------------------------------------------------------
def backup_list(args: argparse.Namespace) -> int:
    env = _environment(args)
    directory = BackupDirectory(env.backup_dir)
    rows = [["NAME", "FINISHED", "REVISION", "TABLES", "ROWS", "OBJECTS", "STATE"]]
    for entry in directory.entries():
        if not entry.complete:
            rows.append([entry.name, "-", "-", "-", "-", "-", "unfinished"])
            continue
        try:
            manifest = directory.read_manifest(entry.name)
        except ManifestError:
            rows.append([entry.name, "-", "-", "-", "-", "-", "damaged"])
            continue
        rows.append([entry.name, f"{manifest.finished_at:%Y-%m-%d %H:%M:%SZ}",
                     manifest.schema_revision, str(len(manifest.tables)), str(manifest.rows),
                     f"{manifest.objects.count} ({_size(manifest.objects.bytes)})", "complete"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(f"{len(rows) - 1} backup folder(s) in {env.backup_dir}")
    return 0


# --- verify ------------------------------------------------------------------------------
def _chosen(directory: BackupDirectory, name: str | None) -> tuple[str, Manifest]:
    if name is not None and name_time(name) is None:
        raise BadInput(f"{name!r} is no backup's name (they read like 20260102T030405Z)")
    chosen = name or newest_complete(directory.entries())
    if chosen is None:
        raise CommandFailed(f"no finished backup in {directory.root}")
    try:
        return chosen, directory.read_manifest(chosen)
    except ManifestError as exc:
        raise CommandFailed(str(exc)) from None


async def _check_storage(env: BackupEnvironment, folder: Path, manifest: Manifest,
                         deep: bool) -> ObjectsChecked:
    from reelvault.backup.objects import check_objects, read_objects

    try:
        records = read_objects(folder / manifest.objects.file)
    except ValueError as exc:  # its sha256 matched, so backup.json vouches for a bad file
        raise StepFailed(f"{manifest.objects.file}: {describe_error(exc)}") from None
    storage = _open_storage(env)
    try:
        return await check_objects(storage, records, deep=deep)
    except (StorageError, OSError) as exc:
        raise StepFailed(f"storage: {describe_error(exc)}") from exc
    finally:
        await storage.aclose()


def _verify_summary(name: str, manifest: Manifest, checked: ObjectsChecked, deep: bool) -> str:
    without = checked.checked - checked.sha256_checked
    how = "their bytes" if deep else "storage's metadata"
    line = (f"backup {name}: {len(manifest.files)} files match backup.json; "
            f"{checked.checked} objects checked for presence and size, "
            f"{checked.sha256_checked} also by sha256 (from {how})")
    if without:
        line += (f"; {without} without a sha256 to compare (storage keeps none for them): "
                 "presence and size only, --deep reads them")
    return line


def backup_verify(args: argparse.Namespace) -> int:
    env = _environment(args)
    directory = BackupDirectory(env.backup_dir)
    name, manifest = _chosen(directory, args.name)
    folder = directory.folder(name)
    problems = file_problems(manifest.files, found_files(folder, manifest.files))
    for problem in problems:
        print(f"damaged: {problem}")
    if problems:
        raise CommandFailed(f"backup {name} failed verification: {len(problems)} of its own "
                            "files do not match backup.json (objects not checked)")
    try:
        checked = asyncio.run(_check_storage(env, folder, manifest, args.deep))
    except StepFailed as exc:
        raise CommandFailed(f"verify failed: {exc}") from None
    for problem in checked.problems:
        print(f"object {problem}")
    for missing in manifest.objects.missing:
        print(f"note: {missing} was already missing when the backup was made")
    print(_verify_summary(name, manifest, checked, args.deep))
    if checked.problems:
        raise CommandFailed(f"backup {name} failed verification: {len(checked.problems)} "
                            f"object(s) missing or changed, first {checked.problems[0]}")
    return 0


# --- restore -----------------------------------------------------------------------------
def backup_restore(args: argparse.Namespace) -> int:
    from reelvault_catalog.settings import normalise_database_url, redact_database_url

    from reelvault.backup.database import DatabaseNotEmpty, restore_database

    try:
        normalise_database_url(args.database_url)
    except ValueError as exc:
        raise BadInput(f"--database-url: {exc}") from None
    target = redact_database_url(args.database_url)
    env = _environment(args)
    directory = BackupDirectory(env.backup_dir)
    name, manifest = _chosen(directory, args.name)
    folder = directory.folder(name)
    problems = file_problems(manifest.files, found_files(folder, manifest.files))
    if problems:
        raise CommandFailed(f"backup {name} is damaged ({problems[0]}); nothing restored")
    try:
        restored = asyncio.run(restore_database(
            args.database_url, folder, manifest.schema_revision, manifest.tables,
            manifest.sequences))
    except DatabaseNotEmpty as exc:
        raise CommandFailed(f"will not restore into {target}: {exc}") from None
    except Exception as exc:
        raise CommandFailed(f"restore into {target} failed, nothing was written: "
                            f"{describe_error(exc)}") from None
    rows = sum(table.rows for table in restored)
    print(f"restored backup {name} into {target}: schema {manifest.schema_revision}, "
          f"{len(restored)} tables, {rows} rows. The catalog brings the schema to its newest "
          "revision when it starts; `reelvault backup verify` checks storage against the "
          "backup's objects")
    return 0


# --- the parser --------------------------------------------------------------------------
def _keep(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"keep at least 1 backup, not {value}")
    return value


def add_backup_commands(commands: Any) -> None:
    """Add ``backup`` to ``commands`` (what ``add_subparsers`` returned)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=Path(".reelvault"),
                        help="the folder of a system started with `reelvault up`")
    common.add_argument("--backup-dir", type=Path, default=None,
                        help="where backups go (default: $REELVAULT_BACKUP_DIR, else "
                             "<data dir>/backups)")
    backup = commands.add_parser("backup", help="back up, verify and restore the catalog")
    actions = backup.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", parents=[common],
                                help="back up the database and describe every stored object "
                                "(it holds webhook signing secrets: a private folder)")
    create.add_argument("--keep", type=_keep, default=None, metavar="N",
                        help="then delete all but the newest N backups")
    create.set_defaults(handler=backup_create)
    actions.add_parser("list", parents=[common], help="list backups").set_defaults(
        handler=backup_list)
    verify = actions.add_parser("verify", parents=[common],
                                help="check a backup's files and every object in storage")
    verify.add_argument("name", nargs="?", help="a backup (default: the newest)")
    verify.add_argument("--deep", action="store_true",
                        help="read and hash every object instead of trusting its metadata")
    verify.set_defaults(handler=backup_verify)
    restore = actions.add_parser("restore", parents=[common],
                                 help="restore the database into an empty one")
    restore.add_argument("name", nargs="?", help="a backup (default: the newest)")
    restore.add_argument("--database-url", required=True,
                         help="the EMPTY database to restore into")
    restore.set_defaults(handler=backup_restore)
