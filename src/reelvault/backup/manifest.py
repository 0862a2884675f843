"""``backup.json``: what a finished backup holds, and the checks of its own files.

Everything a restore or a verify reads from the backup is named here; names that end up in
SQL (tables, columns, sequences) and paths inside the backup are checked when the file is
read, so a damaged or hand-edited ``backup.json`` is refused rather than obeyed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import PurePosixPath

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MANIFEST_FILE = "backup.json"
OBJECTS_FILE = "objects.jsonl"
TABLES_FOLDER = "tables"
FORMAT = 1
# How table files are written: PostgreSQL COPY text format, UTF-8, with the session settings
# ``database`` fixes (ISO dates, UTC), readable by any PostgreSQL version.
TABLE_ENCODING = "postgresql-copy-text"

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
SHA256 = r"^[0-9a-f]{64}$"


class ManifestError(Exception):
    """``backup.json`` is missing, unreadable or not what this version writes."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


def _identifier(value: str) -> str:
    if not IDENTIFIER.fullmatch(value):
        raise ValueError(f"not a plain SQL identifier: {value!r}")
    return value


def _inside(value: str) -> str:
    path = PurePosixPath(value)
    if path.is_absolute() or not path.parts or ".." in path.parts or "\\" in value:
        raise ValueError(f"not a path inside the backup: {value!r}")
    return value


class FileRecord(_Frozen):
    path: str
    size: int = Field(ge=0)
    sha256: str = Field(pattern=SHA256)

    _path = field_validator("path")(_inside)


class TableRecord(_Frozen):
    name: str
    columns: tuple[str, ...]
    rows: int = Field(ge=0)
    file: str

    _name = field_validator("name")(_identifier)
    _file = field_validator("file")(_inside)

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("a table has at least one column")
        return tuple(_identifier(column) for column in value)


class SequenceRecord(_Frozen):
    name: str
    last_value: int
    is_called: bool

    _name = field_validator("name")(_identifier)


class ObjectRecord(_Frozen):
    """One line of ``objects.jsonl``. ``sha256`` is None only when storage keeps none for the
    object and it could not be read."""

    bucket: str
    key: str
    size: int = Field(ge=0)
    sha256: str | None = Field(default=None, pattern=SHA256)


class ObjectsSummary(_Frozen):
    file: str = OBJECTS_FILE
    count: int = Field(ge=0)
    bytes: int = Field(ge=0)
    # Objects the catalog refers to that storage did not have when the backup was made.
    missing: tuple[str, ...] = ()

    _file = field_validator("file")(_inside)


class Manifest(_Frozen):
    format: int = FORMAT
    started_at: datetime
    finished_at: datetime
    schema_revision: str
    table_encoding: str = TABLE_ENCODING
    database_server: str = ""
    tables: tuple[TableRecord, ...]
    sequences: tuple[SequenceRecord, ...] = ()
    objects: ObjectsSummary
    files: tuple[FileRecord, ...]

    @property
    def rows(self) -> int:
        return sum(table.rows for table in self.tables)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> Manifest:
        try:
            manifest = cls.model_validate_json(text)
        except ValidationError as exc:
            first = exc.errors()[0]
            place = ".".join(str(part) for part in first["loc"])
            raise ManifestError(f"{where} is damaged ({place}: {first['msg']})") from None
        if manifest.format != FORMAT or manifest.table_encoding != TABLE_ENCODING:
            raise ManifestError(
                f"{where} has format {manifest.format}/{manifest.table_encoding}; this version "
                f"reads {FORMAT}/{TABLE_ENCODING}"
            )
        listed = {record.path for record in manifest.files}
        needed = {table.file for table in manifest.tables} | {manifest.objects.file}
        if needed - listed:
            raise ManifestError(f"{where} names files it has no sha256 for: "
                                f"{', '.join(sorted(needed - listed))}")
        return manifest


def file_problems(
    expected: tuple[FileRecord, ...], found: Mapping[str, FileRecord | None]
) -> list[str]:
    """The backup's own files against ``backup.json`` (``found``: what is on disk now, by
    path; None: missing)."""
    problems = []
    for record in expected:
        seen = found.get(record.path)
        if seen is None:
            problems.append(f"{record.path}: missing from the backup")
        elif seen.size != record.size:
            problems.append(f"{record.path}: {seen.size} bytes, backup.json says {record.size}")
        elif seen.sha256 != record.sha256:
            problems.append(f"{record.path}: sha256 {seen.sha256}, backup.json says "
                            f"{record.sha256}")
    return problems
