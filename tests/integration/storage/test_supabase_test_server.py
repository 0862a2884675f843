"""The Supabase-Storage-compatible test server, driven through storage3 (and plain httpx where
storage3 has no call): it must behave as the storage API doc says, or the backend's tests would
prove nothing."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from storage3 import AsyncStorageClient
from storage3.exceptions import StorageApiError

from tests.support.supabase_storage import SupabaseStorageServer, make_jwt, mime_allowed, parse_size

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(storage_server: SupabaseStorageServer) -> AsyncIterator[AsyncStorageClient]:
    key = storage_server.service_key()
    async with AsyncStorageClient(
        storage_server.url, {"Authorization": f"Bearer {key}", "apikey": key}
    ) as c:
        yield c


@pytest.fixture
async def http(storage_server: SupabaseStorageServer) -> AsyncIterator[httpx.AsyncClient]:
    key = storage_server.service_key()
    async with httpx.AsyncClient(
        base_url=storage_server.url, headers={"Authorization": f"Bearer {key}", "apikey": key}
    ) as c:
        yield c


async def raises(call: object) -> StorageApiError:
    try:
        await call  # type: ignore[misc]
    except StorageApiError as exc:
        return exc
    raise AssertionError("expected a StorageApiError")


async def test_bucket_crud(client: AsyncStorageClient) -> None:
    assert await client.create_bucket(
        "b1", options={"public": True, "file_size_limit": "5MB", "allowed_mime_types": ["image/*"]}
    ) == {"name": "b1"}
    bucket = await client.get_bucket("b1")
    assert (bucket.public, bucket.file_size_limit, bucket.allowed_mime_types) == (
        True,
        5_000_000,  # the server's units are decimal
        ["image/*"],
    )
    duplicate = await raises(client.create_bucket("b1"))
    assert (duplicate.status, duplicate.code) == ("409", "Duplicate")
    await client.update_bucket("b1", {"public": False, "file_size_limit": 100})
    assert (await client.get_bucket("b1")).file_size_limit == 100
    await client.from_("b1").upload("x.png", b"png", {"content-type": "image/png"})
    not_empty = await raises(client.delete_bucket("b1"))
    assert not_empty.status == "409"
    await client.empty_bucket("b1")
    await client.delete_bucket("b1")
    missing = await raises(client.get_bucket("b1"))
    assert (missing.status, missing.code) == ("404", "Bucket not found")
    assert [b.id for b in await client.list_buckets()] == []


async def test_errors_are_http_400_with_the_real_status_in_the_body(
    http: httpx.AsyncClient,
) -> None:
    answer = await http.get("bucket/nope")
    assert answer.status_code == 400
    assert answer.json() == {
        "statusCode": "404",
        "error": "Bucket not found",
        "message": "Bucket not found",
    }


async def test_uploads_multipart_and_binary_with_metadata_and_cache_control(
    client: AsyncStorageClient, http: httpx.AsyncClient
) -> None:
    await client.create_bucket("v", options={"allowed_mime_types": ["video/*"]})
    files = client.from_("v")
    answer = await files.upload(
        "a/one.mp4",
        b"one",
        {"content-type": "video/mp4", "cache-control": "60", "metadata": {"sha256": "abc"}},
    )
    assert answer.full_path == "v/a/one.mp4"
    info = await files.info("a/one.mp4")
    assert (info["size"], info["content_type"], info["cache_control"], info["metadata"]) == (
        3,
        "video/mp4",
        "max-age=60",
        {"sha256": "abc"},
    )
    binary = await http.post(
        "object/v/a/two.mp4",
        content=b"two!",
        headers={
            "content-type": "video/webm",
            "x-metadata": base64.b64encode(b'{"k":"v"}').decode(),
        },
    )
    assert binary.json()["Key"] == "v/a/two.mp4"
    info = await files.info("a/two.mp4")
    assert (info["size"], info["content_type"], info["metadata"]) == (4, "video/webm", {"k": "v"})
    # storage3's default type is text/plain, which MIME rules refuse (multipart: an older
    # error shape, where a binary upload answers 415 invalid_mime_type).
    refused = await raises(files.upload("a/three.mp4", b"3"))
    assert (refused.status, refused.code) == ("400", "InvalidRequest")


async def test_no_overwrite_unless_upsert(client: AsyncStorageClient) -> None:
    await client.create_bucket("v")
    files = client.from_("v")
    await files.upload("k", b"first", {"content-type": "video/mp4"})
    duplicate = await raises(files.upload("k", b"second", {"content-type": "video/mp4"}))
    assert (duplicate.status, duplicate.code, duplicate.message) == (
        "409",
        "Duplicate",
        "The resource already exists",
    )
    await files.upload("k", b"second", {"content-type": "video/mp4", "upsert": "true"})
    assert await files.download("k") == b"second"
    await files.update("k", b"third", {"content-type": "video/mp4"})  # PUT always overwrites
    assert await files.download("k") == b"third"


async def test_server_side_copy_metadata_rules_and_no_overwrite(
    client: AsyncStorageClient, http: httpx.AsyncClient
) -> None:
    await client.create_bucket("v", options={"allowed_mime_types": ["video/*"]})
    await client.create_bucket("img", options={"allowed_mime_types": ["image/*"]})
    files = client.from_("v")
    await files.upload(
        "src.mp4", b"frames", {"content-type": "video/mp4", "metadata": {"who": "source"}}
    )
    # storage3's copy: copyMetadata defaults to true, the user metadata comes along.
    await files.copy("src.mp4", "a/copy.mp4")
    assert await files.download("a/copy.mp4") == b"frames"
    info = await files.info("a/copy.mp4")
    assert info["metadata"] == {"who": "source"}
    assert info["content_type"] == "video/mp4"
    # copyMetadata false: the x-metadata header (base64 JSON) is the copy's user metadata.
    header = base64.b64encode(json.dumps({"sha256": "abc"}).encode()).decode()
    body = {"bucketId": "v", "sourceKey": "src.mp4", "destinationKey": "b.mp4",
            "copyMetadata": False}
    answer = await http.post("/object/copy", json=body, headers={"x-metadata": header})
    assert answer.status_code == 200, answer.text
    assert answer.json()["Key"] == "v/b.mp4"
    info = await files.info("b.mp4")
    assert (info["metadata"], info["content_type"]) == ({"sha256": "abc"}, "video/mp4")
    # Never over an existing object (unless x-upsert); the destination bucket's rules are not
    # checked (as on the real server).
    again = await http.post("/object/copy", json=body, headers={"x-metadata": header})
    assert (again.status_code, again.json()["statusCode"], again.json()["error"]) == (
        400, "409", "Duplicate"
    )
    wrong_type = await http.post(
        "/object/copy", json={**body, "destinationBucket": "img", "destinationKey": "c.mp4"}
    )
    assert wrong_type.status_code == 200, wrong_type.text
    missing = await http.post("/object/copy", json={**body, "sourceKey": "nope.mp4"})
    assert (missing.json()["statusCode"], missing.json()["error"]) == ("404", "not_found")
    # A copy is its own object: removing the source leaves it readable.
    await files.remove(["src.mp4"])
    assert await files.download("b.mp4") == b"frames"


async def test_limits_bucket_and_global(
    client: AsyncStorageClient, storage_server: SupabaseStorageServer
) -> None:
    await client.create_bucket("small", options={"file_size_limit": 10})
    too_large = await raises(client.from_("small").upload("k", b"x" * 11, {"content-type": "a/b"}))
    assert (too_large.status, too_large.code) == ("413", "Payload too large")
    storage_server.state.global_file_size_limit = 20
    await client.create_bucket("big")
    global_limit = await raises(client.from_("big").upload("k", b"x" * 21, {"content-type": "a/b"}))
    assert global_limit.status == "413"
    above = await raises(client.create_bucket("huge", options={"file_size_limit": 1000}))
    assert above.status == "413"


async def test_a_binary_upload_one_byte_over_the_limit_is_a_clean_413(
    client: AsyncStorageClient, http: httpx.AsyncClient
) -> None:
    # The byte over the limit arrives with the body's last chunk: the answer must still be the
    # documented 400/"413", not a server error.
    await client.create_bucket("tiny", options={"file_size_limit": 1000})
    headers = {"content-type": "a/b"}
    over = await http.post("object/tiny/over", content=b"x" * 1001, headers=headers)
    assert over.status_code == 400, over.text
    assert over.json()["statusCode"] == "413"
    exact = await http.post("object/tiny/exact", content=b"x" * 1000, headers=headers)
    assert exact.status_code == 200, exact.text


async def test_download_range_head_info_list_and_remove(
    client: AsyncStorageClient, http: httpx.AsyncClient
) -> None:
    await client.create_bucket("v")
    files = client.from_("v")
    for name in ("dir/a.mp4", "dir/b.mp4", "dir/sub/c.mp4", "top.mp4"):
        await files.upload(name, name.encode(), {"content-type": "video/mp4"})
    ranged = await http.get("object/authenticated/v/dir/a.mp4", headers={"Range": "bytes=4-"})
    assert (ranged.status_code, ranged.content) == (206, b"a.mp4")
    head = await http.head("object/v/dir/a.mp4")
    assert (head.status_code, head.headers["content-length"], head.headers["content-type"]) == (
        200,
        "9",
        "video/mp4",
    )
    assert head.headers["etag"].startswith('"')
    names = [(e["name"], e["id"] is None) for e in await files.list("dir")]
    assert names == [("sub", True), ("a.mp4", False), ("b.mp4", False)]  # folders first
    removed = await files.remove(["dir/a.mp4", "does/not/exist"])
    assert [r["name"] for r in removed] == ["dir/a.mp4"]
    missing = await raises(files.info("dir/a.mp4"))
    assert (missing.status, missing.code) == ("404", "not_found")
    assert not await files.exists("dir/a.mp4")
    assert await files.exists("dir/b.mp4")


async def test_signing_single_batch_and_expiry(
    client: AsyncStorageClient, storage_server: SupabaseStorageServer
) -> None:
    await client.create_bucket("v")
    files = client.from_("v")
    await files.upload("a b.mp4", b"spaced", {"content-type": "video/mp4"})
    single = await files.create_signed_url("a b.mp4", 60)
    batch = await files.create_signed_urls(["a b.mp4", "missing.mp4"], 60)
    assert batch[1]["signedURL"] is None
    assert batch[1]["error"]
    async with httpx.AsyncClient() as plain:
        for url in (single["signedURL"], batch[0]["signedURL"]):
            assert url is not None
            assert (await plain.get(url)).content == b"spaced"
    missing = await raises(files.create_signed_url("missing.mp4", 60))
    assert missing.status == "404"
    # A token the server signed a while ago, now expired.
    token = make_jwt(storage_server.state.jwt_secret, expires_in_s=-1, url="v/a b.mp4")
    async with httpx.AsyncClient() as plain:
        expired = await plain.get(f"{storage_server.url}object/sign/v/a%20b.mp4?token={token}")
    assert expired.status_code == 400
    assert expired.json()["message"] == '"exp" claim timestamp check failed'


async def test_public_route_only_for_public_buckets(
    client: AsyncStorageClient, storage_server: SupabaseStorageServer
) -> None:
    await client.create_bucket("pub", options={"public": True})
    await client.create_bucket("priv")
    for bucket in ("pub", "priv"):
        await client.from_(bucket).upload("k.png", b"img", {"content-type": "image/png"})
    async with httpx.AsyncClient() as plain:
        assert (
            await plain.get(await client.from_("pub").get_public_url("k.png"))
        ).content == b"img"
        hidden = await plain.get(await client.from_("priv").get_public_url("k.png"))
    assert hidden.status_code == 400
    assert hidden.json()["error"] == "Bucket not found"


@pytest.mark.parametrize("bad", ["wrong", "expired", "none"])
async def test_jwt_is_checked(storage_server: SupabaseStorageServer, bad: str) -> None:
    headers = {
        "wrong": {"Authorization": "Bearer " + make_jwt("x" * 40)},
        "expired": {
            "Authorization": "Bearer " + make_jwt(storage_server.state.jwt_secret, expires_in_s=-5)
        },
        "none": {},
    }[bad]
    async with AsyncStorageClient(storage_server.url, headers) as c:
        error = await raises(c.list_buckets())
    if bad == "none":  # the request does not even validate
        assert (error.status, error.code) == ("400", "Error")
    else:
        assert (error.status, error.code) == ("403", "Unauthorized")


async def test_anon_role_cannot_write(
    client: AsyncStorageClient, storage_server: SupabaseStorageServer
) -> None:
    await client.create_bucket("v")
    key = storage_server.anon_key()
    async with AsyncStorageClient(
        storage_server.url, {"Authorization": f"Bearer {key}", "apikey": key}
    ) as anon:
        error = await raises(anon.from_("v").upload("k", b"x", {"content-type": "a/b"}))
        assert (error.status, error.code) == ("403", "Unauthorized")
        assert await anon.list_buckets() == []  # private buckets are hidden by RLS


async def test_keys_outside_the_documented_set_are_invalid(
    http: httpx.AsyncClient, client: AsyncStorageClient
) -> None:
    await client.create_bucket("v")
    answer = await http.post(
        "object/v/caf%C3%A9.mp4", content=b"x", headers={"content-type": "video/mp4"}
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "InvalidKey"


async def test_tus_protocol_statuses(http: httpx.AsyncClient, client: AsyncStorageClient) -> None:
    await client.create_bucket(
        "v", options={"file_size_limit": 100, "allowed_mime_types": ["video/*"]}
    )

    def meta(**values: str) -> str:
        return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())

    tus = {"Tus-Resumable": "1.0.0"}
    assert (await http.post("upload/resumable", headers={"Upload-Length": "5"})).status_code == 412
    created = await http.post(
        "upload/resumable",
        headers={
            **tus,
            "Upload-Length": "5",
            "Upload-Metadata": meta(
                bucketName="v",
                objectName="k.mp4",
                contentType="video/mp4",
                metadata=json.dumps({"sha256": "s"}),
            ),
        },
    )
    assert created.status_code == 201
    location = created.headers["location"]
    upload = "upload/resumable/" + location.rsplit("/", 1)[1]
    patch = {**tus, "Content-Type": "application/offset+octet-stream"}
    assert (
        await http.patch(upload, headers={**patch, "Upload-Offset": "1"}, content=b"x")
    ).status_code == 409
    assert (
        await http.patch(upload, headers={**tus, "Upload-Offset": "0"}, content=b"x")
    ).status_code == 403  # no Content-Type at all
    assert (
        await http.patch(upload, headers={**tus, "Upload-Offset": "0", "Content-Type": "a/b"},
                         content=b"x")
    ).status_code == 415
    first = await http.patch(upload, headers={**patch, "Upload-Offset": "0"}, content=b"ab")
    assert (first.status_code, first.headers["upload-offset"]) == (204, "2")
    head = await http.head(upload, headers=tus)
    assert (head.headers["upload-offset"], head.headers["upload-length"]) == ("2", "5")
    assert head.headers["cache-control"] == "no-store"
    last = await http.patch(upload, headers={**patch, "Upload-Offset": "2"}, content=b"cde")
    assert (last.status_code, last.headers["upload-offset"]) == (204, "5")
    info = await client.from_("v").info("k.mp4")
    assert (info["size"], info["metadata"]) == (5, {"sha256": "s"})
    assert await client.from_("v").download("k.mp4") == b"abcde"
    again = await http.post(
        "upload/resumable",
        headers={
            **tus,
            "Upload-Length": "5",
            "Upload-Metadata": meta(bucketName="v", objectName="k.mp4", contentType="video/mp4"),
        },
    )
    assert (again.status_code, again.text) == (409, "The resource already exists")
    too_big = await http.post(
        "upload/resumable",
        headers={
            **tus,
            "Upload-Length": "101",
            "Upload-Metadata": meta(bucketName="v", objectName="big.mp4", contentType="video/mp4"),
        },
    )
    assert too_big.status_code == 413
    wrong_type = await http.post(
        "upload/resumable",
        headers={
            **tus,
            "Upload-Length": "1",
            "Upload-Metadata": meta(bucketName="v", objectName="x.png", contentType="image/png"),
        },
    )
    assert wrong_type.status_code == 415
    gone = await http.head("upload/resumable/bm90aGluZw", headers=tus)
    assert gone.status_code == 404


def test_sizes_and_mime_matching() -> None:
    assert parse_size("500MB") == 500_000_000
    assert parse_size(7) == 7
    assert parse_size("3B") == 3
    assert parse_size(None) is None
    assert mime_allowed("video/mp4", ["video/*"])
    assert not mime_allowed("image/png", ["video/*"])
    assert mime_allowed("anything", None)
    assert not mime_allowed("video", ["video/*"])
    assert not mime_allowed("image/webp;q=1", ["image/webp"])  # parameters are not stripped
