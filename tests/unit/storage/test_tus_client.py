"""The TUS client's protocol logic against an in-memory TUS endpoint (httpx.MockTransport):
metadata encoding, chunking, and resuming from the server's offset after an interruption."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from reelvault_common.storage import PayloadTooLarge, TransientStorageError
from reelvault_common.storage.retry import RetryPolicy
from reelvault_common.storage.tus import (
    ObjectExists,
    TusUploader,
    UploadGone,
    decode_metadata,
    encode_metadata,
)

ENDPOINT = "http://storage.test/upload/resumable"
FAST = RetryPolicy(attempts=4, base_delay_s=0.001, max_delay_s=0.002)


def test_metadata_round_trips_and_is_base64() -> None:
    metadata = {"bucketName": "videos", "objectName": "a b/ç.mp4", "metadata": '{"sha256":"x"}'}
    header = encode_metadata(metadata)
    assert header.split(",")[0] == "bucketName " + base64.b64encode(b"videos").decode()
    assert decode_metadata(header) == metadata
    assert decode_metadata("flag") == {"flag": ""}


@pytest.mark.parametrize("key", ["", "with space", "a,b"])
def test_metadata_keys_are_checked(key: str) -> None:
    with pytest.raises(ValueError, match="invalid TUS metadata key"):
        encode_metadata({key: "v"})


@dataclass
class FakeTus:
    """Just enough of a TUS server; ``on_patch`` may interfere with the n-th PATCH."""

    length: int = 0
    data: bytearray = field(default_factory=bytearray)
    log: list[tuple[str, int]] = field(default_factory=list)
    creates: int = 0
    on_patch: Callable[[int, httpx.Request], Awaitable[httpx.Response | None]] | None = None
    patches: int = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["tus-resumable"] == "1.0.0"
        assert request.headers["authorization"] == "Bearer k"
        if request.method == "POST":
            self.creates += 1
            self.length = int(request.headers["upload-length"])
            self.data = bytearray()
            self.log.append(("POST", 0))
            # A Location on another host: the client must stay on its own endpoint.
            return httpx.Response(201, headers={"Location": f"http://elsewhere/x/up{self.creates}"})
        assert request.url.path == f"/upload/resumable/up{self.creates}", request.url
        if request.method == "DELETE":  # termination of an unfinished upload
            self.log.append(("DELETE", len(self.data)))
            return httpx.Response(204)
        if request.method == "HEAD":
            self.log.append(("HEAD", len(self.data)))
            return httpx.Response(200, headers={"Upload-Offset": str(len(self.data))})
        offset = int(request.headers["upload-offset"])
        self.patches += 1
        self.log.append(("PATCH", offset))
        if self.on_patch is not None:
            answer = await self.on_patch(self.patches, request)
            if answer is not None:
                return answer
        if offset != len(self.data):
            return httpx.Response(409, text="Upload-Offset conflict\n")
        body = await request.aread()
        assert len(body) == int(request.headers["content-length"])
        self.data += body
        return httpx.Response(204, headers={"Upload-Offset": str(len(self.data))})


async def upload(server: FakeTus, tmp_path: Path, data: bytes, chunk: int = 10) -> None:
    path = tmp_path / "spool"
    path.write_bytes(data)
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
        uploader = TusUploader(
            http, ENDPOINT, {"Authorization": "Bearer k"}, chunk_size=chunk, retry=FAST
        )
        await uploader.upload(path, len(data), {"bucketName": "b", "objectName": "k"}, "b/k")


DATA = bytes(range(256)) * 2  # 512 bytes


async def test_uploads_in_chunks(tmp_path: Path) -> None:
    server = FakeTus()
    await upload(server, tmp_path, DATA, chunk=200)
    assert bytes(server.data) == DATA
    assert server.log == [("POST", 0), ("PATCH", 0), ("PATCH", 200), ("PATCH", 400)]


async def test_an_interrupted_patch_resumes_from_the_servers_offset(tmp_path: Path) -> None:
    async def drop_second(n: int, request: httpx.Request) -> httpx.Response | None:
        if n == 2:  # the server keeps 50 bytes of this PATCH, then the connection drops
            server.data += (await request.aread())[:50]
            raise httpx.ReadError("connection reset", request=request)
        return None

    server = FakeTus(on_patch=drop_second)
    await upload(server, tmp_path, DATA, chunk=200)
    assert bytes(server.data) == DATA
    assert server.log == [
        ("POST", 0),
        ("PATCH", 0),
        ("PATCH", 200),
        ("HEAD", 250),
        ("PATCH", 250),  # the rest of the interrupted piece ...
        ("PATCH", 400),  # ... and the pieces stay on the chunk-size grid
    ]


async def test_an_offset_conflict_is_settled_with_head(tmp_path: Path) -> None:
    async def conflict_once(n: int, request: httpx.Request) -> httpx.Response | None:
        return httpx.Response(409, text="Upload-Offset conflict\n") if n == 1 else None

    server = FakeTus(on_patch=conflict_once)
    await upload(server, tmp_path, DATA, chunk=512)
    assert server.log == [("POST", 0), ("PATCH", 0), ("HEAD", 0), ("PATCH", 0)]


async def test_a_duplicate_is_not_mistaken_for_an_offset_conflict(tmp_path: Path) -> None:
    async def duplicate(n: int, request: httpx.Request) -> httpx.Response | None:
        return httpx.Response(409, text="The resource already exists")

    with pytest.raises(ObjectExists):
        await upload(FakeTus(on_patch=duplicate), tmp_path, DATA)


async def test_refusals_are_not_retried(tmp_path: Path) -> None:
    async def too_large(n: int, request: httpx.Request) -> httpx.Response | None:
        return httpx.Response(413, text="Maximum size exceeded\n")

    server = FakeTus(on_patch=too_large)
    with pytest.raises(PayloadTooLarge):
        await upload(server, tmp_path, DATA)
    assert server.patches == 1


async def test_a_server_that_stays_down_is_given_up_on(tmp_path: Path) -> None:
    async def down(n: int, request: httpx.Request) -> httpx.Response | None:
        return httpx.Response(503, text="unavailable")

    server = FakeTus(on_patch=down)
    with pytest.raises(TransientStorageError, match="gave up after 4 attempts"):
        await upload(server, tmp_path, DATA)
    assert server.patches == 4


async def test_a_forgotten_upload_is_restarted_once(tmp_path: Path) -> None:
    async def gone(n: int, request: httpx.Request) -> httpx.Response | None:
        return httpx.Response(404, text="not found") if n in (2, 5) else None

    server = FakeTus(on_patch=gone)
    with pytest.raises(UploadGone):
        await upload(server, tmp_path, DATA, chunk=200)
    assert server.creates == 2

    server = FakeTus(on_patch=lambda n, r: _none_or_404(n == 2))
    await upload(server, tmp_path, DATA, chunk=200)
    assert server.creates == 2
    assert bytes(server.data) == DATA


async def _none_or_404(gone: bool) -> httpx.Response | None:
    return httpx.Response(404, text="not found") if gone else None
