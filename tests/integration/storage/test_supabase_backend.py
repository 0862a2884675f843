"""The Supabase backend against the Supabase-Storage-compatible test server: bucket set-up,
server-enforced rules and their typed errors, auth, links, retries, and configuration."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from reelvault_common.runtime.settings import StorageSettings
from reelvault_common.storage import (
    BucketNotFound,
    BucketRulesMismatch,
    MimeTypeNotAllowed,
    ObjectConflict,
    PayloadTooLarge,
    StorageError,
    TransientStorageError,
    Unauthorized,
)
from reelvault_common.storage.factory import open_storage
from reelvault_common.storage.layout import MB, Buckets
from reelvault_common.storage.retry import RetryPolicy
from reelvault_common.storage.supabase import SupabaseStorage, SupabaseStorageOptions
from storage3 import AsyncStorageClient

from tests.support.byte_streams import chunks
from tests.support.supabase_storage import SupabaseStorageServer, make_jwt

pytestmark = pytest.mark.integration

KEY = "org-1/2026/11/5f0c/video.mp4"


async def read_all(store: SupabaseStorage, bucket: str, key: str) -> bytes:
    return b"".join([chunk async for chunk in store.read(bucket, key)])


def storage3_client(server: SupabaseStorageServer, key: str | None = None) -> AsyncStorageClient:
    key = key or server.service_key()
    return AsyncStorageClient(server.url, {"Authorization": f"Bearer {key}", "apikey": key})


# --- buckets ---------------------------------------------------------------------------------
async def test_buckets_are_created_with_the_seeds_rules(
    supabase_storage: SupabaseStorage, storage_server: SupabaseStorageServer, buckets: Buckets
) -> None:
    await supabase_storage.ensure_buckets(buckets.all())
    client = storage3_client(storage_server)
    async with client:
        seen = {b.id: b for b in await client.list_buckets()}
    assert set(seen) == {"videos", "thumbnails", "hug-images", "brand-kits"}
    assert (
        seen["videos"].public,
        seen["videos"].file_size_limit,
        seen["videos"].allowed_mime_types,
    ) == (False, 500 * MB, ["video/*"])
    assert (
        seen["thumbnails"].public,
        seen["thumbnails"].file_size_limit,
        seen["thumbnails"].allowed_mime_types,
    ) == (True, 5 * MB, ["image/jpeg", "image/png", "image/webp"])
    assert (seen["hug-images"].public, seen["hug-images"].file_size_limit) == (True, 10 * MB)
    assert (
        seen["brand-kits"].public,
        seen["brand-kits"].file_size_limit,
        seen["brand-kits"].allowed_mime_types,
    ) == (False, 10 * MB, ["image/*", "font/*", "application/json"])


async def test_ensuring_again_creates_nothing(
    supabase_storage: SupabaseStorage, storage_server: SupabaseStorageServer, buckets: Buckets
) -> None:
    await supabase_storage.ensure_buckets(buckets.all())
    assert len(storage_server.state.requests_to("POST", r"^/bucket$")) == 4
    await supabase_storage.ensure_buckets(buckets.all())
    assert len(storage_server.state.requests_to("POST", r"^/bucket$")) == 4


async def test_a_bucket_created_by_someone_else_in_between_is_fine_when_its_rules_match(
    supabase_storage: SupabaseStorage, storage_server: SupabaseStorageServer, buckets: Buckets
) -> None:
    async with storage3_client(storage_server) as client:
        await client.create_bucket(
            "videos",
            options={
                "public": False,
                "file_size_limit": 500 * 1024 * 1024,  # "500MB" would be 500,000,000
                "allowed_mime_types": ["video/*"],
            },
        )
    # Our first look says "missing" (the other process had not created it yet): create -> 409.
    storage_server.faults.fail(
        1,
        method="GET",
        path=r"^/bucket/videos$",
        status=400,
        body='{"statusCode":"404","error":"Bucket not found","message":"Bucket not found"}',
        content_type="application/json",
    )
    await supabase_storage.ensure_buckets([buckets.videos])
    creates = storage_server.state.requests_to("POST", r"^/bucket$")
    # The other process's create, then ours, answered 409 Duplicate (HTTP 400) and absorbed.
    assert [r.status for r in creates] == [200, 400]


async def test_two_processes_racing_both_succeed(
    storage_server: SupabaseStorageServer, storage_options: SupabaseStorageOptions, buckets: Buckets
) -> None:
    stores = [
        SupabaseStorage.for_storage_server(
            storage_server.url, storage_server.service_key(), storage_options
        )
        for _ in range(3)
    ]
    try:
        await asyncio.gather(*(s.ensure_buckets(buckets.all()) for s in stores))
    finally:
        for store in stores:
            await store.aclose()
    assert len(storage_server.state.buckets) == 4


async def test_a_bucket_with_other_rules_is_reported_not_changed(
    supabase_storage: SupabaseStorage, storage_server: SupabaseStorageServer, buckets: Buckets
) -> None:
    async with storage3_client(storage_server) as client:
        await client.create_bucket(
            "thumbnails",
            options={
                "public": False,
                "file_size_limit": 1 * MB,
                "allowed_mime_types": ["image/png"],
            },
        )
        with pytest.raises(BucketRulesMismatch) as caught:
            await supabase_storage.ensure_buckets(buckets.all())
        after = await client.get_bucket("thumbnails")
    message = caught.value.message
    assert "thumbnails" in message
    assert "public=False" in message
    assert "public=True" in message
    assert "image/webp" in message
    assert "never changes bucket rules" in message
    assert (after.public, after.file_size_limit, after.allowed_mime_types) == (
        False,
        1 * MB,
        ["image/png"],
    )
    assert not storage_server.state.requests_to("PUT", r"^/bucket/")


# --- the server's own rules (no client-side pre-check: this backend never ensured) -----------
@pytest.fixture
async def unchecked(
    storage_server: SupabaseStorageServer, storage_options: SupabaseStorageOptions, buckets: Buckets
) -> AsyncIterator[SupabaseStorage]:
    """A backend that knows no bucket rules, over buckets another process set up; TUS for
    anything above 256 KiB so both upload paths are cheap to reach."""
    setup = SupabaseStorage.for_storage_server(
        storage_server.url, storage_server.service_key(), storage_options
    )
    await setup.ensure_buckets(buckets.all())
    await setup.aclose()
    options = dataclasses.replace(
        storage_options, tus_threshold_bytes=256 * 1024, tus_chunk_bytes=128 * 1024
    )
    store = SupabaseStorage.for_storage_server(
        storage_server.url, storage_server.service_key(), options
    )
    yield store
    await store.aclose()


@pytest.mark.parametrize("size", [5 * MB + 1, 200 * 1024], ids=["tus", "standard"])
async def test_the_server_refuses_oversize_with_a_clear_error(
    unchecked: SupabaseStorage, storage_server: SupabaseStorageServer, size: int
) -> None:
    storage_server.state.standard_upload_limit = 100 * 1024 if size < MB else None
    with pytest.raises(PayloadTooLarge) as caught:
        await unchecked.put("thumbnails", "t/too-big.webp", chunks(b"x" * size, MB), "image/webp")
    assert f"thumbnails/t/too-big.webp ({size} bytes)" in caught.value.message
    assert await unchecked.stat("thumbnails", "t/too-big.webp") is None


@pytest.mark.parametrize("size", [300 * 1024, 1000], ids=["tus", "standard"])
async def test_the_server_refuses_a_wrong_type(
    unchecked: SupabaseStorage, storage_server: SupabaseStorageServer, size: int
) -> None:
    with pytest.raises(MimeTypeNotAllowed) as caught:
        await unchecked.put("videos", KEY, chunks(b"x" * size), "image/png")
    assert "videos does not accept image/png" in caught.value.message
    assert "not supported" in caught.value.message  # the server's own words are kept
    assert await unchecked.stat("videos", KEY) is None


async def test_parameters_on_a_content_type_only_pass_a_wildcard_rule(
    unchecked: SupabaseStorage,
) -> None:
    # The server compares "type/subtype; params" literally; only a "video/*" rule ignores them.
    stored = await unchecked.put("videos", KEY, chunks(b"v"), 'video/mp4; codecs="avc1"')
    assert stored.bytes == 1
    # A multipart upload (storage3's) loses the parameters: stored as plain image/webp.
    await unchecked.put("thumbnails", "t.webp", chunks(b"i"), "image/webp; q=1")
    info = await unchecked.stat("thumbnails", "t.webp")
    assert info is not None and info.content_type == "image/webp"


# --- auth and secrets ------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["wrong-secret", "expired", "anon"])
async def test_a_bad_key_is_unauthorized_and_never_echoed(
    storage_server: SupabaseStorageServer,
    storage_options: SupabaseStorageOptions,
    buckets: Buckets,
    which: str,
) -> None:
    good = SupabaseStorage.for_storage_server(
        storage_server.url, storage_server.service_key(), storage_options
    )
    await good.ensure_buckets(buckets.all())
    await good.aclose()
    key = {
        "wrong-secret": make_jwt("another-secret-that-is-long-enough-32b"),
        "expired": make_jwt(storage_server.state.jwt_secret, expires_in_s=-10),
        "anon": storage_server.anon_key(),
    }[which]
    store = SupabaseStorage.for_storage_server(storage_server.url, key, storage_options)
    try:
        with pytest.raises(Unauthorized) as caught:
            await store.put("videos", KEY, chunks(b"x"), "video/mp4")
        assert key not in str(caught.value)
        assert key not in repr(store)
        if which != "anon":  # anon may look at buckets (RLS hides private ones), not write
            with pytest.raises(Unauthorized):
                await store.ensure_buckets(buckets.all())
            # The server answers /object/info with a bad key as "Bucket not found" (404).
            with pytest.raises(BucketNotFound):
                await store.stat("videos", KEY)
        big = dataclasses.replace(storage_options, tus_threshold_bytes=10)
        tus_store = SupabaseStorage.for_storage_server(storage_server.url, key, big)
        try:
            with pytest.raises(Unauthorized):  # the TUS path too
                await tus_store.put("videos", KEY, chunks(b"x" * 100), "video/mp4")
        finally:
            await tus_store.aclose()
    finally:
        await store.aclose()


async def test_both_auth_headers_are_sent_and_the_key_is_in_no_url(
    supabase_storage: SupabaseStorage, storage_server: SupabaseStorageServer, buckets: Buckets
) -> None:
    await supabase_storage.ensure_buckets(buckets.all())
    await supabase_storage.put("videos", KEY, chunks(b"a" * (7 * MB)), "video/mp4")  # TUS
    await supabase_storage.put("thumbnails", "t.webp", chunks(b"b"), "image/webp")  # standard
    signed = await supabase_storage.signed_url("videos", KEY, 60)
    public = await supabase_storage.public_url("thumbnails", "t.webp")
    await read_all(supabase_storage, "videos", KEY)
    key = storage_server.service_key()
    secret_part = key.split(".")[2]  # the signature: same for every key minted this second
    assert storage_server.requests
    for record in storage_server.requests:
        assert record.headers.get("authorization", "").startswith("Bearer ")
        assert record.headers.get("apikey") == record.headers["authorization"][7:]
        assert secret_part not in record.path
        assert secret_part not in record.query
    assert secret_part not in signed
    assert public is not None
    assert secret_part not in public


# --- links -----------------------------------------------------------------------------------
async def test_signed_url_works_with_plain_httpx_until_it_expires(
    supabase_storage: SupabaseStorage, buckets: Buckets
) -> None:
    await supabase_storage.ensure_buckets(buckets.all())
    data = os.urandom(100_000)
    await supabase_storage.put("videos", KEY, chunks(data), "video/mp4")
    # 3 s, not 1: the server counts whole seconds from int(now), so a 1 s link made late in a
    # second lives only a fraction of it (the first GET below failed under load).
    url = await supabase_storage.signed_url("videos", KEY, 3)
    async with httpx.AsyncClient() as plain:  # no auth headers at all
        answer = await plain.get(url)
        assert answer.status_code == 200
        assert answer.content == data
        assert answer.headers["content-type"] == "video/mp4"
        partial = await plain.get(url, headers={"Range": "bytes=10-19"})
        assert partial.status_code == 206
        assert partial.content == data[10:20]
        deadline = time.monotonic() + 10
        while (answer := await plain.get(url)).status_code == 200:
            assert time.monotonic() < deadline, "the signed URL never expired"
            await asyncio.sleep(0.2)
        assert answer.json()["message"] == '"exp" claim timestamp check failed'
        tampered = url.replace("video.mp4", "other.mp4")
        assert (await plain.get(tampered)).status_code == 400


async def test_public_url_serves_public_buckets_only(
    supabase_storage: SupabaseStorage, storage_server: SupabaseStorageServer, buckets: Buckets
) -> None:
    await supabase_storage.ensure_buckets(buckets.all())
    stored = await supabase_storage.put("thumbnails", "t/a.webp", chunks(b"webp!"), "image/webp")
    await supabase_storage.put("videos", KEY, chunks(b"private"), "video/mp4")
    assert stored.url == await supabase_storage.public_url("thumbnails", "t/a.webp")
    assert await supabase_storage.public_url("videos", KEY) is None
    async with httpx.AsyncClient() as plain:
        assert stored.url is not None
        assert (await plain.get(stored.url)).content == b"webp!"
        # Guessing the public route of a private bucket gets nothing.
        answer = await plain.get(f"{storage_server.url}object/public/videos/{KEY}")
        assert answer.status_code == 400
        assert answer.json()["error"] == "Bucket not found"


# --- idempotency when the bytes are already there --------------------------------------------
async def test_an_object_stored_without_our_checksum_is_compared_by_its_bytes(
    supabase_storage: SupabaseStorage, storage_server: SupabaseStorageServer, buckets: Buckets
) -> None:
    await supabase_storage.ensure_buckets(buckets.all())
    data = os.urandom(50_000)
    async with storage3_client(storage_server) as client:  # another tool: no sha256 metadata
        await client.from_("videos").upload(KEY, data, {"content-type": "video/mp4"})
    stored = await supabase_storage.put("videos", KEY, chunks(data), "video/mp4")
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    with pytest.raises(ObjectConflict):
        await supabase_storage.put("videos", KEY, chunks(bytes(50_000)), "video/mp4")


# --- transient failures ----------------------------------------------------------------------
async def test_transient_5xx_is_retried(
    supabase_storage: SupabaseStorage, storage_server: SupabaseStorageServer, buckets: Buckets
) -> None:
    storage_server.faults.fail(2, method="GET", path=r"^/bucket/")  # proxy 503, text body
    await supabase_storage.ensure_buckets(buckets.all())
    storage_server.faults.fail(2, method="POST", path=r"^/object/videos/")
    storage_server.faults.fail(
        1,
        method="GET",
        path=r"^/object/info/",
        status=500,
        body='{"statusCode":"500","error":"internal","message":"boom"}',
        content_type="application/json",
    )
    stored = await supabase_storage.put("videos", KEY, chunks(b"retried"), "video/mp4")
    assert stored.bytes == 7
    uploads = storage_server.state.requests_to("POST", r"^/object/videos/")
    assert [r.status for r in uploads] == [503, 503, 200]


async def test_a_lost_answer_after_a_successful_upload_is_a_no_op_on_retry(
    supabase_storage: SupabaseStorage, storage_server: SupabaseStorageServer, buckets: Buckets
) -> None:
    await supabase_storage.ensure_buckets(buckets.all())
    storage_server.faults.fail(1, method="POST", path=r"^/object/videos/", status=504, when="after")
    stored = await supabase_storage.put("videos", KEY, chunks(b"landed"), "video/mp4")
    assert stored.sha256 == hashlib.sha256(b"landed").hexdigest()
    uploads = storage_server.state.requests_to("POST", r"^/object/videos/")
    assert [r.status for r in uploads] == [504, 400]  # the retry met its own Duplicate


async def test_retries_are_bounded(
    supabase_storage: SupabaseStorage, storage_server: SupabaseStorageServer, buckets: Buckets
) -> None:
    await supabase_storage.ensure_buckets(buckets.all())
    storage_server.faults.fail(100, method="POST", path=r"^/object/videos/")
    with pytest.raises(TransientStorageError) as caught:
        await supabase_storage.put("videos", KEY, chunks(b"never"), "video/mp4")
    assert "gave up after 4 attempts" in caught.value.message
    assert len(storage_server.state.requests_to("POST", r"^/object/videos/")) == 4


async def test_timeouts_are_transient_and_retried(
    storage_server: SupabaseStorageServer, storage_options: SupabaseStorageOptions, buckets: Buckets
) -> None:
    options = dataclasses.replace(storage_options, timeout_s=0.3)
    store = SupabaseStorage.for_storage_server(
        storage_server.url, storage_server.service_key(), options
    )
    try:
        await store.ensure_buckets(buckets.all())
        await store.put("videos", KEY, chunks(b"slow"), "video/mp4")
        storage_server.faults.delay(1.0, count=1, path=r"^/object/info/")
        info = await store.stat("videos", KEY)
        assert info is not None
        assert info.size == 4
        assert len(storage_server.state.requests_to("GET", r"^/object/info/")) >= 3
    finally:
        await store.aclose()


async def test_an_interrupted_download_resumes_with_a_range_request(
    supabase_storage: SupabaseStorage, storage_server: SupabaseStorageServer, buckets: Buckets
) -> None:
    await supabase_storage.ensure_buckets(buckets.all())
    data = os.urandom(3 * MB + 5)
    await supabase_storage.put("videos", KEY, chunks(data, MB), "video/mp4")
    storage_server.faults.cut_response(MB + 100, path=r"^/object/authenticated/")
    assert await read_all(supabase_storage, "videos", KEY) == data
    reads = storage_server.state.requests_to("GET", r"^/object/authenticated/")
    assert len(reads) == 2
    assert "range" not in reads[0].headers
    resumed_at = int(reads[1].headers["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= MB + 100


# --- configuration ---------------------------------------------------------------------------
async def test_open_storage_with_a_storage_url(
    storage_server: SupabaseStorageServer, buckets: Buckets
) -> None:
    settings = StorageSettings(
        storage_backend="supabase",
        SUPABASE_STORAGE_URL=storage_server.url,
        SUPABASE_SERVICE_ROLE_KEY=storage_server.service_key(),
    )
    store = open_storage(settings)
    try:
        assert isinstance(store, SupabaseStorage)
        await store.ensure_buckets(buckets.all())
        await store.put("videos", KEY, chunks(b"factory"), "video/mp4")
        assert b"".join([c async for c in store.read("videos", KEY)]) == b"factory"
    finally:
        await store.aclose()


async def test_a_project_url_reaches_storage_under_storage_v1(
    storage_server: SupabaseStorageServer,
    storage_options: SupabaseStorageOptions,
    buckets: Buckets,
    tmp_path: Path,
) -> None:
    key = storage_server.service_key()
    settings = StorageSettings(
        storage_backend="supabase",
        SUPABASE_URL=storage_server.project_url,
        SUPABASE_SERVICE_ROLE_KEY=key,
    )
    store = SupabaseStorage.for_project(
        settings.supabase_url or "",
        SecretStr(key),
        dataclasses.replace(storage_options, tus_threshold_bytes=64 * 1024),
    )
    try:
        await store.ensure_buckets(buckets.all())
        data = os.urandom(200_000)
        await store.put("videos", KEY, chunks(data), "video/mp4")  # TUS through the prefix
        await store.put("thumbnails", "t.webp", chunks(b"t"), "image/webp")
        assert await read_all(store, "videos", KEY) == data
        public = await store.public_url("thumbnails", "t.webp")
        signed = await store.signed_url("videos", KEY, 60)
    finally:
        await store.aclose()
    assert public == f"{storage_server.project_url}/storage/v1/object/public/thumbnails/t.webp"
    assert signed.startswith(f"{storage_server.project_url}/storage/v1/object/sign/videos/")
    async with httpx.AsyncClient() as plain:
        assert (await plain.get(signed)).content == data
    # Every request came through the prefix, which (like the platform's proxy) wants apikey.
    assert all(
        r.headers.get("x-forwarded-prefix") == "/storage/v1" for r in storage_server.requests
    )
    async with AsyncStorageClient(
        f"{storage_server.project_url}/storage/v1/", {"Authorization": f"Bearer {key}"}
    ) as no_apikey:
        with pytest.raises(Exception, match="No API key"):
            await no_apikey.list_buckets()


def test_open_storage_needs_a_key_and_a_url() -> None:
    with pytest.raises(ValueError, match="SUPABASE_SERVICE_ROLE_KEY"):
        open_storage(StorageSettings(storage_backend="supabase", SUPABASE_URL="http://127.0.0.1:1"))
    with pytest.raises(ValueError, match="SUPABASE_URL"):
        open_storage(StorageSettings(storage_backend="supabase", SUPABASE_SERVICE_ROLE_KEY="k"))


async def test_errors_other_than_the_documented_ones_stay_storage_errors(
    supabase_storage: SupabaseStorage, storage_server: SupabaseStorageServer, buckets: Buckets
) -> None:
    await supabase_storage.ensure_buckets(buckets.all())
    storage_server.faults.fail(
        1,
        method="POST",
        path=r"^/object/videos/",
        status=400,
        body='{"statusCode":"422","error":"Unprocessable","message":"odd"}',
        content_type="application/json",
    )
    with pytest.raises(StorageError) as caught:
        await supabase_storage.put("videos", KEY, chunks(b"x"), "video/mp4")
    assert type(caught.value) is StorageError
    assert "odd" in caught.value.message


RetryPolicy  # noqa: B018  (imported for readers: the fixtures' FAST_RETRY is a RetryPolicy)
