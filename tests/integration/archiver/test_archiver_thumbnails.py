"""Thumbnails extracted from the stored video when the provider has none, against the real
storage backends (filesystem, and Supabase through the Supabase-Storage test server): the video
is read back as a stream, a faststart MP4 costs only its first bytes, a ``moov`` at the end
costs one pass, memory stays flat, and the WebP lands in the public thumbnails bucket."""

from __future__ import annotations

import contextlib
import hashlib
import io
import struct
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import httpx
import pytest
from PIL import Image
from reelvault_archiver.copier import Stored, VideoCopier
from reelvault_archiver.decisions import RetryPolicy
from reelvault_archiver.jobs import ArchiveJob
from reelvault_archiver.thumbnails import ThumbnailSpec, extract_thumbnail
from reelvault_common.contracts.events import StoredFile
from reelvault_common.providers.openai_videos import ProviderError
from reelvault_common.runtime.settings import StorageSettings
from reelvault_common.storage.filesystem import FilesystemStorage
from reelvault_common.storage.interface import ObjectStorage
from reelvault_common.storage.layout import Buckets, thumbnail_key
from reelvault_common.storage.retry import RetryPolicy as StorageRetry
from reelvault_common.storage.supabase import SupabaseStorage, SupabaseStorageOptions

from tests.support.supabase_storage import SupabaseStorageServer, running_server

pytestmark = pytest.mark.integration

MB = 1024 * 1024
BUCKETS = Buckets.from_settings(StorageSettings())


def encode_mp4(path: Path, width: int, height: int, color: tuple[int, int, int],
               *, faststart: bool) -> None:
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), mode="w", format="mp4", options=options) as out:
        stream = out.add_stream("libx264", rate=4)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(8):
            frame = av.VideoFrame.from_image(Image.new("RGB", (width, height), color))
            frame.pts = index
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def top_level_boxes(data: bytes) -> list[tuple[str, int, int]]:
    """(type, offset, size) of each top-level MP4 box."""
    boxes, offset = [], 0
    while offset < len(data):
        size, kind = struct.unpack(">I4s", data[offset:offset + 8])
        boxes.append((kind.decode(), offset, size))
        offset += size
    return boxes


def padded_mp4(path: Path, *, faststart: bool, pad: int) -> bytes:
    """A real MP4 with a ``free`` box of ``pad`` bytes: after everything (faststart), or
    between ``mdat`` and ``moov`` (moov at the end; no chunk offset moves)."""
    encode_mp4(path, 1280, 720, (30, 140, 210), faststart=faststart)
    data = path.read_bytes()
    free = struct.pack(">I4s", pad, b"free") + bytes(pad - 8)
    if faststart:
        return data + free
    kinds = [kind for kind, _, _ in top_level_boxes(data)]
    assert kinds.index("mdat") < kinds.index("moov"), kinds
    moov_at = next(offset for kind, offset, _ in top_level_boxes(data) if kind == "moov")
    return data[:moov_at] + free + data[moov_at:]


class OneVideoSource:
    """A provider with a video and no thumbnail (404 on ``variant=thumbnail``)."""

    def __init__(self, video: bytes) -> None:
        self.video = video

    @contextlib.asynccontextmanager
    async def stream_content(
        self, video_id: str, variant: str = "video", *, chunk_size: int = MB
    ) -> AsyncIterator[tuple[httpx.Headers, AsyncIterator[bytes]]]:
        if variant != "video":
            raise ProviderError("Video thumbnail not found", status=404, code="not_found")
        headers = httpx.Headers({"content-type": "video/mp4",
                                 "content-length": str(len(self.video))})

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(self.video), chunk_size):
                yield self.video[start:start + chunk_size]

        yield headers, chunks()


class CountingReads:
    """Wraps a storage and counts what ``read`` streams (and how often it is opened)."""

    def __init__(self, inner: ObjectStorage) -> None:
        self.inner = inner
        self.opened = 0
        self.bytes_read = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def read(self, bucket: str, key: str) -> AsyncIterator[bytes]:
        self.opened += 1
        async for chunk in self.inner.read(bucket, key):
            self.bytes_read += len(chunk)
            yield chunk


@pytest.fixture(scope="module")
def supabase_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SupabaseStorageServer]:
    with running_server(tmp_path_factory.mktemp("supabase-thumbnails")) as server:
        yield server


@pytest.fixture(params=["filesystem", "supabase"])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, supabase_server: SupabaseStorageServer
) -> AsyncIterator[ObjectStorage]:
    store: ObjectStorage
    if request.param == "filesystem":
        store = FilesystemStorage(tmp_path / "storage", "http://127.0.0.1:8000", b"key")
    else:
        supabase_server.reset()
        store = SupabaseStorage.for_storage_server(
            supabase_server.url, supabase_server.service_key(),
            SupabaseStorageOptions(spool_dir=tmp_path / "spool",
                                   retry=StorageRetry(attempts=3, base_delay_s=0.01)),
        )
    await store.ensure_buckets(BUCKETS.all())
    yield store
    await store.aclose()


