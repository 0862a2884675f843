"""The backup directory on disk: one folder per backup, ``backup.json`` written last.

Files are fsynced before ``backup.json`` is renamed into place and the folder is fsynced
after, so after a crash a folder either has a complete ``backup.json`` describing fsynced
files, or none at all (and is then an unfinished backup that nothing uses).

A backup holds secrets: the webhook endpoints' signing secrets (a restored endpoint must sign
as its receiver expects, so they cannot be left out) besides every organization's data. Each
backup's folder is therefore created readable by its owner only (0700); copies of it must be
kept as carefully (encrypted, access-controlled) as any other secret.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from reelvault.backup.manifest import MANIFEST_FILE, FileRecord, Manifest, ManifestError
from reelvault.backup.rules import FolderEntry, backup_name, name_time, order_key

# A backup's folder (and the folder of backups, when the command creates it): owner only.
PRIVATE_FOLDER = 0o700


def sha256_and_size(path: Path) -> tuple[str, int]:
    with path.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256")
        return digest.hexdigest(), handle.tell()


def fsync_path(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class BackupDirectory:
    """``root``: the folder holding one folder per backup."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def entries(self) -> list[FolderEntry]:
        """Every folder named like a backup, oldest first."""
        if not self.root.is_dir():
            return []
        found = [
            FolderEntry(path.name, (path / MANIFEST_FILE).is_file())
            for path in self.root.iterdir()
            if path.is_dir() and name_time(path.name) is not None
        ]
        return sorted(found, key=lambda entry: order_key(entry.name))

    def start(self, moment: datetime) -> Path:
        """A new, empty folder for a backup started at ``moment``, private to its owner."""
        self.root.mkdir(parents=True, exist_ok=True, mode=PRIVATE_FOLDER)
        while True:
            taken = {path.name for path in self.root.iterdir()}
            folder = self.root / backup_name(moment, taken)
            try:
                folder.mkdir(mode=PRIVATE_FOLDER)
            except FileExistsError:  # another backup took the name this very moment
                continue
            # mkdir's mode is narrowed by the umask, never widened; set it exactly.
            folder.chmod(PRIVATE_FOLDER)
            return folder

    def folder(self, name: str) -> Path:
        return self.root / name

    def read_manifest(self, name: str) -> Manifest:
        path = self.root / name / MANIFEST_FILE
        if not (self.root / name).is_dir():
            raise ManifestError(f"no backup {name} in {self.root}")
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ManifestError(
                f"backup {name} is unfinished (it has no {MANIFEST_FILE}) and cannot be used"
            ) from None
        return Manifest.from_json(text, f"{name}/{MANIFEST_FILE}")

    def delete(self, names: Iterable[str]) -> list[str]:
        deleted = []
        for name in names:
            shutil.rmtree(self.root / name)
            deleted.append(name)
        if deleted:
            fsync_path(self.root)
        return deleted


def describe_files(folder: Path, paths: Iterable[str]) -> list[FileRecord]:
    """Size and sha256 of each file (fsynced first: they must be durable before the
    manifest that vouches for them)."""
    records = []
    for relative in paths:
        path = folder / relative
        fsync_path(path)
        sha256, size = sha256_and_size(path)
        records.append(FileRecord(path=relative, size=size, sha256=sha256))
    return records


def found_files(folder: Path, records: Iterable[FileRecord]) -> dict[str, FileRecord | None]:
    """What is on disk now for each file ``backup.json`` lists."""
    found: dict[str, FileRecord | None] = {}
    for record in records:
        path = folder / record.path
        if not path.is_file():
            found[record.path] = None
            continue
        sha256, size = sha256_and_size(path)
        found[record.path] = FileRecord(path=record.path, size=size, sha256=sha256)
    return found


def write_manifest(folder: Path, manifest: Manifest) -> None:
    """Write ``backup.json`` last and atomically: a temp file, fsynced, renamed, the folder
    fsynced. Until the rename the backup does not exist."""
    for sub in {folder / record.path for record in manifest.files}:
        fsync_path(sub.parent)
    temp = folder / f".{MANIFEST_FILE}.tmp"
    with temp.open("w", encoding="utf-8") as handle:
        handle.write(manifest.to_json())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, folder / MANIFEST_FILE)
    fsync_path(folder)
    fsync_path(folder.parent)

