"""Removing and listing objects, the same on every backend: a removal is idempotent and leaves
the key free for a new put; a listing walks folders and names each object once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from reelvault_common.storage import ObjectStorage
from reelvault_common.storage.filesystem import FilesystemStorage
from reelvault_common.storage.layout import Buckets
from reelvault_common.storage.supabase import SupabaseStorage, SupabaseStorageOptions

pytestmark = pytest.mark.integration

PREFIX = "org-1/2026/11/0b7e8a52-5d0e-4c1e-9a0a-7d7f6f1c2a10"


async def once(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture(params=["filesystem", "supabase"])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, buckets: Buckets
) -> AsyncIterator[ObjectStorage]:
    store: ObjectStorage
    if request.param == "filesystem":
        store = FilesystemStorage(tmp_path / "fs", "http://gateway.test", b"k" * 32)
    else:
        server = request.getfixturevalue("storage_server")
        options: SupabaseStorageOptions = request.getfixturevalue("storage_options")
        store = SupabaseStorage.for_storage_server(server.url, server.service_key(), options)
    await store.ensure_buckets(buckets.all())
    yield store
    await store.aclose()


async def test_delete_is_idempotent_and_frees_the_key(
    backend: ObjectStorage, buckets: Buckets
) -> None:
    bucket, key = buckets.videos.name, f"{PREFIX}/video.mp4"
    await backend.put(bucket, key, once(b"first"), "video/mp4")
    assert await backend.delete(bucket, key) is True
    assert await backend.stat(bucket, key) is None
    assert await backend.delete(bucket, key) is False
    # Other bytes may now take the key (no conflict with what was removed).
    stored = await backend.put(bucket, key, once(b"second bytes"), "video/mp4")
    assert stored.bytes == len(b"second bytes")


async def test_listing_walks_folders(backend: ObjectStorage, buckets: Buckets) -> None:
    bucket = buckets.images.name
    keys = {"org-1/uploads/aa/one.png", "org-1/uploads/bb/two.png", "org-2/uploads/cc/x.png"}
    for key in keys:
        await backend.put(bucket, key, once(b"\x89PNG" + key.encode()), "image/png")
    listed = [item async for item in backend.list_objects(bucket, "org-1/uploads")]
    assert sorted(item.key for item in listed) == sorted(k for k in keys if k.startswith("org-1"))
    assert all(item.size > 4 and item.created_at is not None for item in listed)
    everything = {item.key async for item in backend.list_objects(bucket)}
    assert everything == keys
