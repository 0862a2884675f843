"""A put whose size is known streams: TUS straight to its key while the source is still
arriving, no copy afterwards (the server creates the object only with the upload's last byte).
Nothing is visible at the key before it is complete, and no failure leaves an upload behind."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from reelvault_common.storage import (
    ObjectConflict,
    PayloadTooLarge,
    StreamLengthMismatch,
    TransientStorageError,
)
from reelvault_common.storage.layout import MB, Buckets
from reelvault_common.storage.supabase import SupabaseStorage
from reelvault_common.storage.tus import decode_metadata

from tests.support.byte_streams import chunks, pattern, read_sha256
from tests.support.supabase_storage import SupabaseStorageServer

pytestmark = pytest.mark.integration

KEY = "org-1/2026/11/9b2e/video.mp4"
SIZE = 20 * MB + 4321  # three full 6 MB pieces and a tail
STAGING = r"^/upload/resumable"


@pytest.fixture
async def store(supabase_storage: SupabaseStorage, buckets: Buckets) -> SupabaseStorage:
    await supabase_storage.ensure_buckets(buckets.all())
    return supabase_storage


def staging_objects(server: SupabaseStorageServer) -> list[str]:
    return [name for (_, name) in server.state.objects if name.startswith("_staging/")]


async def first_patch_recorded(server: SupabaseStorageServer, timeout_s: float = 20) -> None:
    async with asyncio.timeout(timeout_s):
        while not server.patches:  # noqa: ASYNC110 (the server's record, not an event)
            await asyncio.sleep(0.005)


def assert_nothing_left(server: SupabaseStorageServer) -> None:
    assert staging_objects(server) == []
    assert [u for u in server.state.uploads.values() if not u.completed] == []


async def test_a_known_size_streams_by_tus_straight_to_its_key(
    store: SupabaseStorage, storage_server: SupabaseStorageServer
) -> None:
    data = pattern(SIZE, seed=11)
    stored = await store.put("videos", KEY, chunks(data, MB), "video/mp4", size=SIZE)

    sha = hashlib.sha256(data).hexdigest()
    assert (stored.bytes, stored.sha256) == (SIZE, sha)
    assert await read_sha256(store, "videos", KEY) == sha
    info = await store.stat("videos", KEY)
    assert info is not None
    # The sha256 is not known when a TUS upload starts, so the object does not carry it.
    assert (info.size, info.sha256, info.content_type) == (SIZE, None, "video/mp4")
    # One TUS upload, to the key itself, in exact 6 MB pieces; no copy, no standard upload.
    creates = storage_server.state.requests_to("POST", f"{STAGING}$")
    assert len(creates) == 1
    metadata = decode_metadata(creates[0].headers["upload-metadata"])
    assert metadata["objectName"] == KEY
    assert "metadata" not in metadata
    assert [p.offset for p in storage_server.patches] == [i * 6 * MB for i in range(4)]
    assert not storage_server.state.requests_to("POST", r"^/object/copy$")
    assert not storage_server.state.requests_to("POST", r"^/object/videos/")
    assert_nothing_left(storage_server)


async def test_nothing_is_at_the_key_until_the_last_byte(
    store: SupabaseStorage, storage_server: SupabaseStorageServer
) -> None:
    data = pattern(SIZE, seed=10)
    release = asyncio.Event()
    seen_midway: list[object] = []

    async def source() -> AsyncIterator[bytes]:
        async for chunk in chunks(data, MB):
            yield chunk
            if not seen_midway and storage_server.state.uploads:  # the upload was created
                seen_midway.append(await store.stat("videos", KEY))
                release.set()

    await store.put("videos", KEY, source(), "video/mp4", size=SIZE)
    assert release.is_set() and seen_midway == [None]
    assert await store.stat("videos", KEY) is not None


async def test_the_download_keeps_going_while_a_piece_is_sent_and_stays_bounded(
    store: SupabaseStorage, storage_server: SupabaseStorageServer
) -> None:
    data = pattern(SIZE, seed=12)
    yielded = 0
    seen_when_first_patch_answered: list[int] = []

    async def source() -> AsyncIterator[bytes]:
        nonlocal yielded
        async for chunk in chunks(data, MB):
            yielded += len(chunk)
            yield chunk

    storage_server.faults.delay(0.6, count=1, path=r"^/upload/resumable/.+")  # holds PATCH #1

    async def watch() -> None:
        await first_patch_recorded(storage_server)
        seen_when_first_patch_answered.append(yielded)

    watcher = asyncio.create_task(watch())
    await store.put("videos", KEY, source(), "video/mp4", size=SIZE)
    await watcher
    read_ahead = seen_when_first_patch_answered[0]
    # While PATCH #1 (bytes 0-6 MB) was held, the next piece was read and the source went on...
    assert read_ahead >= 12 * MB
    # ... but only so far: one piece waiting, one being cut, the prefetch queue (8 x 1 MB).
    assert read_ahead <= 6 * MB + 6 * MB + 6 * MB + 8 * MB + MB


async def test_a_patch_cut_in_the_middle_resumes_within_the_piece_in_hand(
    store: SupabaseStorage, storage_server: SupabaseStorageServer
) -> None:
    data = pattern(SIZE, seed=13)
    storage_server.faults.cut_patch(after_bytes=2 * MB + 99, skip=1)  # the 2nd PATCH drops
    stored = await store.put("videos", KEY, chunks(data, MB), "video/mp4", size=SIZE)

    patches = storage_server.patches
    assert [p.cut for p in patches] == [False, True, False, False, False]
    assert patches[2].offset == 6 * MB + 2 * MB + 99  # exactly where the server stopped
    assert sum(p.received for p in patches) == SIZE  # no byte twice
    assert len(storage_server.state.requests_to("HEAD", f"{STAGING}/")) == 1
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert await read_sha256(store, "videos", KEY) == stored.sha256
    assert_nothing_left(storage_server)


async def test_a_lost_patch_answer_moves_on_to_the_next_piece(
    store: SupabaseStorage, storage_server: SupabaseStorageServer
) -> None:
    data = pattern(SIZE, seed=14)
    storage_server.faults.fail(
        1, method="PATCH", path=r"^/upload/resumable/", status=502, when="after"
    )
    stored = await store.put("videos", KEY, chunks(data, MB), "video/mp4", size=SIZE)
    assert [p.offset for p in storage_server.patches] == [i * 6 * MB for i in range(4)]
    assert stored.sha256 == await read_sha256(store, "videos", KEY)


@pytest.mark.parametrize("actual", [SIZE - 1000, SIZE + 1000])
async def test_a_source_of_another_length_stores_nothing(
    store: SupabaseStorage, storage_server: SupabaseStorageServer, actual: int
) -> None:
    with pytest.raises(StreamLengthMismatch) as caught:
        await store.put("videos", KEY, chunks(pattern(actual), MB), "video/mp4", size=SIZE)
    assert "announced" in caught.value.message
    assert await store.stat("videos", KEY) is None
    assert_nothing_left(storage_server)
    # The unfinished upload was terminated (TUS DELETE), not left to expire.
    assert storage_server.state.requests_to("DELETE", f"{STAGING}/")


async def test_a_source_that_breaks_midway_stores_nothing(
    store: SupabaseStorage, storage_server: SupabaseStorageServer
) -> None:
    class Broken(Exception):
        pass

    async def source() -> AsyncIterator[bytes]:
        async for chunk in chunks(pattern(13 * MB), MB):  # of the announced 20 MB
            yield chunk
        await first_patch_recorded(storage_server)  # the server holds part of the upload
        raise Broken("connection reset by the provider")

    with pytest.raises(Broken):
        await store.put("videos", KEY, source(), "video/mp4", size=SIZE)
    assert await store.stat("videos", KEY) is None
    assert_nothing_left(storage_server)


async def test_an_upload_the_server_forgot_is_transient_for_the_caller(
    store: SupabaseStorage, storage_server: SupabaseStorageServer
) -> None:
    storage_server.faults.fail(
        1, method="PATCH", path=r"^/upload/resumable/", status=404,
        body="The file for this url was not found\n",
    )
    with pytest.raises(TransientStorageError) as caught:
        await store.put("videos", KEY, chunks(pattern(SIZE), MB), "video/mp4", size=SIZE)
    assert "start over" in caught.value.message
    assert await store.stat("videos", KEY) is None
    assert_nothing_left(storage_server)


async def test_the_same_bytes_again_are_a_no_op_and_other_bytes_a_conflict(
    store: SupabaseStorage, storage_server: SupabaseStorageServer
) -> None:
    data = pattern(SIZE, seed=15)
    first = await store.put("videos", KEY, chunks(data, MB), "video/mp4", size=SIZE)
    again = await store.put("videos", KEY, chunks(data, MB), "video/mp4", size=SIZE)
    assert again == first
    with pytest.raises(ObjectConflict) as caught:
        await store.put("videos", KEY, chunks(pattern(SIZE, seed=16), MB), "video/mp4", size=SIZE)
    assert "already holds different bytes" in caught.value.message
    assert await read_sha256(store, "videos", KEY) == first.sha256
    # The later puts found the object first and uploaded nothing.
    assert len(storage_server.state.requests_to("POST", f"{STAGING}$")) == 1
    assert_nothing_left(storage_server)


async def test_a_writer_that_finished_first_is_never_reported_as_ours(
    store: SupabaseStorage, storage_server: SupabaseStorageServer
) -> None:
    """Another writer's object appears while ours is uploading: the server refuses our next
    PATCH (it checks the key at every request), the put is transient, and a retry settles it
    against what is stored."""
    data, other = pattern(SIZE, seed=17), pattern(SIZE, seed=18)

    async def source() -> AsyncIterator[bytes]:
        async for chunk in chunks(data, MB):
            yield chunk
            if storage_server.state.uploads and not storage_server.state.objects:
                await store.put("videos", KEY, chunks(other, MB), "video/mp4")  # spooled

    with pytest.raises(TransientStorageError):
        await store.put("videos", KEY, source(), "video/mp4", size=SIZE)
    assert await read_sha256(store, "videos", KEY) == hashlib.sha256(other).hexdigest()
    with pytest.raises(ObjectConflict):
        await store.put("videos", KEY, chunks(data, MB), "video/mp4", size=SIZE)
    assert_nothing_left(storage_server)


async def test_an_oversize_announcement_is_refused_before_any_byte(
    store: SupabaseStorage, storage_server: SupabaseStorageServer
) -> None:
    limit = 500 * MB
    read = 0

    async def source() -> AsyncIterator[bytes]:
        nonlocal read
        read += 1
        yield b"x"

    with pytest.raises(PayloadTooLarge):
        await store.put("videos", KEY, source(), "video/mp4", size=limit + 1)
    assert read == 0
    assert not storage_server.state.requests_to("POST", f"{STAGING}$")


async def test_stale_staging_objects_are_swept_young_ones_kept(
    store: SupabaseStorage, storage_server: SupabaseStorageServer
) -> None:
    # A crash between upload and copy leaves a staging object; make one the same way.
    await store.put("videos", "_staging/leftover-video.mp4", chunks(b"old"), "video/mp4")
    assert await store.sweep_staging("videos") == 0  # young: may be an upload in progress
    later = datetime.now(UTC) + timedelta(days=2)
    assert await store.sweep_staging("videos", now=later) == 1
    assert staging_objects(storage_server) == []
