"""What ``reelvault up`` leaves in its data folder for the operator commands run beside it.

``system.json`` says how to reach the running system (its NATS URL and namespace, its
database, its storage), so ``reelvault orgs list`` and ``reelvault backup create`` work from
the project folder with no settings; ``api-key`` holds the default organization's key, created
on the first start and kept across restarts. Both are readable by the owner only: the NATS URL
may carry credentials, the key is a secret. Secret keys (the Supabase service-role key, the
signing keys) are never recorded, nor a password in ``DATABASE_URL``: they stay in the
environment (for the database also ``PGPASSWORD`` or ``~/.pgpass``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

SYSTEM_FILE = "system.json"
API_KEY_FILE = "api-key"
# The environment variables ``system.json`` may supply (the environment always wins).
# DATABASE_URL: the embedded PostgreSQL listens on a socket inside the data folder, which a
# backup run beside the system must find without being told.
SYSTEM_VARIABLES = (
    "NATS_URL",
    "REELVAULT_NAMESPACE",
    "DATABASE_URL",
    "REELVAULT_STORAGE_BACKEND",
    "REELVAULT_STORAGE_DIR",
    "SUPABASE_URL",
    "SUPABASE_STORAGE_URL",
    "REELVAULT_BUCKET_VIDEOS",
    "REELVAULT_BUCKET_THUMBNAILS",
    "REELVAULT_BUCKET_IMAGES",
    "REELVAULT_BUCKET_BRAND_KITS",
)


def _write_private(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)


def without_password(url: str) -> str | None:
    """``url`` with the password of its user info left out (the rest unchanged); None when
    ``url`` cannot be parsed (it is then not recorded at all)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return None
    if password is None:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return url.replace(parts.netloc, f"{user}@{hostinfo}" if user else hostinfo, 1)


def record_system(data_dir: Path, env: Mapping[str, str]) -> None:
    values = {name: env[name] for name in SYSTEM_VARIABLES if name in env}
    if "DATABASE_URL" in values:
        database_url = without_password(values.pop("DATABASE_URL"))
        if database_url is not None:
            values["DATABASE_URL"] = database_url
    _write_private(data_dir / SYSTEM_FILE, json.dumps(values, indent=2) + "\n")


def forget_system(data_dir: Path) -> None:
    (data_dir / SYSTEM_FILE).unlink(missing_ok=True)


def system_environment(data_dir: Path, env: Mapping[str, str]) -> dict[str, str]:
    """``env`` completed with what the system running from ``data_dir`` recorded."""
    merged = dict(env)
    try:
        recorded = json.loads((data_dir / SYSTEM_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return merged
    if isinstance(recorded, dict):
        for name in SYSTEM_VARIABLES:
            value = recorded.get(name)
            if isinstance(value, str) and name not in merged:
                merged[name] = value
    return merged


def read_api_key(data_dir: Path) -> str | None:
    try:
        return (data_dir / API_KEY_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def write_api_key(data_dir: Path, key: str) -> None:
    _write_private(data_dir / API_KEY_FILE, key + "\n")
