"""Serving rendered files: streamed from disk with HTTP Range, optionally through a signed
"CDN" redirect, and (fault injection) cut off mid-body."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets

import anyio
from starlette.responses import FileResponse, Response
from starlette.types import Receive, Scope, Send

from reelvault_providersim.engine import VARIANTS, ContentFile, Variant
from reelvault_providersim.faults import ContentCut

CHUNK = 1024 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


# Files up to this size are read on the event loop (a page-cache read of a few hundred KB
# takes microseconds); larger ones stream through worker threads as Starlette does.
SMALL_FILE_BYTES = 256 * 1024


class _FileResponse(FileResponse):
    # Bigger reads than Starlette's 64 KiB: benchmarks pull videos of hundreds of MB.
    chunk_size = CHUNK

    async def _handle_simple(
        self, send: Send, send_header_only: bool, send_pathsend: bool = False
    ) -> None:
        # Starlette opens, reads and closes in worker threads (three thread hops, plus the
        # stat that file_response does up front): for the fast mode's small clips and
        # thumbnails that was most of the cost of serving them. Same headers, one body.
        size = self.stat_result.st_size if self.stat_result is not None else None
        if send_header_only or send_pathsend or size is None or size > SMALL_FILE_BYTES:
            await super()._handle_simple(send, send_header_only, send_pathsend)
            return
        with open(self.path, "rb") as handle:  # noqa: ASYNC230 - small, from the page cache
            body = handle.read(size + 1)
        if len(body) != size:  # changed since the stat: let Starlette stream what is there
            await super()._handle_simple(send, send_header_only, send_pathsend)
            return
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


def file_response(content: ContentFile) -> Response:
    """Starlette's FileResponse streams in chunks and answers Range requests (206/416)."""
    return _FileResponse(
        content.path,
        media_type=content.media_type,
        filename=content.filename,
        content_disposition_type="inline",
        # Stat here (microseconds) rather than in a worker thread as Starlette would.
        stat_result=os.stat(content.path),
    )


class CutFileResponse(Response):
    """Headers for the whole body (or the requested range), then only part of it, then the
    connection is dropped: what a client sees when a download breaks off."""

    def __init__(self, content: ContentFile, cut: ContentCut, range_header: str | None) -> None:
        super().__init__(media_type=content.media_type)
        self.path = content.path
        size = content.path.stat().st_size
        start, end = 0, size
        self.status_code = 200
        match = _RANGE.match(range_header or "")
        if match and (match.group(1) or match.group(2)):
            first, last = match.group(1), match.group(2)
            if first:
                start = int(first)
                end = min(size, int(last) + 1) if last else size
            else:
                start, end = max(0, size - int(last)), size
            if start < end:
                self.status_code = 206
                self.headers["content-range"] = f"bytes {start}-{end - 1}/{size}"
            else:
                start, end = 0, size
        self.start = start
        length = end - start
        self.headers["content-length"] = str(length)
        self.headers["accept-ranges"] = "bytes"
        budget = cut.after_bytes if cut.after_bytes is not None else int(length * cut.fraction)
        self.send_bytes = min(budget, max(0, length - 1))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        remaining = self.send_bytes
        async with await anyio.open_file(self.path, "rb") as f:
            await f.seek(self.start)
            while remaining > 0:
                chunk = await f.read(min(CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        # Returning with the body unfinished makes the server drop the connection (uvicorn
        # logs one line), which is exactly a download broken off mid-body.


class ContentTokens:
    """Short-lived signed tokens for the unauthenticated redirect target, like a CDN's signed
    URL: ``<video_id>.<variant>.<expiry>.<signature>``."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def make(self, video_id: str, variant: Variant, expires_at: int) -> str:
        payload = f"{video_id}.{variant}.{expires_at}"
        return f"{payload}.{self._sign(payload)}"

    def check(self, token: str, now: float) -> tuple[str, Variant] | None:
        parts = token.split(".")
        if len(parts) != 4:
            return None
        video_id, variant, expires, signature = parts
        if not hmac.compare_digest(signature, self._sign(f"{video_id}.{variant}.{expires}")):
            return None
        if not expires.isdigit() or int(expires) < now:
            return None
        for known in VARIANTS:
            if variant == known:
                return video_id, known
        return None

    def _sign(self, payload: str) -> str:
        digest = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:24]).decode().rstrip("=")
