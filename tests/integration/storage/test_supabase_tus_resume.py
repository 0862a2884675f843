"""Large objects go through TUS (``/upload/resumable``); an interrupted transfer resumes from
the server's offset (learned with HEAD) instead of starting over."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import AsyncIterator

import pytest
from reelvault_common.storage import ObjectConflict
from reelvault_common.storage.layout import MB, Buckets
from reelvault_common.storage.supabase import SupabaseStorage, SupabaseStorageOptions
from storage3 import AsyncStorageClient

from tests.support.byte_streams import chunks as byte_chunks
from tests.support.byte_streams import pattern, read_sha256
from tests.support.supabase_storage import SupabaseStorageServer

pytestmark = pytest.mark.integration

KEY = "org-1/2026/11/7a1d/video.mp4"
SIZE = 24 * MB + 12_345  # four full 6 MB chunks and a tail


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    async for chunk in byte_chunks(data, 256 * 1024):
        yield chunk


@pytest.fixture
async def store(supabase_storage: SupabaseStorage, buckets: Buckets) -> SupabaseStorage:
    await supabase_storage.ensure_buckets(buckets.all())
    return supabase_storage


async def read_sha(store: SupabaseStorage, key: str) -> str:
    return await read_sha256(store, "videos", key)


async def test_a_large_object_goes_through_tus_in_6_mb_chunks(
    store: SupabaseStorage, storage_server: SupabaseStorageServer
) -> None:
    data = pattern(SIZE)
    stored = await store.put("videos", KEY, chunks(data), "video/mp4")
    assert stored.sha256 == hashlib.sha256(data).hexdigest() == await read_sha(store, KEY)
    # No standard upload (the start-up sweep's list is the only other POST).
    assert not storage_server.state.requests_to("POST", r"^/object/(?!list/)")
    assert len(storage_server.state.requests_to("POST", r"^/upload/resumable$")) == 1
    assert [p.offset for p in storage_server.patches] == [i * 6 * MB for i in range(5)]
    info = await store.stat("videos", KEY)
    assert info is not None
    assert (info.size, info.sha256) == (SIZE, stored.sha256)


async def test_a_transfer_cut_in_the_middle_resumes_from_the_server_offset(
    store: SupabaseStorage, storage_server: SupabaseStorageServer
) -> None:
    data = pattern(SIZE, seed=2)
    cut_after = 2 * MB + 777
    storage_server.faults.cut_patch(after_bytes=cut_after, skip=1)  # the 2nd PATCH drops
    stored = await store.put("videos", KEY, chunks(data), "video/mp4")

    patches = storage_server.patches
    cut_at = 6 * MB + cut_after
    # The rest of the cut piece goes in its own PATCH; the pieces stay on the 6 MB grid.
    assert [p.cut for p in patches] == [False, True, False, False, False, False]
    assert [p.offset for p in patches[3:]] == [12 * MB, 18 * MB, 24 * MB]
    assert patches[1].received == cut_after
    # The server saw a HEAD, and the next PATCH started exactly where the server had stopped.
    assert len(storage_server.state.requests_to("HEAD", r"^/upload/resumable/")) == 1
    assert patches[2].offset == cut_at
    # After the cut only the remainder was sent: no byte twice, no restart, one upload.
    assert sum(p.received for p in patches) == SIZE
    assert sum(p.received for p in patches[2:]) == SIZE - cut_at
    assert len(storage_server.state.requests_to("POST", r"^/upload/resumable$")) == 1
    assert stored.sha256 == hashlib.sha256(data).hexdigest() == await read_sha(store, KEY)
    # The server's etag (md5, kept up to date PATCH by PATCH) covers exactly the bytes stored.
    obj = storage_server.state.objects[("videos", KEY)]
    assert obj.etag == f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'


async def test_a_lost_patch_answer_does_not_resend_the_stored_bytes(
    store: SupabaseStorage, storage_server: SupabaseStorageServer
) -> None:
    data = pattern(SIZE, seed=3)
    # The 1st PATCH is stored, but its answer is replaced by a 502 (a proxy lost it).
    storage_server.faults.fail(
        1, method="PATCH", path=r"^/upload/resumable/", status=502, when="after"
    )
    stored = await store.put("videos", KEY, chunks(data), "video/mp4")
    assert sum(p.received for p in storage_server.patches) == SIZE
    assert [p.offset for p in storage_server.patches] == [i * 6 * MB for i in range(5)]
    assert len(storage_server.state.requests_to("HEAD", r"^/upload/resumable/")) == 1
    assert stored.sha256 == await read_sha(store, KEY)


async def test_transient_errors_on_create_and_patch_are_retried(
    store: SupabaseStorage, storage_server: SupabaseStorageServer
) -> None:
    data = pattern(SIZE, seed=4)
    storage_server.faults.fail(2, method="POST", path=r"^/upload/resumable$")
    storage_server.faults.fail(1, method="PATCH", path=r"^/upload/resumable/", status=503)
    storage_server.faults.fail(1, method="HEAD", path=r"^/upload/resumable/", status=503)
    stored = await store.put("videos", KEY, chunks(data), "video/mp4")
    creates = storage_server.state.requests_to("POST", r"^/upload/resumable$")
    assert [r.status for r in creates] == [503, 503, 201]
    heads = storage_server.state.requests_to("HEAD", r"^/upload/resumable/")
    assert [r.status for r in heads] == [503, 200]
    assert sum(p.received for p in storage_server.patches) == SIZE
    assert stored.sha256 == await read_sha(store, KEY)


async def test_an_upload_the_server_forgot_starts_over_once(
    store: SupabaseStorage, storage_server: SupabaseStorageServer
) -> None:
    data = pattern(SIZE, seed=5)
    storage_server.faults.fail(
        1,
        method="PATCH",
        path=r"^/upload/resumable/",
        status=404,
        body="The file for this url was not found\n",
    )
    stored = await store.put("videos", KEY, chunks(data), "video/mp4")
    creates = storage_server.state.requests_to("POST", r"^/upload/resumable$")
    assert [r.status for r in creates] == [201, 201]
    assert stored.sha256 == await read_sha(store, KEY)


async def test_other_bytes_landing_at_the_key_mid_upload_are_a_conflict(
    store: SupabaseStorage, storage_server: SupabaseStorageServer
) -> None:
    data = pattern(SIZE, seed=6)
    storage_server.faults.delay(1.0, count=1, path=r"^/upload/resumable/.+")  # holds PATCH #1

    async def someone_else_writes() -> None:
        deadline = asyncio.get_running_loop().time() + 20
        while not storage_server.state.requests_to("PATCH", r"^/upload/"):  # PATCH #1 is held
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        key = storage_server.service_key()
        async with AsyncStorageClient(
            storage_server.url, {"Authorization": f"Bearer {key}", "apikey": key}
        ) as other:
            await other.from_("videos").upload(KEY, b"other bytes", {"content-type": "video/mp4"})

    writer = asyncio.create_task(someone_else_writes())
    with pytest.raises(ObjectConflict) as caught:
        await store.put("videos", KEY, chunks(data), "video/mp4")
    await writer
    assert "already holds different bytes" in caught.value.message
    assert [r.status for r in storage_server.state.requests_to("PATCH", r"^/upload/")] == [409]
    info = await store.stat("videos", KEY)
    assert info is not None
    assert info.size == len(b"other bytes")


async def test_a_threshold_of_its_own_is_honoured(
    storage_server: SupabaseStorageServer, storage_options: SupabaseStorageOptions, buckets: Buckets
) -> None:
    options = dataclasses.replace(storage_options, tus_threshold_bytes=MB, tus_chunk_bytes=MB // 2)
    store = SupabaseStorage.for_storage_server(
        storage_server.url, storage_server.service_key(), options
    )
    try:
        await store.ensure_buckets(buckets.all())
        await store.put("videos", "a.mp4", chunks(pattern(MB)), "video/mp4")  # = threshold
        await store.put("videos", "b.mp4", chunks(pattern(MB + 1)), "video/mp4")  # above
    finally:
        await store.aclose()
    assert len(storage_server.state.requests_to("POST", r"^/object/videos/a.mp4$")) == 1
    assert [p.received for p in storage_server.patches] == [MB // 2, MB // 2, 1]
