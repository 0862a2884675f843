"""A put whose size is known streams straight to its key while the source is still arriving, as
one standard upload (up to ``standard_upload_max_bytes``) or by TUS above it, no copy afterwards
(the server creates the object only with the upload's last byte). Nothing is visible at the key
before it is complete, and no failure leaves an upload behind. Tests about both ways run once per
transport."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from reelvault_common.storage import (
    ObjectConflict,
    PayloadTooLarge,
    StreamLengthMismatch,
    TransientStorageError,
)
from reelvault_common.storage.layout import MB, Buckets
from reelvault_common.storage.supabase import SupabaseStorage, SupabaseStorageOptions
from reelvault_common.storage.tus import decode_metadata

from tests.support.byte_streams import chunks, pattern, read_sha256
from tests.support.supabase_storage import SupabaseStorageServer

pytestmark = pytest.mark.integration

KEY = "org-1/2026/11/9b2e/video.mp4"
SIZE = 20 * MB + 4321  # three full 6 MB pieces and a tail
STAGING = r"^/upload/resumable"
STANDARD_POST = r"^/object/videos/"


async def opened(
    server: SupabaseStorageServer, options: SupabaseStorageOptions, buckets: Buckets
) -> AsyncIterator[SupabaseStorage]:
    store = SupabaseStorage.for_storage_server(server.url, server.service_key(), options)
    await store.ensure_buckets(buckets.all())
    yield store
    await store.aclose()


@pytest.fixture(params=["standard", "tus"])
async def store(
    request: pytest.FixtureRequest,
    storage_server: SupabaseStorageServer,
    storage_options: SupabaseStorageOptions,
    buckets: Buckets,
) -> AsyncIterator[SupabaseStorage]:
    """The backend streaming by one standard upload, or by TUS (a lower standard maximum)."""
    limit = storage_options.standard_upload_max_bytes if request.param == "standard" else 0
    options = dataclasses.replace(storage_options, standard_upload_max_bytes=limit)
    async for store in opened(storage_server, options, buckets):
        yield store


@pytest.fixture
async def tus_store(
    storage_server: SupabaseStorageServer, storage_options: SupabaseStorageOptions, buckets: Buckets
) -> AsyncIterator[SupabaseStorage]:
    options = dataclasses.replace(storage_options, standard_upload_max_bytes=0)
    async for store in opened(storage_server, options, buckets):
        yield store


@pytest.fixture
async def standard_store(
    storage_server: SupabaseStorageServer, storage_options: SupabaseStorageOptions, buckets: Buckets
) -> AsyncIterator[SupabaseStorage]:
    async for store in opened(storage_server, storage_options, buckets):
        yield store


def staging_objects(server: SupabaseStorageServer) -> list[str]:
    return [name for (_, name) in server.state.objects if name.startswith("_staging/")]


async def first_patch_recorded(server: SupabaseStorageServer, timeout_s: float = 20) -> None:
    async with asyncio.timeout(timeout_s):
        while not server.patches:  # noqa: ASYNC110 (the server's record, not an event)
            await asyncio.sleep(0.005)


def uploads_started(server: SupabaseStorageServer) -> int:
    """Uploads the server was asked for: TUS creates and standard uploads."""
    return len(server.state.requests_to("POST", f"{STAGING}$")) + len(
        server.state.requests_to("POST", STANDARD_POST)
    )


async def upload_receiving(server: SupabaseStorageServer, timeout_s: float = 20) -> None:
    """Until the server holds part of an upload (a TUS PATCH arrived, or a standard upload's
    body is being read)."""
    async with asyncio.timeout(timeout_s):
        while not server.patches and not server.state.requests_to("POST", STANDARD_POST):  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)


def assert_nothing_left(server: SupabaseStorageServer) -> None:
    assert staging_objects(server) == []
    assert [u for u in server.state.uploads.values() if not u.completed] == []


async def test_a_known_size_streams_by_tus_straight_to_its_key(
    tus_store: SupabaseStorage, storage_server: SupabaseStorageServer
) -> None:
    data = pattern(SIZE, seed=11)
    stored = await tus_store.put("videos", KEY, chunks(data, MB), "video/mp4", size=SIZE)

    sha = hashlib.sha256(data).hexdigest()
    assert (stored.bytes, stored.sha256) == (SIZE, sha)
    assert await read_sha256(tus_store, "videos", KEY) == sha
    info = await tus_store.stat("videos", KEY)
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

    sent = 0

    async def source() -> AsyncIterator[bytes]:
        nonlocal sent
        async for chunk in chunks(data, MB):
            yield chunk
            sent += len(chunk)
            if not seen_midway and sent >= 12 * MB:  # the server is receiving the upload
                await upload_receiving(storage_server)
                seen_midway.append(await store.stat("videos", KEY))
                release.set()

    await store.put("videos", KEY, source(), "video/mp4", size=SIZE)
    assert release.is_set() and seen_midway == [None]
    assert await store.stat("videos", KEY) is not None


async def test_the_download_keeps_going_while_a_piece_is_sent_and_stays_bounded(
    tus_store: SupabaseStorage, storage_server: SupabaseStorageServer
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
    await tus_store.put("videos", KEY, source(), "video/mp4", size=SIZE)
    await watcher
    read_ahead = seen_when_first_patch_answered[0]
    # While PATCH #1 (bytes 0-6 MB) was held, the next piece was read and the source went on...
    assert read_ahead >= 12 * MB
    # ... but only so far: one piece waiting, one being cut, the prefetch queue (8 x 1 MB).
    assert read_ahead <= 6 * MB + 6 * MB + 6 * MB + 8 * MB + MB


async def test_a_patch_cut_in_the_middle_resumes_within_the_piece_in_hand(
    tus_store: SupabaseStorage, storage_server: SupabaseStorageServer
) -> None:
    data = pattern(SIZE, seed=13)
    storage_server.faults.cut_patch(after_bytes=2 * MB + 99, skip=1)  # the 2nd PATCH drops
    stored = await tus_store.put("videos", KEY, chunks(data, MB), "video/mp4", size=SIZE)

    patches = storage_server.patches
    assert [p.cut for p in patches] == [False, True, False, False, False]
    assert patches[2].offset == 6 * MB + 2 * MB + 99  # exactly where the server stopped
    assert sum(p.received for p in patches) == SIZE  # no byte twice
    assert len(storage_server.state.requests_to("HEAD", f"{STAGING}/")) == 1
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert await read_sha256(tus_store, "videos", KEY) == stored.sha256
    assert_nothing_left(storage_server)


async def test_a_lost_patch_answer_moves_on_to_the_next_piece(
    tus_store: SupabaseStorage, storage_server: SupabaseStorageServer
) -> None:
    data = pattern(SIZE, seed=14)
    storage_server.faults.fail(
        1, method="PATCH", path=r"^/upload/resumable/", status=502, when="after"
    )
    stored = await tus_store.put("videos", KEY, chunks(data, MB), "video/mp4", size=SIZE)
    assert [p.offset for p in storage_server.patches] == [i * 6 * MB for i in range(4)]
    assert stored.sha256 == await read_sha256(tus_store, "videos", KEY)


@pytest.mark.parametrize("actual", [SIZE - 1000, SIZE + 1000])
async def test_a_source_of_another_length_stores_nothing(
    store: SupabaseStorage, storage_server: SupabaseStorageServer, actual: int
) -> None:
    with pytest.raises(StreamLengthMismatch) as caught:
        await store.put("videos", KEY, chunks(pattern(actual), MB), "video/mp4", size=SIZE)
    assert "announced" in caught.value.message
    assert await store.stat("videos", KEY) is None
    assert_nothing_left(storage_server)
    if storage_server.state.requests_to("POST", f"{STAGING}$"):
        # The unfinished TUS upload was terminated (DELETE), not left to expire.
        assert storage_server.state.requests_to("DELETE", f"{STAGING}/")


async def test_a_source_that_breaks_midway_stores_nothing(
    store: SupabaseStorage, storage_server: SupabaseStorageServer
) -> None:
    class Broken(Exception):
        pass

    async def source() -> AsyncIterator[bytes]:
        async for chunk in chunks(pattern(13 * MB), MB):  # of the announced 20 MB
            yield chunk
        await upload_receiving(storage_server)  # the server holds part of the upload
        raise Broken("connection reset by the provider")

    with pytest.raises(Broken):
        await store.put("videos", KEY, source(), "video/mp4", size=SIZE)
    assert await store.stat("videos", KEY) is None
    assert_nothing_left(storage_server)


async def test_an_upload_the_server_forgot_is_transient_for_the_caller(
    tus_store: SupabaseStorage, storage_server: SupabaseStorageServer
) -> None:
    storage_server.faults.fail(
        1, method="PATCH", path=r"^/upload/resumable/", status=404,
        body="The file for this url was not found\n",
    )
    with pytest.raises(TransientStorageError) as caught:
        await tus_store.put("videos", KEY, chunks(pattern(SIZE), MB), "video/mp4", size=SIZE)
    assert "start over" in caught.value.message
    assert await tus_store.stat("videos", KEY) is None
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
    assert uploads_started(storage_server) == 1
    assert_nothing_left(storage_server)


async def test_a_writer_that_finished_first_is_never_reported_as_ours(
    tus_store: SupabaseStorage, storage_server: SupabaseStorageServer
) -> None:
    """Another writer's object appears while ours is uploading: the server refuses our next
    PATCH (it checks the key at every request), the put is transient, and a retry settles it
    against what is stored."""
    data, other = pattern(SIZE, seed=17), pattern(SIZE, seed=18)

    async def source() -> AsyncIterator[bytes]:
        async for chunk in chunks(data, MB):
            yield chunk
            if storage_server.state.uploads and not storage_server.state.objects:
                await tus_store.put("videos", KEY, chunks(other, MB), "video/mp4")  # spooled

    with pytest.raises(TransientStorageError):
        await tus_store.put("videos", KEY, source(), "video/mp4", size=SIZE)
    assert await read_sha256(tus_store, "videos", KEY) == hashlib.sha256(other).hexdigest()
    with pytest.raises(ObjectConflict):
        await tus_store.put("videos", KEY, chunks(data, MB), "video/mp4", size=SIZE)
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
    assert uploads_started(storage_server) == 0


async def test_stale_staging_objects_are_swept_young_ones_kept(
    store: SupabaseStorage, storage_server: SupabaseStorageServer
) -> None:
    # A crash between upload and copy leaves a staging object; make one the same way.
    await store.put("videos", "_staging/leftover-video.mp4", chunks(b"old"), "video/mp4")
    assert await store.sweep_staging("videos") == 0  # young: may be an upload in progress
    later = datetime.now(UTC) + timedelta(days=2)
    assert await store.sweep_staging("videos", now=later) == 1
    assert staging_objects(storage_server) == []


async def test_a_known_size_goes_as_one_standard_upload_straight_to_its_key(
    standard_store: SupabaseStorage, storage_server: SupabaseStorageServer
) -> None:
    data = pattern(SIZE, seed=21)
    stored = await standard_store.put("videos", KEY, chunks(data, MB), "video/mp4", size=SIZE)

    sha = hashlib.sha256(data).hexdigest()
    assert (stored.bytes, stored.sha256) == (SIZE, sha)
    assert await read_sha256(standard_store, "videos", KEY) == sha
    [upload] = storage_server.state.requests_to("POST", STANDARD_POST)
    assert upload.path == f"/object/videos/{KEY}"
    # Binary, with its length (not chunked), never an overwrite, and a token of its own.
    assert upload.headers["content-length"] == str(SIZE)
    assert upload.headers["content-type"] == "video/mp4"
    assert upload.headers["x-upsert"] == "false"
    token = json.loads(base64.b64decode(upload.headers["x-metadata"]))["upload"]
    assert len(token) == 32
    info = await standard_store.stat("videos", KEY)
    assert info is not None and (info.size, info.sha256) == (SIZE, None)
    assert not storage_server.state.requests_to("POST", f"{STAGING}$")
    assert not storage_server.state.requests_to("POST", r"^/object/copy$")


async def test_a_standard_upload_replaced_before_its_check_is_a_conflict(
    standard_store: SupabaseStorage, storage_server: SupabaseStorageServer
) -> None:
    """The server checked the key free for both writers and upserts at their ends: ours
    finished first, the other's replaced it before our check. Ours must not report success."""
    other = pattern(SIZE, seed=23)
    half_sent, go_on = asyncio.Event(), asyncio.Event()

    async def other_body() -> AsyncIterator[bytes]:
        yield other[: 2 * MB]
        half_sent.set()
        await go_on.wait()
        yield other[2 * MB :]

    key = storage_server.service_key()
    async with httpx.AsyncClient(
        base_url=storage_server.url, timeout=30,
        headers={"Authorization": f"Bearer {key}", "apikey": key, "content-type": "video/mp4"},
    ) as http:
        rival = asyncio.create_task(
            http.post(f"object/videos/{KEY}", content=other_body(),
                      headers={"content-length": str(SIZE)})
        )
        await asyncio.wait_for(half_sent.wait(), 10)
        await asyncio.sleep(0.2)  # the rival passed the check
        # Our check after the upload (the second look at the key) waits for the rival.
        storage_server.faults.delay(1.0, count=1, path=r"^/object/info/videos/", skip=1)

        async def finish_rival() -> None:
            while ("videos", KEY) not in storage_server.state.objects:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            go_on.set()
            assert (await rival).status_code == 200

        finisher = asyncio.create_task(finish_rival())
        with pytest.raises(ObjectConflict) as caught:
            await standard_store.put(
                "videos", KEY, chunks(pattern(SIZE, seed=22), MB), "video/mp4", size=SIZE
            )
        await finisher
    assert "another writer" in caught.value.message
    assert await read_sha256(standard_store, "videos", KEY) == hashlib.sha256(other).hexdigest()


