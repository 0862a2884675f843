"""One behavioural contract, every backend: each test here runs against the filesystem backend,
the Supabase backend talking to the Supabase-Storage-compatible test server, and the Supabase
backend talking to a real storage server when one is at hand (see conftest.py)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from reelvault_common.storage import (
    BucketNotFound,
    BucketRulesMismatch,
    InvalidKey,
    MimeTypeNotAllowed,
    ObjectConflict,
    ObjectNotFound,
    ObjectStorage,
    PayloadTooLarge,
)
from reelvault_common.storage.filesystem import FilesystemStorage
from reelvault_common.storage.layout import MB, Buckets
from reelvault_common.storage.supabase import SupabaseStorage, SupabaseStorageOptions

from tests.support.supabase_storage import ExternalStorage

pytestmark = pytest.mark.integration

VIDEO_KEY = "org-1/2026/11/0b7e8a52-5d0e-4c1e-9a0a-7d7f6f1c2a10/video.mp4"
THUMB_KEY = "org-1/2026/11/0b7e8a52-5d0e-4c1e-9a0a-7d7f6f1c2a10/thumbnail.webp"


async def chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def read_all(store: ObjectStorage, bucket: str, key: str) -> bytes:
    return b"".join([chunk async for chunk in store.read(bucket, key)])


@pytest.fixture(params=["filesystem", "supabase", "supabase-real"])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, buckets: Buckets
) -> AsyncIterator[ObjectStorage]:
    store: ObjectStorage
    if request.param == "filesystem":
        store = FilesystemStorage(tmp_path / "fs", "http://gateway.test", b"k" * 32)
    elif request.param == "supabase":
        server = request.getfixturevalue("storage_server")
        options: SupabaseStorageOptions = request.getfixturevalue("storage_options")
        store = SupabaseStorage.for_storage_server(server.url, server.service_key(), options)
    else:
        real: ExternalStorage = request.getfixturevalue("real_storage")
        options = request.getfixturevalue("storage_options")
        store = SupabaseStorage.for_storage_server(real.url, real.service_key, options)
    await store.ensure_buckets(buckets.all())
    yield store
    await store.aclose()


async def test_ensure_buckets_again_is_a_no_op_and_other_rules_are_reported(
    backend: ObjectStorage, buckets: Buckets
) -> None:
    await backend.ensure_buckets(buckets.all())  # second time: nothing to do, nothing raised
    stricter = dataclasses.replace(buckets.videos, file_size_limit=100 * MB)
    with pytest.raises(BucketRulesMismatch) as caught:
        await backend.ensure_buckets([stricter])
    assert "videos" in caught.value.message
    assert str(500 * MB) in caught.value.message
    assert str(100 * MB) in caught.value.message
    # Still the original rules: a video of 150 MB would be allowed, so the bucket was not changed.
    await backend.ensure_buckets([buckets.videos])


async def test_put_stat_read_round_trip_with_sha256(
    backend: ObjectStorage, buckets: Buckets
) -> None:
    data = os.urandom(MB + 12345)
    stored = await backend.put(buckets.videos.name, VIDEO_KEY, chunks(data), "video/mp4")
    assert (stored.bucket, stored.key, stored.content_type) == ("videos", VIDEO_KEY, "video/mp4")
    assert (stored.bytes, stored.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert stored.url is None  # private bucket
    info = await backend.stat(buckets.videos.name, VIDEO_KEY)
    assert info is not None
    assert (info.size, info.sha256, info.content_type) == (len(data), stored.sha256, "video/mp4")
    assert await read_all(backend, buckets.videos.name, VIDEO_KEY) == data


async def test_same_bytes_again_is_a_no_op_and_different_bytes_conflict(
    backend: ObjectStorage, buckets: Buckets
) -> None:
    data = os.urandom(200_000)
    first = await backend.put("videos", VIDEO_KEY, chunks(data), "video/mp4")
    again = await backend.put("videos", VIDEO_KEY, chunks(data, 7000), "video/mp4")
    assert again == first
    with pytest.raises(ObjectConflict) as caught:
        await backend.put("videos", VIDEO_KEY, chunks(data[:-1] + b"!"), "video/mp4")
    assert VIDEO_KEY in caught.value.message
    assert await read_all(backend, "videos", VIDEO_KEY) == data  # never overwritten


async def test_oversize_is_refused_clearly_and_leaves_nothing(
    backend: ObjectStorage, buckets: Buckets
) -> None:
    limit = buckets.thumbnails.file_size_limit
    assert limit == 5 * MB
    with pytest.raises(PayloadTooLarge) as caught:
        await backend.put("thumbnails", THUMB_KEY, chunks(b"x" * (limit + 1), MB), "image/webp")
    assert "thumbnails" in caught.value.message
    assert str(limit) in caught.value.message
    assert await backend.stat("thumbnails", THUMB_KEY) is None
    exactly = await backend.put("thumbnails", THUMB_KEY, chunks(b"y" * limit, MB), "image/webp")
    assert exactly.bytes == limit


@pytest.mark.parametrize(
    ("bucket", "content_type", "allowed"),
    [
        ("videos", "video/mp4", True),
        ("videos", "video/quicktime", True),  # video/* wildcard
        ("videos", "image/png", False),
        ("thumbnails", "image/webp", True),
        ("thumbnails", "image/gif", False),
        ("thumbnails", "text/plain", False),
        ("brand-kits", "font/woff2", True),
        ("brand-kits", "application/json", True),
        ("brand-kits", "application/pdf", False),
    ],
)
async def test_mime_rules(
    backend: ObjectStorage, bucket: str, content_type: str, allowed: bool
) -> None:
    key = f"org-1/uploads/{content_type.replace('/', '-')}"
    if allowed:
        stored = await backend.put(bucket, key, chunks(b"data"), content_type)
        assert stored.content_type == content_type
    else:
        with pytest.raises(MimeTypeNotAllowed) as caught:
            await backend.put(bucket, key, chunks(b"data"), content_type)
        assert content_type in caught.value.message
        assert bucket in caught.value.message
        assert await backend.stat(bucket, key) is None


@pytest.mark.parametrize(
    "key",
    ["../escape.mp4", "/abs.mp4", "a#b.mp4", "caf\u00e9.mp4", "a%20b.mp4", "",
     # A real server stores "org;x/v.mp4" as "org"; "?" breaks signed URLs.
     "org;x/video.mp4", "org/video.mp4?v=1"],
)
async def test_invalid_keys_are_refused(backend: ObjectStorage, key: str) -> None:
    with pytest.raises(InvalidKey):
        await backend.put("videos", key, chunks(b"x"), "video/mp4")


async def test_keys_with_the_documented_special_characters_work(backend: ObjectStorage) -> None:
    key = "org 1/it's (final) v2!&$=@:+,-_.*/video.mp4"
    await backend.put("videos", key, chunks(b"special"), "video/mp4")
    assert await read_all(backend, "videos", key) == b"special"
    info = await backend.stat("videos", key)
    assert info is not None
    assert info.size == 7


async def test_missing_objects_and_buckets(backend: ObjectStorage) -> None:
    assert await backend.stat("videos", "nope/video.mp4") is None
    with pytest.raises(ObjectNotFound):
        await read_all(backend, "videos", "nope/video.mp4")
    with pytest.raises(ObjectNotFound):
        await backend.signed_url("videos", "nope/video.mp4", 60)
    with pytest.raises(BucketNotFound):
        await backend.stat("no-such-bucket", "a.mp4")
    with pytest.raises(BucketNotFound):
        await backend.put("no-such-bucket", "a.mp4", chunks(b"x"), "video/mp4")


async def test_public_urls_only_for_public_buckets_and_signed_urls_carry_a_token(
    backend: ObjectStorage,
) -> None:
    thumb = await backend.put("thumbnails", THUMB_KEY, chunks(b"RIFF....WEBP"), "image/webp")
    assert thumb.url is not None
    assert thumb.url == await backend.public_url("thumbnails", THUMB_KEY)
    assert urlsplit(thumb.url).path.endswith("/thumbnails/" + THUMB_KEY)
    await backend.put("videos", VIDEO_KEY, chunks(b"video"), "video/mp4")
    assert await backend.public_url("videos", VIDEO_KEY) is None
    signed = await backend.signed_url("videos", VIDEO_KEY, 60)
    parts = urlsplit(signed)
    assert parts.scheme in ("http", "https")
    assert parts.netloc
    assert parse_qs(parts.query)["token"][0]
