"""Which object keys are worth asking storage about. Pure."""

from __future__ import annotations

from reelvault_common.storage import InvalidKey
from reelvault_common.storage.interface import check_key

MAX_KEY_BYTES = 1024  # Supabase Storage's limit on object names
MAX_SEGMENT_BYTES = 255  # a file name on common filesystems


def usable_key(key: str) -> bool:
    """False for keys no backend could hold (bad characters, ``..``, too long): looking them up
    would only fail, or fail loudly (a filesystem answers "name too long")."""
    try:
        check_key(key)
    except InvalidKey:
        return False
    if len(key.encode()) > MAX_KEY_BYTES:
        return False
    return all(len(segment.encode()) <= MAX_SEGMENT_BYTES for segment in key.split("/"))
