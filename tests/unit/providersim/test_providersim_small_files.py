"""Content responses: small files are read at once on the event loop, large ones streamed by
Starlette; both answer with the same headers and bytes, and Range still works."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from reelvault_providersim.content import SMALL_FILE_BYTES, file_response
from reelvault_providersim.engine import ContentFile
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route


def client_for(path: Path, *, plain: bool = False) -> httpx.AsyncClient:
    content = ContentFile(path, "video/mp4", "video_1.mp4")

    async def serve(request: Request) -> Response:
        if plain:  # Starlette's own, for comparison
            return FileResponse(content.path, media_type=content.media_type,
                                filename=content.filename, content_disposition_type="inline")
        return file_response(content)

    app = Starlette(routes=[Route("/content", serve, methods=["GET", "HEAD"])])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim")


@pytest.mark.parametrize("size", [0, 1, 48_000, SMALL_FILE_BYTES, SMALL_FILE_BYTES + 1,
                                  3 * 1024 * 1024 + 17])
async def test_same_bytes_and_headers_as_starlettes_file_response(
    tmp_path: Path, size: int
) -> None:
    path = tmp_path / "video.mp4"
    path.write_bytes(bytes(i % 251 for i in range(size)))
    async with client_for(path) as ours, client_for(path, plain=True) as plain:
        got, expected = await ours.get("/content"), await plain.get("/content")
        head = await ours.head("/content")
    assert got.status_code == expected.status_code == 200
    assert got.content == expected.content == path.read_bytes()
    for name in ("content-length", "content-type", "content-disposition", "accept-ranges",
                 "etag", "last-modified"):
        assert got.headers[name] == expected.headers[name], name
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(size)


async def test_range_requests_of_small_files_still_get_206(tmp_path: Path) -> None:
    path = tmp_path / "video.mp4"
    path.write_bytes(bytes(range(200)))
    async with client_for(path) as ours:
        part = await ours.get("/content", headers={"range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.content == bytes(range(10, 20))
    assert part.headers["content-range"] == "bytes 10-19/200"
