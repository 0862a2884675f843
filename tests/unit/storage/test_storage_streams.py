"""``prefetch`` (read ahead in a task, bounded) and ``HashingWriter`` (hash + write per thread
hop, small chunks batched, one fsync)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from reelvault_common.storage.streams import HashingWriter, prefetch


class Source:
    def __init__(self, count: int, size: int = 1000, fail_at: int | None = None) -> None:
        self.count, self.size, self.fail_at = count, size, fail_at
        self.produced = 0
        self.closed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            for index in range(self.count):
                if index == self.fail_at:
                    raise ConnectionError("download broke off")
                self.produced += 1
                yield bytes([index % 256]) * self.size
                await asyncio.sleep(0)
        finally:
            self.closed = True


async def test_prefetch_keeps_order_and_reads_ahead_only_so_far() -> None:
    source = Source(50)
    seen = []
    ahead = []
    async for chunk in prefetch(source.chunks(), depth=3):
        seen.append(chunk[0])
        await asyncio.sleep(0.001)  # a slow consumer (a thread writing)
        ahead.append(source.produced - len(seen))
    assert seen == list(range(50))
    assert max(ahead) <= 3 + 1  # the queue plus the chunk the reading task holds
    assert max(ahead) >= 2  # it did read ahead


async def test_prefetch_surfaces_the_source_error_where_the_consumer_is() -> None:
    source = Source(10, fail_at=4)
    seen: list[int] = []

    async def consume() -> None:
        async for chunk in prefetch(source.chunks(), depth=2):
            seen.append(chunk[0])

    with pytest.raises(ConnectionError, match="broke off"):
        await consume()
    assert seen == [0, 1, 2, 3]


async def test_a_consumer_that_stops_early_stops_the_reading_task() -> None:
    source = Source(1000)
    stream = prefetch(source.chunks(), depth=2)
    async for _ in stream:
        break
    await stream.aclose()  # what ``async for`` + an exception in put does
    assert source.closed
    assert source.produced < 10


async def test_hashing_writer_batches_small_chunks_and_hashes_all(tmp_path: Path) -> None:
    path = tmp_path / "out.bin"
    pieces = [bytes([i]) * 300_000 for i in range(7)] + [b"x" * 3_000_000, b"tail"]
    with path.open("wb") as handle:
        writer = HashingWriter(handle, batch_bytes=1_000_000)
        hops = 0
        real = writer._write

        def counting(chunk: bytes | bytearray) -> None:
            nonlocal hops
            hops += 1
            real(chunk)

        writer._write = counting  # type: ignore[method-assign]
        for piece in pieces:
            await writer.write(piece)
        sha256 = await writer.finish(fsync=True)
    data = b"".join(pieces)
    assert path.read_bytes() == data
    assert sha256 == hashlib.sha256(data).hexdigest()
    assert writer.size == len(data)
    # Pieces 1-4 (1.2 MB) in one hop; 5-7 wait and go with the 3 MB piece; "tail" at finish.
    assert hops == 3


async def test_writeback_is_started_every_stretch_and_the_bytes_stay_right(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    advised: list[tuple[int, int]] = []
    real = os.posix_fadvise

    def spy(fd: int, offset: int, length: int, advice: int) -> None:
        assert advice == os.POSIX_FADV_DONTNEED
        advised.append((offset, length))
        real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", spy)
    data = bytes(range(256)) * 4096 * 10  # 10 MiB
    path = tmp_path / "durable.bin"
    with path.open("wb") as handle:
        writer = HashingWriter(handle, writeback_bytes=3 * 1024 * 1024)
        for start in range(0, len(data), 1024 * 1024):
            await writer.write(data[start:start + 1024 * 1024])
        sha256 = await writer.finish(fsync=True)
    assert advised == [(0, 3 * 2**20), (3 * 2**20, 3 * 2**20), (6 * 2**20, 3 * 2**20)]
    assert path.read_bytes() == data
    assert sha256 == hashlib.sha256(data).hexdigest()
