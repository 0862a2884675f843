"""Where a backup command finds the database, storage, NATS and the backup folder: the same
environment variables as the services (``DATABASE_URL``, ``NATS_URL``,
``REELVAULT_NAMESPACE``, ``REELVAULT_STORAGE_*``, ``SUPABASE_*``), completed, from the folder
``reelvault up`` runs in, by what it recorded in ``system.json`` (never a secret: the
service-role key and a database password come from the environment only)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings
from reelvault_common.runtime.settings import ServiceSettings, StorageSettings

from reelvault.local_system import system_environment

BACKUP_DIR_VARIABLE = "REELVAULT_BACKUP_DIR"
BACKUPS_FOLDER = "backups"
S = TypeVar("S", bound=BaseSettings)


class EnvironmentProblem(Exception):
    """A setting the command cannot use, said in one line (never its value)."""


def settings_from(cls: type[S], env: Mapping[str, str]) -> S:
    """``cls`` read from ``env`` by the names the services read it from (``REELVAULT_<FIELD>``,
    or the field's own alias such as ``NATS_URL``); other fields keep their defaults."""
    values: dict[str, str] = {}
    for name, info in cls.model_fields.items():
        alias = info.validation_alias if isinstance(info.validation_alias, str) else None
        variable = alias or f"REELVAULT_{name.upper()}"
        if variable in env:
            values[alias or name] = env[variable]
    try:
        return cls.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise EnvironmentProblem(f"setting {where}: {first['msg']}") from None


@dataclass(frozen=True)
class BackupEnvironment:
    backup_dir: Path
    database_url: str
    storage: StorageSettings
    service: ServiceSettings


def backup_environment(
    data_dir: Path, backup_dir: Path | None, env: Mapping[str, str]
) -> BackupEnvironment:
    # Imported here: the catalog's settings pull in SQLAlchemy, which other commands skip.
    from reelvault_catalog.settings import CatalogSettings

    merged = system_environment(data_dir, env)
    folder = backup_dir or Path(merged.get(BACKUP_DIR_VARIABLE) or data_dir / BACKUPS_FOLDER)
    default_url = str(CatalogSettings.model_fields["database_url"].default)
    storage = settings_from(StorageSettings, merged)
    if storage.storage_signing_key is None:
        # A backup only reads; a throwaway key keeps the filesystem backend from warning that
        # its (never made) links would be per-process.
        storage = storage.model_copy(
            update={"storage_signing_key": SecretStr(secrets.token_urlsafe(32))})
    return BackupEnvironment(
        backup_dir=folder,
        database_url=merged.get("DATABASE_URL") or default_url,
        storage=storage,
        service=settings_from(ServiceSettings, merged),
    )
