from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from reelvault_common.storage import (
    BucketRulesMismatch,
    BucketSpec,
    InvalidKey,
    MimeTypeNotAllowed,
    ObjectConflict,
    ObjectNotFound,
    PayloadTooLarge,
)
from reelvault_common.storage.filesystem import FilesystemStorage

VIDEOS = BucketSpec("videos", False, 1000, ("video/*",))
THUMBS = BucketSpec("thumbnails", True, 100, ("image/webp", "image/png"))


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@pytest.fixture
async def storage(tmp_path: Path) -> FilesystemStorage:
    store = FilesystemStorage(tmp_path / "store", "http://gw.test", b"secret")
    await store.ensure_buckets([VIDEOS, THUMBS])
    return store


async def test_put_streams_and_reports_size_and_sha(storage: FilesystemStorage) -> None:
    stored = await storage.put(
        "videos", "o/2026/11/v/video.mp4", chunks(b"abc", b"def"), "video/mp4"
    )
    assert (stored.bytes, stored.sha256) == (6, hashlib.sha256(b"abcdef").hexdigest())
    assert stored.url is None  # private bucket: no permanent public URL
    info = await storage.stat("videos", "o/2026/11/v/video.mp4")
    assert info is not None and (info.size, info.sha256, info.content_type) == (
        6,
        stored.sha256,
        "video/mp4",
    )
    assert b"".join([c async for c in storage.read("videos", "o/2026/11/v/video.mp4")]) == b"abcdef"


async def test_same_bytes_again_is_a_no_op_and_different_bytes_conflict(
    storage: FilesystemStorage,
) -> None:
    first = await storage.put("videos", "k.mp4", chunks(b"same"), "video/mp4")
    again = await storage.put("videos", "k.mp4", chunks(b"sa", b"me"), "video/mp4")
    assert again == first
    with pytest.raises(ObjectConflict):
        await storage.put("videos", "k.mp4", chunks(b"other"), "video/mp4")
    assert b"".join([c async for c in storage.read("videos", "k.mp4")]) == b"same"


async def test_bucket_rules_are_enforced_and_nothing_is_left_behind(
    storage: FilesystemStorage, tmp_path: Path
) -> None:
    with pytest.raises(PayloadTooLarge):
        await storage.put("thumbnails", "big.webp", chunks(b"x" * 60, b"x" * 60), "image/webp")
    with pytest.raises(MimeTypeNotAllowed):
        await storage.put("thumbnails", "a.txt", chunks(b"x"), "text/plain")
    assert await storage.stat("thumbnails", "big.webp") is None
    assert list((tmp_path / "store" / ".tmp").iterdir()) == []


async def test_keys_are_validated(storage: FilesystemStorage) -> None:
    for bad in ("../escape.mp4", "/abs.mp4", "a/../../b.mp4", "bad\\key.mp4", ""):
        with pytest.raises(InvalidKey):
            await storage.put("videos", bad, chunks(b"x"), "video/mp4")


async def test_public_and_signed_urls(storage: FilesystemStorage) -> None:
    await storage.put("thumbnails", "t/thumb.webp", chunks(b"img"), "image/webp")
    assert (
        await storage.public_url("thumbnails", "t/thumb.webp")
        == "http://gw.test/files/thumbnails/t/thumb.webp"
    )
    await storage.put("videos", "v.mp4", chunks(b"vid"), "video/mp4")
    url = await storage.signed_url("videos", "v.mp4", 60)
    query = parse_qs(urlsplit(url).query)
    expires, token = int(query["expires"][0]), query["token"][0]
    assert storage.verify("videos", "v.mp4", expires, token)
    assert not storage.verify("videos", "other.mp4", expires, token)
    assert not storage.verify("videos", "v.mp4", expires + 1, token)
    assert not storage.verify("videos", "v.mp4", int(time.time()) - 1, token)
    with pytest.raises(ObjectNotFound):
        await storage.signed_url("videos", "missing.mp4", 60)


async def test_existing_bucket_with_other_rules_is_reported(storage: FilesystemStorage) -> None:
    await storage.ensure_buckets([VIDEOS])  # same rules: fine
    with pytest.raises(BucketRulesMismatch):
        await storage.ensure_buckets([BucketSpec("videos", True, 1000, ("video/*",))])
