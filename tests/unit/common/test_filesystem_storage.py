from __future__ import annotations

import hashlib
import json
import os
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
    StreamLengthMismatch,
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
    for bad in ("../escape.mp4", "/abs.mp4", "a/../../b.mp4", "bad\\key.mp4", "",
                # A Supabase server cuts a key at ";", and "?" breaks signed URLs: refused on
                # every backend, so no key works on one and not on the other.
                "org;x/video.mp4", "org/video.mp4?v=1"):
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


# --- states a crash, a lock-less writer or an older version leaves on disk ----------------------
def place(root: Path, bucket: str, key: str, data: bytes, meta: dict[str, object] | None) -> None:
    """Write an object and/or its metadata directly, as something other than ``put`` would."""
    (root / bucket / key).parent.mkdir(parents=True, exist_ok=True)
    (root / bucket / key).write_bytes(data)
    if meta is not None:
        (root / ".meta" / bucket / f"{key}.json").parent.mkdir(parents=True, exist_ok=True)
        (root / ".meta" / bucket / f"{key}.json").write_text(json.dumps(meta))


def meta_of(data: bytes, content_type: str) -> dict[str, object]:
    sha = hashlib.sha256(data).hexdigest()
    return {"content_type": content_type, "size": len(data), "sha256": sha}


async def test_an_object_without_metadata_is_described_by_its_bytes(
    storage: FilesystemStorage, tmp_path: Path
) -> None:
    place(tmp_path / "store", "videos", "o/video.mp4", b"bytes", None)
    info = await storage.stat("videos", "o/video.mp4")
    assert info is not None
    assert (info.size, info.sha256, info.content_type) == (
        5, hashlib.sha256(b"bytes").hexdigest(), "video/mp4"  # guessed from the key
    )
    again = await storage.put("videos", "o/video.mp4", chunks(b"by", b"tes"), "video/mp4")
    assert again.sha256 == info.sha256
    with pytest.raises(ObjectConflict):
        await storage.put("videos", "o/video.mp4", chunks(b"other"), "video/mp4")


async def test_metadata_of_other_bytes_is_not_believed(
    storage: FilesystemStorage, tmp_path: Path
) -> None:
    # What the old commit could leave after a race: one writer's bytes, another's metadata.
    place(tmp_path / "store", "videos", "k.mp4", b"winner", meta_of(b"the loser", "video/webm"))
    info = await storage.stat("videos", "k.mp4")
    assert info is not None
    assert (info.size, info.sha256) == (6, hashlib.sha256(b"winner").hexdigest())
    assert info.content_type == "video/mp4"
    await storage.put("videos", "k.mp4", chunks(b"winner"), "video/mp4")  # same bytes: no-op
    with pytest.raises(ObjectConflict):
        await storage.put("videos", "k.mp4", chunks(b"the loser"), "video/webm")


async def test_metadata_without_an_object_is_not_an_object_and_is_replaced(
    storage: FilesystemStorage, tmp_path: Path
) -> None:
    # A writer died after putting its metadata in place, before linking its bytes.
    meta = tmp_path / "store" / ".meta" / "videos" / "k.mp4.json"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps(meta_of(b"dead", "video/x")))
    assert await storage.stat("videos", "k.mp4") is None
    with pytest.raises(ObjectNotFound):
        await storage.signed_url("videos", "k.mp4", 60)
    stored = await storage.put("videos", "k.mp4", chunks(b"alive!"), "video/mp4")
    info = await storage.stat("videos", "k.mp4")
    assert info is not None
    assert (info.size, info.sha256, info.content_type) == (6, stored.sha256, "video/mp4")


async def test_leftover_temp_files_are_ignored(storage: FilesystemStorage, tmp_path: Path) -> None:
    leftovers = [tmp_path / "store" / ".tmp" / name for name in ("0123abcd", "meta-4567ef")]
    for leftover in leftovers:
        leftover.write_bytes(b"half a vid")
    assert await storage.stat("videos", "0123abcd") is None
    await storage.put("videos", "0123abcd", chunks(b"whole"), "video/mp4")
    assert b"".join([c async for c in storage.read("videos", "0123abcd")]) == b"whole"
    assert all(leftover.read_bytes() == b"half a vid" for leftover in leftovers)