async def test_a_server_that_caps_standard_uploads_lower_gets_the_retry_by_tus(
    standard_store: SupabaseStorage, storage_server: SupabaseStorageServer
) -> None:
    storage_server.state.standard_upload_limit = 10 * MB  # a plan's cap; the bucket allows 500 MB
    data = pattern(SIZE, seed=24)
    with pytest.raises(TransientStorageError) as caught:
        await standard_store.put("videos", KEY, chunks(data, MB), "video/mp4", size=SIZE)
    assert "retry by TUS" in caught.value.message
    assert await standard_store.stat("videos", KEY) is None

    stored = await standard_store.put("videos", KEY, chunks(data, MB), "video/mp4", size=SIZE)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert len(storage_server.state.requests_to("POST", f"{STAGING}$")) == 1
    # Later objects of that size go by TUS at once; smaller streamed ones still in one request.
    await standard_store.put("videos", "org-1/b.mp4", chunks(data, MB), "video/mp4", size=SIZE)
    await standard_store.put(
        "videos", "org-1/c.mp4", chunks(data[: 8 * MB], MB), "video/mp4", size=8 * MB
    )
    assert len(storage_server.state.requests_to("POST", f"{STAGING}$")) == 2
    assert len(storage_server.state.requests_to("POST", STANDARD_POST)) == 2


async def test_a_lost_standard_upload_answer_settles_on_the_retry(
    standard_store: SupabaseStorage, storage_server: SupabaseStorageServer
) -> None:
    data = pattern(SIZE, seed=25)
    storage_server.faults.fail(1, method="POST", path=STANDARD_POST, status=502, when="after")
    with pytest.raises(TransientStorageError):
        await standard_store.put("videos", KEY, chunks(data, MB), "video/mp4", size=SIZE)
    # The upload did land; the retry finds the same bytes there and uploads nothing.
    stored = await standard_store.put("videos", KEY, chunks(data, MB), "video/mp4", size=SIZE)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert len(storage_server.state.requests_to("POST", STANDARD_POST)) == 1
