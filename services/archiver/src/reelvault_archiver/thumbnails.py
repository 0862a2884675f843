"""A thumbnail when the provider has none: the first keyframe of the STORED video, as WebP.

The video is read back from storage as a stream, never whole in memory: PyAV (libavformat)
runs in a worker thread on ``StreamingObjectFile``, a read-only seekable file whose reads pull
chunks from ``storage.read`` on the event loop. A forward seek skips bytes, a backward seek
re-opens the stream (the first MiB is kept, so probing's seeks back to the start are free).
A faststart MP4 (``moov`` first, as the simulator and most providers write them) costs the
first few MB; a ``moov`` at the end costs one pass over the file. Reads are bounded
(``max_read_factor`` x the size, ``max_reopens``), so a pathological file cannot loop forever.
"""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import anyio
import anyio.from_thread
import anyio.to_thread

log = logging.getLogger(__name__)

HEAD_BYTES = 1024 * 1024
THUMBNAIL_CONTENT_TYPE = "image/webp"


class FrameExtractionFailed(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ThumbnailSpec:
    """What an extracted thumbnail looks like: at most ``max_side`` px on its longer side."""

    max_side: int = 640
    webp_quality: int = 80
    # Refuse to decode frames larger than this (a 16k x 16k frame alone is 768 MB of RGB).
    max_pixels: int = 4096 * 4096
    max_read_factor: float = 3.0
    max_reopens: int = 32


class StreamingObjectFile(io.RawIOBase):
    """A seekable, read-only file over an async chunk stream, used from a worker thread that
    anyio started (``anyio.from_thread.run`` hops back to the event loop for each chunk)."""

    def __init__(
        self,
        open_stream: Callable[[], AsyncIterator[bytes]],
        size: int,
        *,
        max_bytes_read: int,
        max_reopens: int,
    ) -> None:
        super().__init__()
        self._open_stream = open_stream
        self._size = size
        self._max_bytes_read = max_bytes_read
        self._max_reopens = max_reopens
        self._stream: AsyncIterator[bytes] | None = None
        self._stream_pos = 0  # offset just past the last chunk taken from the stream
        self._chunk = b""  # that chunk, starting at ``_stream_pos - len(_chunk)``
        self._head = bytearray()  # the first HEAD_BYTES, kept for seeks back to the start
        self._pos = 0
        self.bytes_read = 0
        self.reopens = 0

    # --- io.RawIOBase ---------------------------------------------------------------------
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        elif whence == io.SEEK_END:
            target = self._size + offset
        else:
            raise OSError(f"unsupported whence {whence}")
        if target < 0:
            raise OSError("negative seek position")
        self._pos = target
        return target

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        if self._pos >= self._size:
            return b""
        if size < 0:
            size = self._size - self._pos
        data = self._serve(self._pos, size)
        self._pos += len(data)
        return data

    # --- where the bytes come from -----------------------------------------------------------
    def _serve(self, pos: int, size: int) -> bytes:
        head = len(self._head)
        if pos < head and (pos + size <= head or head == HEAD_BYTES):
            return bytes(self._head[pos : pos + size])  # may be short: fine for a raw read
        chunk_start = self._stream_pos - len(self._chunk)
        if not chunk_start <= pos < self._stream_pos:
            self._position_stream(pos)
            chunk_start = self._stream_pos - len(self._chunk)
        offset = pos - chunk_start
        return self._chunk[offset : offset + size]

    def _position_stream(self, pos: int) -> None:
        """Make ``_chunk`` the chunk holding ``pos`` (re-opening the stream to go back)."""
        if self._stream is None or pos < self._stream_pos - len(self._chunk):
            self._reopen()
        while self._stream_pos <= pos:
            if not self._next_chunk():
                raise FrameExtractionFailed(
                    f"the stored object ended at {self._stream_pos} bytes, "
                    f"{self._size} were expected"
                )

    def _reopen(self) -> None:
        if self._stream is not None:
            self.reopens += 1
            if self.reopens > self._max_reopens:
                raise FrameExtractionFailed(f"gave up after {self.reopens} re-reads of the video")
            anyio.from_thread.run(self._close_stream)
        self._stream = self._open_stream()
        self._stream_pos = 0
        self._chunk = b""

    def _next_chunk(self) -> bool:
        assert self._stream is not None
        chunk = anyio.from_thread.run(_next_or_empty, self._stream)
        if not chunk:
            return False
        self.bytes_read += len(chunk)
        if self.bytes_read > self._max_bytes_read:
            raise FrameExtractionFailed(
                f"read {self.bytes_read} bytes of a {self._size}-byte video without finding a frame"
            )
        if self._stream_pos < HEAD_BYTES and len(self._head) == self._stream_pos:
            self._head += chunk[: HEAD_BYTES - self._stream_pos]
        self._stream_pos += len(chunk)
        self._chunk = chunk
        return True

    async def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()

    async def aclose(self) -> None:
        """Release the storage stream (call on the event loop once the thread is done)."""
        await self._close_stream()


async def _next_or_empty(stream: AsyncIterator[bytes]) -> bytes:
    try:
        return await stream.__anext__()
    except StopAsyncIteration:
        return b""


def first_keyframe_webp(file: io.RawIOBase, spec: ThumbnailSpec) -> bytes:
    """Decode the first keyframe of the video in ``file`` and encode it as a WebP thumbnail.
    Blocking (PyAV, Pillow): run it in a worker thread."""
    import av

    try:
        with av.open(file, mode="r") as container:
            if not container.streams.video:
                raise FrameExtractionFailed("the stored file has no video stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            if width * height > spec.max_pixels:
                raise FrameExtractionFailed(f"frames of {width}x{height} are too large to decode")
            stream.codec_context.skip_frame = "NONKEY"
            image = None
            for frame in container.decode(stream):
                image = frame.to_image()  # type: ignore[no-untyped-call]  # PyAV is untyped here
                break
    except av.FFmpegError as exc:
        raise FrameExtractionFailed(f"the stored video cannot be decoded: {exc}") from None
    if image is None:
        raise FrameExtractionFailed("the stored video has no decodable keyframe")
    image.thumbnail((spec.max_side, spec.max_side))
    out = io.BytesIO()
    image.convert("RGB").save(out, format="WEBP", quality=spec.webp_quality)
    return out.getvalue()


async def extract_thumbnail(
    open_stream: Callable[[], AsyncIterator[bytes]], size: int, spec: ThumbnailSpec
) -> bytes:
    """The WebP thumbnail of the video that ``open_stream()`` streams (``size`` bytes)."""
    file = StreamingObjectFile(
        open_stream,
        size,
        max_bytes_read=int(max(size * spec.max_read_factor, size + 64 * HEAD_BYTES)),
        max_reopens=spec.max_reopens,
    )
    try:
        webp = await anyio.to_thread.run_sync(first_keyframe_webp, file, spec)
    finally:
        await file.aclose()
    log.info(
        "extracted a %d-byte thumbnail after reading %d of %d bytes (%d re-reads)",
        len(webp), file.bytes_read, size, file.reopens,
    )
    return webp