def job() -> ArchiveJob:
    return ArchiveJob(
        video_id=uuid.uuid4(), correlation_id="thumbs", provider="openai",
        provider_job_id="video_thumbs", org="acme",
        requested_at=datetime(2026, 6, 2, tzinfo=UTC),
        expires_at=datetime.now(UTC) + timedelta(hours=1),
    )


async def read_all(storage: ObjectStorage, bucket: str, key: str) -> bytes:
    return b"".join([chunk async for chunk in storage.read(bucket, key)])


@pytest.mark.parametrize("faststart", [True, False], ids=["faststart", "moov-at-end"])
async def test_a_frame_of_the_stored_video_becomes_the_thumbnail(
    backend: ObjectStorage, tmp_path: Path, faststart: bool
) -> None:
    video = padded_mp4(tmp_path / "clip.mp4", faststart=faststart, pad=24 * MB)
    counting = CountingReads(backend)
    copier = VideoCopier(counting, OneVideoSource(video), BUCKETS,  # type: ignore[arg-type]
                         policy=RetryPolicy(base_delay_s=0.01))
    the_job = job()
    outcome = await copier.archive(the_job)

    assert isinstance(outcome, Stored), outcome
    assert outcome.event.video.sha256 == hashlib.sha256(video).hexdigest()
    thumbnail = outcome.event.thumbnail
    assert thumbnail is not None
    assert thumbnail.bucket == "thumbnails"
    assert thumbnail.key == thumbnail_key("acme", the_job.requested_at, the_job.video_id)
    assert thumbnail.url is not None  # the thumbnails bucket is public
    stored = await read_all(backend, "thumbnails", thumbnail.key)
    assert hashlib.sha256(stored).hexdigest() == thumbnail.sha256
    image = Image.open(io.BytesIO(stored))
    assert (image.format, image.size) == ("WEBP", (640, 360))
    red, green, blue = image.convert("RGB").getpixel((320, 180))  # type: ignore[misc]
    assert abs(red - 30) < 16 and abs(green - 140) < 16 and abs(blue - 210) < 16
    info = await backend.stat("thumbnails", thumbnail.key)
    assert info is not None and info.content_type == "image/webp"

    if faststart:
        # Only the head of a faststart file is read (moov first, then the first keyframe).
        assert counting.bytes_read < 4 * MB, counting.bytes_read
    else:
        # moov at the end: one pass to find it; going back to the first frame is served from
        # the kept head of the file (or costs one re-open), never a pass per seek.
        assert len(video) <= counting.bytes_read < 2 * len(video), counting.bytes_read
        assert counting.opened <= 2


def reset_peak_rss() -> None:
    """Reset VmHWM to the current RSS; without it the check below only gets stricter."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _status(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(name)


async def store_large_moov_at_end_video(
    storage: FilesystemStorage, tmp_path: Path, pad: int
) -> StoredFile:
    """Write the padded MP4 to disk and store it streaming (never whole in memory here)."""
    encode_mp4(tmp_path / "small.mp4", 1280, 720, (30, 140, 210), faststart=False)
    data = (tmp_path / "small.mp4").read_bytes()
    moov_at = next(offset for kind, offset, _ in top_level_boxes(data) if kind == "moov")
    path = tmp_path / "big.mp4"
    with path.open("wb") as out:
        out.write(data[:moov_at])
        out.write(struct.pack(">I4s", pad, b"free"))
        zeros, remaining = bytes(MB), pad - 8
        while remaining:
            out.write(zeros[: min(MB, remaining)])
            remaining -= min(MB, remaining)
        out.write(data[moov_at:])

    async def chunks() -> AsyncIterator[bytes]:
        with path.open("rb") as handle:
            while block := handle.read(MB):
                yield block

    stored = await storage.put("videos", "acme/big/video.mp4", chunks(), "video/mp4")
    path.unlink()
    return stored


async def test_memory_extracting_from_a_large_moov_at_end_video_stays_flat(
    tmp_path: Path,
) -> None:
    storage = FilesystemStorage(tmp_path / "storage", "http://127.0.0.1:8000", b"key")
    await storage.ensure_buckets(BUCKETS.all())
    video = await store_large_moov_at_end_video(storage, tmp_path, 160 * MB)
    counting = CountingReads(storage)

    def open_stream() -> AsyncIterator[bytes]:
        return counting.read(video.bucket, video.key)

    # Warm-up: imports, codec and thread-pool setup.
    await extract_thumbnail(open_stream, video.bytes, ThumbnailSpec())
    counting.bytes_read = 0
    before = _status("VmRSS")
    reset_peak_rss()
    webp = await extract_thumbnail(open_stream, video.bytes, ThumbnailSpec())
    growth = _status("VmHWM") - before

    assert Image.open(io.BytesIO(webp)).size == (640, 360)
    assert counting.bytes_read >= video.bytes  # the whole file went past...
    assert growth < 32 * MB, f"...but peak RSS grew {growth / MB:.1f} MB"  # ...not into memory
