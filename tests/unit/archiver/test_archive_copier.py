"""The copy use case against in-memory fakes of the provider and storage (no I/O)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import random
import tempfile
import uuid
from collections import defaultdict, deque
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import av
import httpx
import pytest
from PIL import Image
from reelvault_archiver.copier import Failed, Retry, Stored, VideoCopier
from reelvault_archiver.decisions import RetryPolicy
from reelvault_archiver.jobs import ArchiveJob
from reelvault_common.contracts.events import StoredFile, VideoStored
from reelvault_common.providers.openai_videos import ProviderError
from reelvault_common.runtime.settings import StorageSettings
from reelvault_common.storage.interface import (
    BucketNotFound,
    BucketSpec,
    ObjectConflict,
    ObjectInfo,
    StreamLengthMismatch,
    TransientStorageError,
)
from reelvault_common.storage.layout import Buckets, thumbnail_key, video_key

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
BUCKETS = Buckets.from_settings(StorageSettings())
VIDEO = bytes(range(256)) * 5000  # 1.28 MB
THUMB = b"RIFF....WEBP" * 100


# What the fake source's connection reads at once.
READ_SIZE = 64 * 1024

class MemoryStorage:
    """Same rules as the interface: streamed puts, bucket rules, no overwrite."""

    def __init__(self) -> None:
        self.specs: dict[str, BucketSpec] = {}
        self.objects: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.fail_puts: deque[Exception] = deque()
        self.stat_lies: dict[tuple[str, str], ObjectInfo] = {}
        self.largest_chunk = 0
        self.reads: list[tuple[str, str]] = []

    async def ensure_buckets(self, specs: Sequence[BucketSpec]) -> None:
        self.specs.update({spec.name: spec for spec in specs})

    async def put(
        self,
        bucket: str,
        key: str,
        chunks: AsyncIterable[bytes],
        content_type: str,
        *,
        size: int | None = None,
    ) -> StoredFile:
        spec = self.specs.get(bucket)
        if spec is None:
            raise BucketNotFound(f"Bucket not found: {bucket}")
        spec.check_upload(content_type, size)
        parts = []
        async for chunk in chunks:
            self.largest_chunk = max(self.largest_chunk, len(chunk))
            parts.append(chunk)
        if self.fail_puts:
            raise self.fail_puts.popleft()
        data = b"".join(parts)
        if size is not None and len(data) != size:
            raise StreamLengthMismatch(f"the stream had {len(data)} bytes, not {size}")
        spec.check_upload(content_type, len(data))
        existing = self.objects.get((bucket, key))
        if existing is not None and existing[0] != data:
            raise ObjectConflict(f"{bucket}/{key} already holds different bytes")
        self.objects.setdefault((bucket, key), (data, content_type))
        return StoredFile(bucket=bucket, key=key, content_type=content_type, bytes=len(data),
                          sha256=hashlib.sha256(data).hexdigest(),
                          url=await self.public_url(bucket, key))

    async def stat(self, bucket: str, key: str) -> ObjectInfo | None:
        if (bucket, key) in self.stat_lies:
            return self.stat_lies[(bucket, key)]
        found = self.objects.get((bucket, key))
        if found is None:
            return None
        data, content_type = found
        return ObjectInfo(bucket, key, len(data), content_type, hashlib.sha256(data).hexdigest())

    async def read(self, bucket: str, key: str) -> AsyncIterator[bytes]:  # type: ignore[override]
        self.reads.append((bucket, key))
        data = self.objects[(bucket, key)][0]
        for start in range(0, len(data), 64 * 1024):
            yield data[start:start + 64 * 1024]

    async def public_url(self, bucket: str, key: str) -> str | None:
        return f"https://cdn.test/{bucket}/{key}" if self.specs[bucket].public else None

    async def signed_url(self, bucket: str, key: str, expires_in_s: int) -> str:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


@dataclass
class Serve:
    data: bytes
    content_type: str
    cut_after: int | None = None  # stop after this many bytes with a "broke off" error
    content_length: int | None = None  # announce this instead of len(data)


class FakeSource:
    """Answers per (job id, variant): queued ProviderErrors or Serve plans, else the default."""

    def __init__(self, video: bytes = VIDEO, thumbnail: bytes | None = THUMB) -> None:
        self.defaults: dict[str, Serve | ProviderError] = {
            "video": Serve(video, "video/mp4"),
            "thumbnail": Serve(thumbnail, "image/webp") if thumbnail is not None
            else ProviderError("no thumbnail", status=404),
        }
        self.queued: dict[str, deque[Serve | ProviderError]] = defaultdict(deque)
        self.calls: list[tuple[str, str, int | None]] = []

    @contextlib.asynccontextmanager
    async def stream_content(
        self, video_id: str, variant: str = "video", *, chunk_size: int | None = None
    ) -> AsyncIterator[tuple[httpx.Headers, AsyncIterator[bytes]]]:
        self.calls.append((video_id, variant, chunk_size))
        piece = chunk_size or READ_SIZE  # None: as a connection reads it
        plan = self.queued[variant].popleft() if self.queued[variant] else self.defaults[variant]
        if isinstance(plan, ProviderError):
            raise plan
        length = plan.content_length if plan.content_length is not None else len(plan.data)
        headers = httpx.Headers({"content-type": plan.content_type, "content-length": str(length)})

        async def chunks() -> AsyncIterator[bytes]:
            limit = len(plan.data) if plan.cut_after is None else plan.cut_after
            for start in range(0, limit, piece):
                yield plan.data[start:min(start + piece, limit)]
            if plan.cut_after is not None:
                raise ProviderError("download broke off", status=None)

        yield headers, chunks()


def mp4_bytes(width: int, height: int, *, color: tuple[int, int, int], frames: int = 6) -> bytes:
    """A real H.264 MP4 (faststart) of one color."""
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/clip.mp4"
        with av.open(path, mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
            stream = out.add_stream("libx264", rate=4)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for index in range(frames):
                frame = av.VideoFrame.from_image(Image.new("RGB", (width, height), color))
                frame.pts = index
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        with open(path, "rb") as handle:
            return handle.read()


def assert_close(pixel: object, expected: tuple[int, int, int], tolerance: int = 12) -> None:
    assert isinstance(pixel, tuple)
    assert all(abs(int(a) - b) <= tolerance for a, b in zip(pixel, expected, strict=True)), pixel


def make_job(expires_in_s: float | None = 3600) -> ArchiveJob:
    return ArchiveJob(
        video_id=uuid.UUID("0b5c1f1e-8f43-4e2a-9d0e-111111111111"),
        correlation_id="corr-1",
        provider="openai",
        provider_job_id="video_123",
        org="acme",
        requested_at=datetime(2026, 4, 30, 23, 59, tzinfo=UTC),
        expires_at=None if expires_in_s is None else NOW + timedelta(seconds=expires_in_s),
    )


@pytest.fixture
async def storage() -> MemoryStorage:
    store = MemoryStorage()
    await store.ensure_buckets(BUCKETS.all())
    return store


def copier(storage: MemoryStorage, source: FakeSource, **policy: float) -> VideoCopier:
    return VideoCopier(storage, source, BUCKETS, policy=RetryPolicy(**policy),  # type: ignore[arg-type]
                       clock=lambda: NOW, rng=random.Random(3))


VIDEO_KEY = video_key("acme", datetime(2026, 4, 30, tzinfo=UTC), make_job().video_id)
THUMB_KEY = thumbnail_key("acme", datetime(2026, 4, 30, tzinfo=UTC), make_job().video_id)


async def test_copies_video_and_thumbnail_to_deterministic_keys(storage: MemoryStorage) -> None:
    source = FakeSource()
    outcome = await copier(storage, source).archive(make_job())

    assert isinstance(outcome, Stored)
    event = outcome.event
    assert VIDEO_KEY == "acme/2026/04/0b5c1f1e-8f43-4e2a-9d0e-111111111111/video.mp4"
    assert event.video.key == VIDEO_KEY
    assert event.video.bucket == "videos"
    assert event.video.sha256 == hashlib.sha256(VIDEO).hexdigest()
    assert event.video.bytes == len(VIDEO)
    assert event.video.url is None
    assert event.thumbnail is not None
    assert event.thumbnail.key == THUMB_KEY
    assert event.thumbnail.url == f"https://cdn.test/thumbnails/{THUMB_KEY}"  # public bucket
    assert storage.objects[("videos", VIDEO_KEY)][0] == VIDEO
    assert (event.correlation_id, event.org) == ("corr-1", "acme")  # the job's organization
    assert event.provider_job_id == "video_123"
    # Streamed in the pieces the connection read (no re-slicing), never as one body.
    assert {size for _, _, size in source.calls} == {None}
    assert storage.largest_chunk == READ_SIZE


async def test_a_second_run_is_a_no_op_with_the_same_event(storage: MemoryStorage) -> None:
    first = await copier(storage, FakeSource()).archive(make_job())
    second = await copier(storage, FakeSource()).archive(make_job(), attempt=2)
    assert isinstance(first, Stored)
    assert isinstance(second, Stored)
    assert first.event.event_id == second.event.event_id
    assert first.event.model_dump(exclude={"occurred_at"}) == second.event.model_dump(
        exclude={"occurred_at"})


async def test_without_a_provider_thumbnail_a_frame_of_the_stored_video_is_used(
    storage: MemoryStorage,
) -> None:
    video = mp4_bytes(1280, 720, color=(20, 160, 220))
    outcome = await copier(storage, FakeSource(video=video, thumbnail=None)).archive(make_job())
    assert isinstance(outcome, Stored)
    thumbnail = outcome.event.thumbnail
    assert thumbnail is not None
    assert (thumbnail.bucket, thumbnail.key, thumbnail.content_type) == (
        "thumbnails", THUMB_KEY, "image/webp")
    stored = storage.objects[("thumbnails", THUMB_KEY)][0]
    assert thumbnail.sha256 == hashlib.sha256(stored).hexdigest()
    image = Image.open(io.BytesIO(stored))
    assert image.format == "WEBP"
    assert image.size == (640, 360)  # bounded, aspect kept
    assert_close(image.getpixel((320, 180)), (20, 160, 220))
    # Read back from storage (the stored, verified copy), not downloaded again.
    assert storage.reads == [("videos", VIDEO_KEY)]


async def test_a_video_no_frame_can_be_taken_from_is_stored_without_a_thumbnail(
    storage: MemoryStorage,
) -> None:
    outcome = await copier(storage, FakeSource(thumbnail=None)).archive(make_job())  # not an MP4
    assert isinstance(outcome, Stored)
    assert outcome.event.thumbnail is None
    assert outcome.event.video.sha256 == hashlib.sha256(VIDEO).hexdigest()
    assert ("thumbnails", THUMB_KEY) not in storage.objects


async def test_a_thumbnail_server_error_is_retried_in_process_not_by_downloading_again(
    storage: MemoryStorage,
) -> None:
    source = FakeSource()
    source.queued["thumbnail"].append(ProviderError("bad gateway", status=502))
    outcome = await copier(storage, source, base_delay_s=0.01).archive(make_job())
    assert isinstance(outcome, Stored)
    assert outcome.event.thumbnail is not None
    assert storage.objects[("thumbnails", THUMB_KEY)][0] == THUMB
    assert [variant for _, variant, _ in source.calls] == ["video", "thumbnail", "thumbnail"]


async def test_a_thumbnail_failing_for_good_falls_back_to_a_frame(storage: MemoryStorage) -> None:
    source = FakeSource(video=mp4_bytes(720, 1280, color=(200, 40, 40)))
    source.queued["thumbnail"].extend(ProviderError("bad gateway", status=502) for _ in range(3))
    outcome = await copier(storage, source, base_delay_s=0.01).archive(make_job())
    assert isinstance(outcome, Stored)
    assert outcome.event.thumbnail is not None
    assert [variant for _, variant, _ in source.calls] == ["video"] + ["thumbnail"] * 3
    image = Image.open(io.BytesIO(storage.objects[("thumbnails", THUMB_KEY)][0]))
    assert image.size == (360, 640)


@pytest.mark.parametrize(
    "serve",
    [
        Serve(b"<html>not an image</html>", "text/html"),  # refused by the bucket's MIME rule
        ProviderError("forbidden", status=403),  # final refusal: no point retrying
    ],
)
async def test_a_refused_provider_thumbnail_falls_back_to_a_frame(
    storage: MemoryStorage, serve: Serve | ProviderError
) -> None:
    source = FakeSource(video=mp4_bytes(640, 480, color=(10, 200, 10)))
    source.queued["thumbnail"].append(serve)
    outcome = await copier(storage, source).archive(make_job())
    assert isinstance(outcome, Stored)
    assert outcome.event.thumbnail is not None
    assert outcome.event.thumbnail.content_type == "image/webp"
    assert [variant for _, variant, _ in source.calls] == ["video", "thumbnail"]
    assert Image.open(io.BytesIO(storage.objects[("thumbnails", THUMB_KEY)][0])).format == "WEBP"


async def test_a_thumbnail_stored_by_an_earlier_attempt_is_reused(storage: MemoryStorage) -> None:
    first = await copier(storage, FakeSource()).archive(make_job())
    source = FakeSource(thumbnail=b"RIFF....WEBP other bytes")
    again = await copier(storage, source).archive(make_job(), attempt=2)
    assert isinstance(first, Stored) and isinstance(again, Stored)
    assert again.event.thumbnail == first.event.thumbnail
    assert [variant for _, variant, _ in source.calls] == ["video"]


async def test_expired_and_stored_without_thumbnail_gets_a_frame(storage: MemoryStorage) -> None:
    video = mp4_bytes(1280, 720, color=(90, 90, 200))
    first = await copier(storage, FakeSource(video=video)).archive(make_job())
    assert isinstance(first, Stored)
    del storage.objects[("thumbnails", THUMB_KEY)]  # e.g. a crash between the two copies
    source = FakeSource(video=video)
    late = await copier(storage, source).archive(make_job(expires_in_s=-60), attempt=5)
    assert isinstance(late, Stored)
    assert late.event.video == first.event.video
    assert late.event.thumbnail is not None
    assert source.calls == []  # the provider's copy is gone: nothing asked of it
    assert Image.open(io.BytesIO(storage.objects[("thumbnails", THUMB_KEY)][0])).format == "WEBP"


async def test_expired_source_fails_without_touching_provider_or_storage(
    storage: MemoryStorage,
) -> None:
    source = FakeSource()
    outcome = await copier(storage, source).archive(make_job(expires_in_s=-1))
    assert isinstance(outcome, Failed)
    assert outcome.event.code == "source_expired"
    assert (outcome.event.stage, outcome.event.org) == ("archive", "acme")
    assert not outcome.event.retryable
    assert source.calls == []
    assert storage.objects == {}


async def test_expired_but_already_archived_reports_stored(storage: MemoryStorage) -> None:
    first = await copier(storage, FakeSource()).archive(make_job())
    late = await copier(storage, FakeSource()).archive(make_job(expires_in_s=-60), attempt=9)
    assert isinstance(first, Stored)
    assert isinstance(late, Stored)
    assert late.event.event_id == first.event.event_id
    assert late.event.video == first.event.video
    assert late.event.thumbnail == first.event.thumbnail


async def test_body_cut_mid_download_is_retried_and_nothing_stored(storage: MemoryStorage) -> None:
    source = FakeSource()
    source.queued["video"].append(Serve(VIDEO, "video/mp4", cut_after=300_000))
    storage_copier = copier(storage, source)
    outcome = await storage_copier.archive(make_job())
    assert isinstance(outcome, Retry)
    assert "broke off" in outcome.reason
    assert ("videos", VIDEO_KEY) not in storage.objects

    again = await storage_copier.archive(make_job(), attempt=2)
    assert isinstance(again, Stored)
    assert again.event.video.sha256 == hashlib.sha256(VIDEO).hexdigest()


async def test_content_length_mismatch_is_not_reported_stored(storage: MemoryStorage) -> None:
    source = FakeSource()
    source.queued["video"].append(Serve(VIDEO, "video/mp4", content_length=len(VIDEO) + 10))
    outcome = await copier(storage, source, verification_attempts=1).archive(make_job())
    assert isinstance(outcome, Failed)
    assert outcome.event.code == "verification_failed"
    assert "provider announced" in outcome.event.message


async def test_storage_that_lies_about_the_object_fails_verification(
    storage: MemoryStorage,
) -> None:
    storage.stat_lies[("videos", VIDEO_KEY)] = ObjectInfo("videos", VIDEO_KEY, 5, "video/mp4", None)
    outcome = await copier(storage, FakeSource()).archive(make_job(), attempt=1)
    assert isinstance(outcome, Retry)
    assert "verification failed" in outcome.reason


async def test_conflicting_bytes_fail_with_the_storage_message(storage: MemoryStorage) -> None:
    storage.objects[("videos", VIDEO_KEY)] = (b"other bytes", "video/mp4")
    outcome = await copier(storage, FakeSource()).archive(make_job())
    assert isinstance(outcome, Failed)
    assert outcome.event.code == "object_conflict"
    assert outcome.event.message == f"videos/{VIDEO_KEY} already holds different bytes"


async def test_oversize_video_is_refused_before_download_from_content_length(
    storage: MemoryStorage,
) -> None:
    source = FakeSource()
    source.queued["video"].append(Serve(b"x", "video/mp4", content_length=501 * 1024 * 1024))
    outcome = await copier(storage, source).archive(make_job())
    assert isinstance(outcome, Failed)
    assert outcome.event.code == "payload_too_large"


async def test_wrong_media_type_is_refused(storage: MemoryStorage) -> None:
    source = FakeSource()
    source.queued["video"].append(Serve(VIDEO, "text/html"))
    outcome = await copier(storage, source).archive(make_job())
    assert isinstance(outcome, Failed)
    assert outcome.event.code == "mime_type_not_allowed"
    assert "text/html" in outcome.event.message


async def test_transient_storage_error_is_retried(storage: MemoryStorage) -> None:
    storage.fail_puts.append(TransientStorageError("503 from storage"))
    outcome = await copier(storage, FakeSource()).archive(make_job())
    assert isinstance(outcome, Retry)
    assert "503 from storage" in outcome.reason


async def test_not_found_is_retried_then_source_not_found(storage: MemoryStorage) -> None:
    source = FakeSource()
    source.defaults["video"] = ProviderError("Video with id 'video_123' not found.", status=404)
    the_copier = copier(storage, source, not_found_attempts=2)
    assert isinstance(await the_copier.archive(make_job(), attempt=1), Retry)
    final = await the_copier.archive(make_job(), attempt=2)
    assert isinstance(final, Failed)
    assert final.event.code == "source_not_found"
    assert all(variant in ("video", "thumbnail") for _, variant, _ in source.calls)


async def test_unknown_errors_propagate(storage: MemoryStorage) -> None:
    storage.fail_puts.append(RuntimeError("bug"))
    with pytest.raises(RuntimeError, match="bug"):
        await copier(storage, FakeSource()).archive(make_job())


def test_stored_event_id_depends_on_the_video_only() -> None:
    video = StoredFile(bucket="videos", key="k", content_type="video/mp4", bytes=1, sha256="a" * 64)
    one = VideoStored.new(video_id=make_job().video_id, org="acme", correlation_id="x",
                          video=video, thumbnail=None, provider_job_id="p")
    two = VideoStored.new(video_id=make_job().video_id, org="acme", correlation_id="y",
                          video=video, thumbnail=None, provider_job_id="p")
    assert one.event_id == two.event_id
