"""``FilesystemStorage.put`` hands chunks to a writer thread of its own: what it stores and
hashes, how far it lets the source run ahead, and what a failing or cancelled put leaves."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from reelvault_common.storage import BucketSpec, ObjectNotFound, PayloadTooLarge, filesystem
from reelvault_common.storage.filesystem import FilesystemStorage

VIDEOS = BucketSpec("videos", False, 64 * 1024 * 1024, ("video/*",))


@pytest.fixture
async def store(tmp_path: Path) -> FilesystemStorage:
    storage = FilesystemStorage(tmp_path / "store", "http://gw.test", b"secret")
    await storage.ensure_buckets([VIDEOS])
    return storage


def temp_files(tmp_path: Path) -> list[Path]:
    return list((tmp_path / "store" / ".tmp").iterdir())


async def test_chunks_of_any_size_and_buffer_type_are_stored_and_hashed_in_order(
    store: FilesystemStorage,
) -> None:
    data = os.urandom(5 * 1024 * 1024 + 123)
    cuts = [0, 1, 70_000, 1_100_000, 1_100_001, 3_000_000, len(data)]

    async def chunks() -> AsyncIterator[bytes]:
        reused = bytearray()
        for start, end in itertools.pairwise(cuts):
            # A source that refills one buffer: what was handed over must not change.
            reused[:] = data[start:end]
            yield reused  # type: ignore[misc]
            await asyncio.sleep(0)

    stored = await store.put("videos", "a/v.mp4", chunks(), "video/mp4", size=len(data))
    assert (stored.bytes, stored.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    read = b"".join([c async for c in store.read("videos", "a/v.mp4")])
    assert read == data


async def test_the_source_waits_when_the_writer_falls_behind(
    store: FilesystemStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(filesystem, "WRITER_QUEUE_BYTES", 3 * 1024 * 1024)
    real_write = filesystem._FileWriter._write
    written = 0

    def slow_write(self: filesystem._FileWriter, chunk: bytes) -> None:
        nonlocal written
        import time

        time.sleep(0.01)  # a slow disk
        real_write(self, chunk)
        written += len(chunk)

    monkeypatch.setattr(filesystem._FileWriter, "_write", slow_write)
    chunk = b"x" * (1024 * 1024)
    ahead: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        produced = 0
        for _ in range(20):
            ahead.append(produced - written)
            produced += len(chunk)
            yield chunk

    stored = await store.put("videos", "slow.mp4", chunks(), "video/mp4")
    assert stored.bytes == 20 * len(chunk)
    # Never more than the queue's bound (plus the chunk being written) ahead of the disk.
    assert max(ahead) <= 4 * len(chunk)


async def test_a_refused_put_leaves_no_object_and_no_temp_file(
    tmp_path: Path, store: FilesystemStorage
) -> None:
    big = b"y" * (1024 * 1024)

    async def too_much() -> AsyncIterator[bytes]:
        for _ in range(70):
            yield big

    with pytest.raises(PayloadTooLarge):
        await store.put("videos", "big.mp4", too_much(), "video/mp4")
    assert await store.stat("videos", "big.mp4") is None
    assert temp_files(tmp_path) == []


async def test_a_failing_disk_write_fails_the_put(
    tmp_path: Path, store: FilesystemStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: filesystem._FileWriter, chunk: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(filesystem._FileWriter, "_write", broken)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"z" * (1024 * 1024)
            await asyncio.sleep(0.001)

    with pytest.raises(OSError, match="No space left"):
        await store.put("videos", "full.mp4", chunks(), "video/mp4")
    with pytest.raises(ObjectNotFound):
        [c async for c in store.read("videos", "full.mp4")]
    assert temp_files(tmp_path) == []


async def test_a_cancelled_put_stops_its_writer_and_removes_the_temp_file(
    tmp_path: Path, store: FilesystemStorage
) -> None:
    started = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"w" * (256 * 1024)
            started.set()
            await asyncio.sleep(0.001)

    task = asyncio.create_task(store.put("videos", "cut.mp4", endless(), "video/mp4"))
    await started.wait()
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await store.stat("videos", "cut.mp4") is None
    assert temp_files(tmp_path) == []
