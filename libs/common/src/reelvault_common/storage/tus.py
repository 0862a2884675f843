"""A small TUS 1.0.0 client (core protocol + creation) on httpx, for Supabase's
``/upload/resumable``.

Why not a library: ``tuspy`` 1.1.0 (the maintained Python client) has an ``AsyncUploader`` whose
resume path calls the *synchronous* ``requests.head`` inside the event loop, opens a fresh
aiohttp session per chunk, retries after a fixed delay, and pulls in requests + aiohttp + tinydb
next to the httpx stack storage3 already uses. ``aiotus`` 1.1.0 is async but aiohttp + tenacity
based, so it would be a second HTTP stack with its own errors and auth handling, and it gives no
hook to map Supabase's statuses (409 Duplicate vs 409 offset conflict). The part of TUS we need
is small: POST to create, PATCH chunks with ``Upload-Offset``, HEAD to learn the server's offset
after an interrupted PATCH and resume from there. That is this module, on the backend's own
``httpx.AsyncClient`` (one connection pool, one timeout policy, one error mapping).

Supabase specifics: ``Upload-Metadata`` carries ``bucketName``, ``objectName``, ``contentType``,
``cacheControl`` and ``metadata`` (user metadata as JSON); ``x-upsert`` decides overwrite; chunks
are 6 MB (Supabase's documented TUS chunk size); errors are real HTTP statuses with a plain-text
message.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import anyio
import httpx

from reelvault_common.storage.interface import (
    StorageError,
    StreamLengthMismatch,
    TransientStorageError,
)
from reelvault_common.storage.retry import RetryPolicy, retrying
from reelvault_common.storage.supabase_errors import (
    ObjectExists,
    ServerError,
    to_storage_error,
    transport_error,
)

log = logging.getLogger(__name__)

TUS_VERSION = "1.0.0"
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
SUPABASE_CHUNK_SIZE = 6 * 1024 * 1024
READ_PIECE = 1024 * 1024


def encode_metadata(metadata: Mapping[str, str]) -> str:
    """``Upload-Metadata``: comma-separated ``key base64(value)`` pairs."""
    pairs = []
    for key, value in metadata.items():
        if not key or any(c in key for c in " ,") or not key.isascii():
            raise ValueError(f"invalid TUS metadata key {key!r}")
        pairs.append(f"{key} {base64.b64encode(value.encode()).decode('ascii')}")
    return ",".join(pairs)


def decode_metadata(header: str) -> dict[str, str]:
    """The inverse of ``encode_metadata`` (a key without value decodes to "")."""
    result: dict[str, str] = {}
    for pair in header.split(","):
        parts = pair.strip().split(" ")
        if not parts or not parts[0]:
            continue
        if len(parts) > 2:
            raise ValueError(f"invalid Upload-Metadata pair {pair!r}")
        value = base64.b64decode(parts[1], validate=True).decode() if len(parts) == 2 else ""
        result[parts[0]] = value
    return result


_VERSION = re.compile(
    r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$", re.IGNORECASE
)


def upload_version(url: str) -> str | None:
    """The object version a Supabase TUS upload creates: its id (the URL's last segment) is
    base64url of ``[tenant/]bucket/name<separator>version``, the version a UUID."""
    segment = url.rstrip("/").rsplit("/", 1)[-1]
    try:
        decoded = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    found = _VERSION.search(decoded)
    return found.group(1).lower() if found else None


class UploadGone(StorageError):
    """The server no longer knows the upload (404/410): it expired or was terminated."""

    code = "upload_gone"


class CannotResume(TransientStorageError):
    """A streamed upload was interrupted where the bytes in hand cannot bridge the gap: the
    whole put has to be tried again (transient, from the caller's point of view)."""


class OffsetConflict(StorageError):
    """PATCH at an offset the server does not have: learn the real one with HEAD."""

    code = "offset_conflict"


@dataclass
class TusStats:
    """What one upload took; logged, and handy in tests and benchmarks."""

    creates: int = 0
    patches: int = 0
    heads: int = 0
    bytes_sent: int = 0
    resumes: int = 0
    url: str = ""  # the upload's URL (its id names the object version it creates)


class TusUploader:
    """Uploads through TUS: a local file (``upload``) or a stream of known length
    (``upload_stream``), both in pieces of ``chunk_size``, resuming an interrupted piece from
    the server's offset."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        endpoint: str,
        headers: Mapping[str, str],
        *,
        chunk_size: int = SUPABASE_CHUNK_SIZE,
        retry: RetryPolicy | None = None,
        max_restarts: int = 1,
    ) -> None:
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        self._http = http
        self._endpoint = endpoint.rstrip("/")
        self._headers = {**headers, "Tus-Resumable": TUS_VERSION}
        self._chunk_size = chunk_size
        self._retry = retry or RetryPolicy()
        self._max_restarts = max_restarts

    # --- protocol steps -------------------------------------------------------------------
    def _upload_url(self, location: str) -> str:
        # Supabase builds Location from Host/X-Forwarded-* headers, which a proxy can get wrong
        # (scheme, prefix). The upload id is the last path segment; we address it under the
        # endpoint we were configured with, so auth headers never go to another origin.
        upload_id = httpx.URL(location).path.rstrip("/").rsplit("/", 1)[-1]
        if not upload_id:
            raise StorageError(f"TUS create answered an unusable Location {location!r}")
        return f"{self._endpoint}/{upload_id}"

    async def create(
        self, length: int, metadata: Mapping[str, str], what: str, extra: Mapping[str, str]
    ) -> str:
        headers = {
            **self._headers,
            **extra,
            "Upload-Length": str(length),
            "Upload-Metadata": encode_metadata(metadata),
        }
        try:
            response = await self._http.post(self._endpoint, headers=headers, content=b"")
        except httpx.HTTPError as exc:
            raise transport_error(exc, f"TUS create {what}") from exc
        if response.status_code != 201:
            raise to_storage_error(ServerError.from_response(response), f"TUS create {what}")
        location = response.headers.get("location")
        if not location:
            raise StorageError(f"TUS create {what}: 201 without a Location header")
        return self._upload_url(location)

    async def head(self, url: str, what: str) -> int:
        try:
            response = await self._http.head(url, headers=self._headers)
        except httpx.HTTPError as exc:
            raise transport_error(exc, f"TUS HEAD {what}") from exc
        if response.status_code in (404, 410):
            raise UploadGone(f"TUS HEAD {what}: the upload is gone (HTTP {response.status_code})")
        if response.status_code not in (200, 204):
            raise to_storage_error(ServerError.from_response(response), f"TUS HEAD {what}")
        return _offset_header(response, what)

    async def patch(
        self, url: str, offset: int, body: bytes | AsyncIterator[bytes], length: int, what: str
    ) -> int:
        headers = {
            **self._headers,
            "Upload-Offset": str(offset),
            "Content-Type": OFFSET_CONTENT_TYPE,
            # Explicit, so a streamed body goes out with a length rather than chunked.
            "Content-Length": str(length),
        }
        try:
            response = await self._http.patch(url, headers=headers, content=body)
        except httpx.HTTPError as exc:
            raise transport_error(exc, f"TUS PATCH {what} at {offset}") from exc
        if response.status_code in (200, 204):
            return _offset_header(response, what)
        if response.status_code in (404, 410):
            raise UploadGone(f"TUS PATCH {what}: the upload is gone (HTTP {response.status_code})")
        error = ServerError.from_response(response)
        if response.status_code == 409 and "already exists" not in error.message.lower():
            raise OffsetConflict(f"TUS PATCH {what} at {offset}: {error.describe()}")
        raise to_storage_error(error, f"TUS PATCH {what} at {offset}")

    # --- the whole upload -----------------------------------------------------------------
    async def upload(
        self,
        path: Path,
        length: int,
        metadata: Mapping[str, str],
        what: str,
        extra_headers: Mapping[str, str] | None = None,
    ) -> TusStats:
        """Send ``path`` (``length`` bytes). A file can be read again, so an upload the server
        forgot (expired, terminated) starts over from its first byte, ``max_restarts`` times.
        Raises ``ObjectExists`` on 409 Duplicate, typed errors on refusals,
        ``TransientStorageError`` once the retries are spent."""
        # A restart is a fresh upload, not a retry of a request: no backoff in between.
        restarts = RetryPolicy(attempts=self._max_restarts + 1, base_delay_s=0.0, max_delay_s=0.0)
        return await retrying(  # each try reads the file from its first byte
            f"TUS {what}",
            lambda: self._send(_file_chunks(path), length, metadata, what, extra_headers),
            restarts,
            retry_on=_is_upload_gone,
            wrap_last_error=False,
        )

    async def upload_stream(
        self,
        chunks: AsyncIterable[bytes],
        length: int,
        metadata: Mapping[str, str],
        what: str,
        extra_headers: Mapping[str, str] | None = None,
    ) -> TusStats:
        """Send ``length`` bytes from ``chunks`` as they arrive. A stream cannot be rewound: an
        upload the server forgot is ``CannotResume`` (transient for the caller, who starts
        over)."""
        try:
            return await self._send(chunks, length, metadata, what, extra_headers)
        except UploadGone as exc:
            raise CannotResume(f"{exc.message}; a streamed upload has to start over") from exc

    async def _send(
        self,
        chunks: AsyncIterable[bytes],
        length: int,
        metadata: Mapping[str, str],
        what: str,
        extra_headers: Mapping[str, str] | None,
    ) -> TusStats:
        """Create an upload and send ``chunks`` in pieces of ``chunk_size``: while one piece is
        PATCHed, the next one is read from the source. Only the piece in flight is kept (for a
        resume within it after an interrupted PATCH), so memory stays about three pieces.

        On any error the upload is terminated (best effort), so nothing half-sent lingers. A
        source longer or shorter than ``length`` is ``StreamLengthMismatch``."""
        stats = TusStats()
        extra = dict(extra_headers or {})

        async def create() -> str:
            stats.creates += 1
            return await self.create(length, metadata, what, extra)

        url = await retrying(f"TUS create {what}", create, self._retry)
        stats.url = url
        pieces: asyncio.Queue[_Piece | None] = asyncio.Queue(maxsize=1)

        async def feed() -> None:
            try:
                await _cut_into_pieces(chunks, length, self._chunk_size, pieces, what)
            except asyncio.CancelledError:
                raise
            except BaseException:
                await pieces.put(None)  # wake the sender; the error surfaces at ``await reader``
                raise
            await pieces.put(None)

        reader = asyncio.create_task(feed(), name="tus-pieces")
        try:
            while (piece := await pieces.get()) is not None:
                await self._send_piece(url, piece, length, what, stats)
            await reader  # the source's own errors (or a length mismatch) surface here
        except BaseException:
            if not reader.done():
                reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
            await self._terminate(url, what)
            raise
        log.info(
            "TUS %s done: %d bytes, %d PATCH, %d HEAD, %d resumes, %d bytes sent",
            what, length, stats.patches, stats.heads, stats.resumes, stats.bytes_sent,
        )
        return stats

    async def _send_piece(
        self, url: str, piece: _Piece, length: int, what: str, stats: TusStats
    ) -> None:
        """PATCH one piece; after an interruption, HEAD and send what the server lacks of it.
        Every step forward starts the count of failures afresh."""
        position = _Position(piece.start)
        while position.offset < piece.end:
            await retrying(
                f"TUS {what}",
                lambda: self._advance(url, piece, position, length, what, stats),
                self._retry,
                retry_on=_is_resumable,
            )

    async def _advance(
        self, url: str, piece: _Piece, position: _Position, length: int, what: str,
        stats: TusStats,
    ) -> None:
        """One step within a piece: learn the server's offset first if the last PATCH was
        interrupted, then PATCH the rest of the piece from there."""
        if position.must_sync:
            stats.heads += 1
            position.offset = await self.head(url, what)
            position.must_sync = False
            stats.resumes += 1
            if not piece.start <= position.offset <= piece.end:
                raise CannotResume(
                    f"TUS {what}: the server is at offset {position.offset}, outside the piece "
                    f"in hand ({piece.start}-{piece.end}); a streamed upload cannot go back"
                )
            log.info("TUS %s: resuming at server offset %d of %d", what, position.offset, length)
            if position.offset == piece.end:
                return
        offset = position.offset
        stats.patches += 1
        try:
            new_offset = await self.patch(
                url, offset, piece.body(offset, stats), piece.end - offset, what
            )
        except (TransientStorageError, OffsetConflict):
            position.must_sync = True  # how much of it arrived is the server's to say
            raise
        if not offset < new_offset <= piece.end:
            raise StorageError(
                f"TUS PATCH {what}: server offset went from {offset} to {new_offset}"
            )
        position.offset = new_offset

    async def _terminate(self, url: str, what: str) -> None:
        """DELETE an unfinished upload (termination extension); failures only logged."""
        try:
            await self._http.delete(url, headers=self._headers)
        except httpx.HTTPError as exc:
            log.info("TUS %s: could not terminate the unfinished upload: %r", what, exc)


@dataclass
class _Position:
    """Where a piece's upload stands: the server's offset, and whether it must be asked again
    (after an interrupted PATCH)."""

    offset: int
    must_sync: bool = False


def _is_resumable(exc: BaseException) -> bool:
    """Worth a HEAD and another PATCH: transport trouble, 5xx, an offset disagreement; not a
    streamed upload that cannot go back."""
    return isinstance(exc, (TransientStorageError, OffsetConflict)) and not isinstance(
        exc, CannotResume
    )


def _is_upload_gone(exc: BaseException) -> bool:
    return isinstance(exc, UploadGone)


@dataclass
class _Piece:
    """Bytes ``start``..``end`` of the upload, as the source's chunks (no joining)."""

    start: int
    end: int
    chunks: list[bytes]

    async def body(self, offset: int, stats: TusStats) -> AsyncIterator[bytes]:
        position = self.start
        for chunk in self.chunks:
            chunk_end = position + len(chunk)
            if chunk_end > offset:
                part = chunk if position >= offset else chunk[offset - position :]
                stats.bytes_sent += len(part)
                yield part
            position = chunk_end


async def _cut_into_pieces(
    chunks: AsyncIterable[bytes],
    length: int,
    piece_size: int,
    out: asyncio.Queue[_Piece | None],
    what: str,
) -> None:
    """Regroup the source's chunks into pieces of exactly ``piece_size`` (the last one shorter)
    and hand them over one by one; check that the source has exactly ``length`` bytes."""
    start = 0
    held: list[bytes] = []
    held_size = 0
    async for chunk in chunks:
        if start + held_size + len(chunk) > length:
            raise StreamLengthMismatch(
                f"TUS {what}: the source has more than the announced {length} bytes"
            )
        while held_size + len(chunk) >= piece_size:
            cut = piece_size - held_size
            held.append(chunk[:cut])
            await out.put(_Piece(start, start + piece_size, held))
            start, held, held_size, chunk = start + piece_size, [], 0, chunk[cut:]
        if chunk:
            held.append(chunk)
            held_size += len(chunk)
    if start + held_size != length:
        raise StreamLengthMismatch(
            f"TUS {what}: the source ended after {start + held_size} of the announced {length} "
            "bytes"
        )
    if held:
        await out.put(_Piece(start, length, held))


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    """A local file in ``READ_PIECE`` chunks, read off the event loop."""
    handle: IO[bytes] = await anyio.to_thread.run_sync(path.open, "rb")
    try:
        while chunk := await anyio.to_thread.run_sync(handle.read, READ_PIECE):
            yield chunk
    finally:
        handle.close()


def _offset_header(response: httpx.Response, what: str) -> int:
    raw = response.headers.get("upload-offset")
    try:
        value = int(raw) if raw is not None else -1
    except ValueError:
        value = -1
    if value < 0:
        raise StorageError(f"TUS {what}: answer without a valid Upload-Offset ({raw!r})")
    return value


__all__ = [
    "CannotResume",
    "ObjectExists",
    "OffsetConflict",
    "TusStats",
    "TusUploader",
    "UploadGone",
    "decode_metadata",
    "encode_metadata",
]
