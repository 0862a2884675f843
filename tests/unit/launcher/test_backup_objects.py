"""The storage manifest over an in-memory backend: what a backup records for each object the
catalog names (from ``stat``; from the bytes when storage keeps no sha256), and what verify
checks, with and without ``--deep``, when storage can or cannot give a sha256."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from reelvault_common.storage import BucketNotFound, ObjectInfo, ObjectNotFound

from reelvault.backup.manifest import ObjectRecord
from reelvault.backup.objects import check_objects, describe_objects, read_objects, write_objects


@dataclass
class MemoryStorage:
    """Objects by (bucket, key): their bytes and the sha256 the backend keeps (None: none)."""

    objects: dict[tuple[str, str], tuple[bytes, str | None]] = field(default_factory=dict)
    buckets: set[str] = field(default_factory=lambda: {"videos", "thumbnails"})
    reads: int = 0

    def add(self, bucket: str, key: str, data: bytes, *, keeps_sha256: bool = True) -> None:
        self.objects[(bucket, key)] = (data, hashlib.sha256(data).hexdigest()
                                       if keeps_sha256 else None)

    async def stat(self, bucket: str, key: str) -> ObjectInfo | None:
        if bucket not in self.buckets:
            raise BucketNotFound(bucket)
        found = self.objects.get((bucket, key))
        if found is None:
            return None
        return ObjectInfo(bucket, key, len(found[0]), "application/octet-stream", found[1])

    async def read(self, bucket: str, key: str) -> AsyncIterator[bytes]:
        self.reads += 1
        found = self.objects.get((bucket, key))
        if found is None:
            raise ObjectNotFound(key)
        data = found[0]
        for start in range(0, len(data), 3):
            yield data[start:start + 3]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_a_backup_describes_each_named_object_once_and_lists_the_missing() -> None:
    storage = MemoryStorage()
    storage.add("videos", "acme/v.mp4", b"video bytes")
    storage.add("thumbnails", "acme/t.webp", b"thumb", keeps_sha256=False)
    described = await describe_objects(storage, [  # type: ignore[arg-type]
        ("videos", "acme/v.mp4"), ("thumbnails", "acme/t.webp"), ("videos", "acme/v.mp4"),
        ("videos", "acme/gone.mp4"), ("brand-kits", "acme/kit.json")])
    assert [(r.bucket, r.key, r.size, r.sha256) for r in described.records] == [
        ("thumbnails", "acme/t.webp", 5, sha(b"thumb")),  # no sha256 kept: read and hashed
        ("videos", "acme/v.mp4", 11, sha(b"video bytes")),
    ]
    assert storage.reads == 1  # only the object storage keeps no sha256 for
    assert described.missing == ["brand-kits/acme/kit.json", "videos/acme/gone.mp4"]


async def test_verify_trusts_storage_metadata_and_deep_reads_the_bytes() -> None:
    storage = MemoryStorage()
    storage.add("videos", "a", b"aaaa")
    storage.add("videos", "b", b"bbbb", keeps_sha256=False)
    storage.add("videos", "c", b"cccc")
    records = (await describe_objects(storage, [  # type: ignore[arg-type]
        ("videos", "a"), ("videos", "b"), ("videos", "c")])).records

    checked = await check_objects(storage, records, deep=False)  # type: ignore[arg-type]
    assert (checked.checked, checked.sha256_checked, checked.problems) == (3, 2, [])
    # Changed in place behind the metadata, another with no metadata, and one gone.
    storage.objects[("videos", "a")] = (b"AAAA", sha(b"aaaa"))
    storage.objects[("videos", "b")] = (b"BBBB", None)
    del storage.objects[("videos", "c")]
    checked = await check_objects(storage, records, deep=False)  # type: ignore[arg-type]
    assert checked.problems == ["videos/c: missing"]
    deep = await check_objects(storage, records, deep=True)  # type: ignore[arg-type]
    assert deep.sha256_checked == 2
    assert [p.split(":")[0] for p in deep.problems] == ["videos/a", "videos/b", "videos/c"]


def test_the_object_manifest_reads_back_as_written(tmp_path: Path) -> None:
    path = tmp_path / "objects.jsonl"
    records = [ObjectRecord(bucket="videos", key="acme/2026/01/x/video.mp4", size=3,
                            sha256=sha(b"abc")),
               ObjectRecord(bucket="hug-images", key="acme/uploads/ab/c d.png", size=0)]
    write_objects(path, records)
    assert read_objects(path) == records