async def test_same_bytes_under_another_type_report_what_is_stored(
    storage: FilesystemStorage,
) -> None:
    await storage.put("videos", "k.mp4", chunks(b"same"), "video/mp4")
    again = await storage.put("videos", "k.mp4", chunks(b"same"), "video/webm")
    assert again.content_type == "video/mp4"
    info = await storage.stat("videos", "k.mp4")
    assert info is not None and info.content_type == "video/mp4"


@pytest.mark.parametrize("theirs", [b"theirs", b"ours"])
async def test_a_writer_that_skips_the_lock_is_detected_at_the_link(
    storage: FilesystemStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, theirs: bytes
) -> None:
    # E.g. a replica still running a version before the commit lock: its bytes land at the key
    # between our metadata and our link.
    final = tmp_path / "store" / "videos" / "k.mp4"
    real_link = os.link

    def link_after_them(src: object, dst: object) -> None:
        if Path(str(dst)) == final:
            final.write_bytes(theirs)
        real_link(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "link", link_after_them)
    if theirs == b"ours":
        stored = await storage.put("videos", "k.mp4", chunks(b"ours"), "video/mp4")
        assert stored.sha256 == hashlib.sha256(b"ours").hexdigest()
    else:
        with pytest.raises(ObjectConflict):
            await storage.put("videos", "k.mp4", chunks(b"ours"), "video/mp4")
    info = await storage.stat("videos", "k.mp4")
    assert info is not None
    assert (info.size, info.sha256) == (len(theirs), hashlib.sha256(theirs).hexdigest())
    assert b"".join([c async for c in storage.read("videos", "k.mp4")]) == theirs


async def test_a_key_that_is_a_folder_of_other_objects_conflicts(
    storage: FilesystemStorage, tmp_path: Path
) -> None:
    await storage.put("videos", "a/b.mp4", chunks(b"inner"), "video/mp4")
    assert await storage.stat("videos", "a") is None
    with pytest.raises(ObjectConflict):
        await storage.put("videos", "a", chunks(b"outer"), "video/mp4")
    assert not (tmp_path / "store" / ".meta" / "videos" / "a.json").exists()
    assert await storage.stat("videos", "a") is None


@pytest.mark.parametrize("announced", [True, False])
async def test_a_put_with_or_without_its_size_stores_the_same(
    tmp_path: Path, announced: bool
) -> None:
    # Announced small puts take the one-hop path; both paths must store the same things.
    big = BucketSpec("videos", False, 4 * 1024 * 1024, ("video/*",))
    store = FilesystemStorage(tmp_path / "store", "http://gw.test", b"secret")
    await store.ensure_buckets([big])
    data = os.urandom(300_000)
    parts = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    size = len(data) if announced else None
    stored = await store.put("videos", "a/video.mp4", chunks(*parts), "video/mp4", size=size)
    assert (stored.bytes, stored.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    info = await store.stat("videos", "a/video.mp4")
    assert info is not None and (info.size, info.sha256) == (len(data), stored.sha256)
    assert b"".join([c async for c in store.read("videos", "a/video.mp4")]) == data
    again = await store.put("videos", "a/video.mp4", chunks(data), "video/mp4", size=size)
    assert again == stored
    with pytest.raises(ObjectConflict):
        await store.put("videos", "a/video.mp4", chunks(data[::-1]), "video/mp4", size=size)
    assert not list((tmp_path / "store" / ".tmp").iterdir())


@pytest.mark.parametrize("actual", [b"abcd", b"abcdefgh"])
async def test_a_stream_of_another_length_than_announced_stores_nothing(
    storage: FilesystemStorage, actual: bytes
) -> None:
    with pytest.raises(StreamLengthMismatch):
        await storage.put("videos", "m.mp4", chunks(actual[:3], actual[3:]), "video/mp4", size=6)
    assert await storage.stat("videos", "m.mp4") is None
