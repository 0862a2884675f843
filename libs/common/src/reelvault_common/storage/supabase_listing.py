"""Listing and removing objects on Supabase Storage (``POST /object/list/{bucket}`` walks one
folder level at a time: folders come back without an ``id``; ``DELETE /object/{bucket}`` with
``prefixes`` removes the named objects and skips missing ones)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from reelvault_common.storage.interface import ListedObject, check_key
from reelvault_common.storage.supabase_connection import SupabaseConnection
from reelvault_common.storage.supabase_staging import PAGE_SIZE, parse_timestamp


async def delete_object(connection: SupabaseConnection, bucket: str, key: str) -> bool:
    check_key(key)
    what = f"delete {bucket}/{key}"
    response = await connection.retry(what, lambda: connection.request(
        "DELETE", connection.bucket_url("object", bucket), what, json={"prefixes": [key]}))
    removed = response.json()
    return isinstance(removed, list) and len(removed) > 0


async def _page(
    connection: SupabaseConnection, bucket: str, folder: str, offset: int
) -> list[dict[str, Any]]:
    what = f"list {bucket}/{folder}"
    response = await connection.retry(what, lambda: connection.request(
        "POST", connection.bucket_url("object/list", bucket), what,
        json={"prefix": folder, "limit": PAGE_SIZE, "offset": offset,
              "sortBy": {"column": "name", "order": "asc"}}))
    entries: list[dict[str, Any]] = response.json()
    return entries


async def list_objects(
    connection: SupabaseConnection, bucket: str, prefix: str = ""
) -> AsyncIterator[ListedObject]:
    """Every object under the folder ``prefix`` (recursively); the staging area is not
    listed (its objects are no stored objects yet)."""
    staging = connection.options.staging_prefix
    folders = [prefix.strip("/")]
    while folders:
        folder = folders.pop()
        offset = 0
        while True:
            entries = await _page(connection, bucket, folder, offset)
            for entry in entries:
                name = f"{folder}/{entry['name']}" if folder else str(entry["name"])
                if not entry.get("id"):
                    if name != staging:
                        folders.append(name)
                    continue
                metadata = entry.get("metadata") or {}
                created = parse_timestamp(entry.get("created_at"))
                yield ListedObject(
                    key=name,
                    size=int(metadata.get("size") or 0),
                    created_at=(datetime.fromtimestamp(created, UTC)
                                if created is not None else None),
                )
            if len(entries) < PAGE_SIZE:
                break
            offset += len(entries)
