"""Build the configured storage backend."""

from __future__ import annotations

import logging
import secrets

from reelvault_common.runtime.settings import StorageSettings
from reelvault_common.storage.filesystem import FilesystemStorage
from reelvault_common.storage.interface import ObjectStorage

log = logging.getLogger(__name__)


def open_storage(settings: StorageSettings) -> ObjectStorage:
    if settings.storage_backend == "filesystem":
        if settings.storage_signing_key is None:
            # Links signed by this process only; replicas need REELVAULT_STORAGE_SIGNING_KEY.
            log.warning("REELVAULT_STORAGE_SIGNING_KEY is not set: signed links are per-process")
            key = secrets.token_bytes(32)
        else:
            key = settings.storage_signing_key.get_secret_value().encode()
        return FilesystemStorage(settings.storage_dir, settings.public_base_url, key)
    if settings.storage_backend == "supabase":
        # Imported here: the filesystem backend should not pay for importing supabase.
        from reelvault_common.storage.supabase import SupabaseStorage

        return SupabaseStorage.from_settings(settings)
    raise ValueError(f"unknown storage backend {settings.storage_backend!r}")
