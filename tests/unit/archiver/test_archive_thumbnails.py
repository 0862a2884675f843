"""The seekable file over a storage stream that PyAV reads thumbnails from (no storage: an
in-memory chunk stream), and the frame -> WebP step."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import anyio.to_thread
import pytest
from PIL import Image
from reelvault_archiver.thumbnails import (
    HEAD_BYTES,
    FrameExtractionFailed,
    StreamingObjectFile,
    ThumbnailSpec,
    extract_thumbnail,
    first_keyframe_webp,
)

CHUNK = 256 * 1024
DATA = bytes(i % 251 for i in range(4 * 1024 * 1024 + 123))


class Chunks:
    """Opens a fresh chunk stream over ``data`` each time; counts opens and bytes served."""

    def __init__(self, data: bytes = DATA, *, cut_at: int | None = None) -> None:
        self.data = data
        self.cut_at = cut_at
        self.opens = 0
        self.served = 0
        self.closed = 0

    def open(self) -> AsyncIterator[bytes]:
        self.opens += 1
        return self._stream()

    async def _stream(self) -> AsyncIterator[bytes]:
        end = len(self.data) if self.cut_at is None else self.cut_at
        try:
            for start in range(0, end, CHUNK):
                piece = self.data[start:min(start + CHUNK, end)]
                self.served += len(piece)
                yield piece
        finally:
            self.closed += 1


def streaming_file(chunks: Chunks, **limits: int) -> StreamingObjectFile:
    return StreamingObjectFile(
        chunks.open,
        len(chunks.data),
        max_bytes_read=limits.get("max_bytes_read", 10 * len(chunks.data)),
        max_reopens=limits.get("max_reopens", 8),
    )


async def in_thread(file: StreamingObjectFile, steps: list[tuple[str, int]]) -> list[bytes]:
    """Run ("seek", pos) / ("read", n) steps in a worker thread, as PyAV does."""

    def run() -> list[bytes]:
        out = []
        for op, value in steps:
            if op == "seek":
                file.seek(value)
            elif op == "seek_end":
                file.seek(value, io.SEEK_END)
            else:
                out.append(file.read(value))
        return out

    try:
        return await anyio.to_thread.run_sync(run)
    finally:
        await file.aclose()


async def test_sequential_reads_stream_once_and_match_the_data() -> None:
    chunks = Chunks()
    file = streaming_file(chunks)

    def read_all() -> bytes:
        parts = []
        while piece := file.read(100_000):  # raw reads may be short; b"" is the end
            assert len(piece) <= 100_000
            parts.append(piece)
        return b"".join(parts)

    data = await anyio.to_thread.run_sync(read_all)
    await file.aclose()
    assert data == DATA
    assert chunks.opens == 1
    assert chunks.served == len(DATA)


async def test_forward_seeks_skip_and_seeks_back_into_the_head_are_free() -> None:
    chunks = Chunks()
    file = streaming_file(chunks)
    tail_at = len(DATA) - 50
    got = await in_thread(file, [
        ("read", 32), ("seek_end", -50), ("read", 50), ("seek", 10), ("read", 20),
        ("seek", HEAD_BYTES - 5), ("read", 5),
    ])
    assert got == [DATA[:32], DATA[tail_at:], DATA[10:30], DATA[HEAD_BYTES - 5:HEAD_BYTES]]
    assert chunks.opens == 1  # the start of the file was kept


async def test_a_seek_back_past_the_head_reopens_the_stream() -> None:
    chunks = Chunks()
    file = streaming_file(chunks)
    middle = 2 * 1024 * 1024 + 7
    got = await in_thread(file, [
        ("seek", len(DATA) - 10), ("read", 10), ("seek", middle), ("read", 100),
    ])
    assert got == [DATA[-10:], DATA[middle:middle + 100]]
    assert chunks.opens == 2
    assert chunks.closed == 2  # the abandoned stream and the last one are both closed
    assert file.reopens == 1


async def test_reads_are_bounded() -> None:
    chunks = Chunks()
    file = streaming_file(chunks, max_bytes_read=len(DATA) + CHUNK, max_reopens=8)
    with pytest.raises(FrameExtractionFailed, match="without finding a frame"):
        await in_thread(file, [("seek", len(DATA) - 1), ("read", 1), ("seek", HEAD_BYTES + 1),
                               ("read", 1), ("seek", len(DATA) - 1), ("read", 1)])
    reopening = Chunks()
    file = streaming_file(reopening, max_reopens=2)
    steps = [("seek", HEAD_BYTES * 3), ("read", 1), ("seek", HEAD_BYTES * 2), ("read", 1)] * 3
    with pytest.raises(FrameExtractionFailed, match="re-reads"):
        await in_thread(file, steps)


async def test_a_stream_shorter_than_announced_is_an_error() -> None:
    chunks = Chunks(cut_at=2 * 1024 * 1024)
    file = streaming_file(chunks)
    with pytest.raises(FrameExtractionFailed, match="ended at"):
        await in_thread(file, [("seek", 3 * 1024 * 1024), ("read", 10)])


async def test_bytes_that_are_no_video_fail_clearly() -> None:
    junk = Chunks(b"<html>" + bytes(200_000))
    with pytest.raises(FrameExtractionFailed, match="cannot be decoded"):
        await extract_thumbnail(junk.open, len(junk.data), ThumbnailSpec())
    assert junk.closed >= 1


def test_huge_frames_are_refused_before_decoding(tmp_path: object) -> None:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="matroska") as out:
        stream = out.add_stream("mjpeg", rate=1)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuvj420p"
        frame = av.VideoFrame.from_image(Image.new("RGB", (320, 240), (1, 2, 3)))
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    buffer.seek(0)
    with pytest.raises(FrameExtractionFailed, match="too large"):
        first_keyframe_webp(buffer, ThumbnailSpec(max_pixels=320 * 239))  # type: ignore[arg-type]
    buffer.seek(0)
    webp = first_keyframe_webp(buffer, ThumbnailSpec(max_side=100))  # type: ignore[arg-type]
    assert Image.open(io.BytesIO(webp)).size == (100, 75)
