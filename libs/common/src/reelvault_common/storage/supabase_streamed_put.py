"""A Supabase put whose length is known up front and above the TUS threshold: upload while
downloading, straight to the key, hashed on the way.

- Up to ``standard_upload_max_bytes`` (default 5 GiB, Supabase's documented maximum of a
  standard upload): ONE streamed standard upload (``POST /object/{bucket}/{key}``, binary body
  with its ``Content-Length``). A streamed source cannot be rewound, so TUS could resume only
  within the piece in hand; its fixed 6 MB PATCHes cost a real server more than twice the CPU of
  one request per video (bench/archive.py), which made the copy CPU-bound.
- Above it: TUS, straight to the key (``tus.py``). A server that caps standard uploads lower
  than configured (``UPLOAD_FILE_SIZE_LIMIT_STANDARD``, a plan's limit) answers 413 for a size
  the bucket allows: the put then lowers this process's maximum below that size and fails
  transiently, so the retry goes by TUS.

Either way the server creates the object only once the last byte has arrived, so nothing appears
at the key before it is complete, and no byte is copied after the upload. The price: the sha256,
known only after the last byte, cannot ride in the object's user metadata (both protocols fix
it before the body). The sha256 returned is ours, computed on the way; the catalog keeps it, and
``ClaimedStorage`` records it beside the key's claim.

The key is checked free first (an existing object settles the put: same bytes -> no-op, other
bytes -> ``ObjectConflict``, its bytes hashed when it has no sha256 of ours). The server checks
again when the upload starts but upserts at its end without checking, so afterwards the stored
object must be this upload's: the version a TUS upload named, or the upload token a standard
upload carried in its user metadata. Writers of one key must still take turns
(``ClaimedStorage``) for the loser of a race never to report success.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import uuid
from collections.abc import AsyncIterable, AsyncIterator

import anyio

from reelvault_common.contracts.events import StoredFile
from reelvault_common.storage.interface import (
    BucketSpec,
    PayloadTooLarge,
    StreamLengthMismatch,
    TransientStorageError,
)
from reelvault_common.storage.streams import WRITE_BATCH, prefetch
from reelvault_common.storage.supabase_connection import UPLOAD_METADATA_KEY, SupabaseConnection
from reelvault_common.storage.supabase_errors import ObjectExists
from reelvault_common.storage.supabase_verify import Content, UploadVerifier, refusals_explained
from reelvault_common.storage.tus import upload_version

log = logging.getLogger(__name__)

# Source chunks read ahead of a streamed upload, so the download keeps going while the upload
# waits for the server (memory: this x the source's chunk size, at most 1 MiB in the archiver).
STREAM_PREFETCH_DEPTH = 8


class ThreadedSha256:
    """sha256 and length of a chunk stream, hashed in a worker thread (hashlib releases the
    GIL) a batch of at least ``WRITE_BATCH`` bytes per hop, so the event loop keeps moving bytes
    meanwhile. With ``expected``, a stream longer or shorter than that is
    ``StreamLengthMismatch`` (raised before a byte too many is passed on, or at its end)."""

    def __init__(self, expected: int | None = None, what: str = "put") -> None:
        self._digest = hashlib.sha256()
        self._expected = expected
        self._what = what
        self.size = 0

    async def hashing(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        batch: list[bytes] = []
        batched = 0
        async for chunk in chunks:
            self.size += len(chunk)
            if self._expected is not None and self.size > self._expected:
                raise self._mismatch("more than ")
            batch.append(chunk)
            batched += len(chunk)
            if batched >= WRITE_BATCH:
                await anyio.to_thread.run_sync(self._update, batch)
                batch, batched = [], 0
            yield chunk
        await anyio.to_thread.run_sync(self._update, batch)
        if self._expected is not None and self.size != self._expected:
            raise self._mismatch("")

    def hexdigest(self) -> str:
        return self._digest.hexdigest()

    def _update(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            self._digest.update(piece)

    def _mismatch(self, more: str) -> StreamLengthMismatch:
        return StreamLengthMismatch(
            f"{self._what}: the stream had {more}{self.size} bytes, not the announced "
            f"{self._expected}; nothing stored"
        )


class StreamedPut:
    """A standard upload or TUS to the key while the source streams; verify the object is
    this upload's."""

    def __init__(self, connection: SupabaseConnection, verifier: UploadVerifier) -> None:
        self._connection = connection
        self._verifier = verifier
        self.standard_upload_max_bytes = connection.options.standard_upload_max_bytes

    async def put(
        self,
        bucket: str,
        key: str,
        chunks: AsyncIterable[bytes],
        content_type: str,
        size: int,
        known: BucketSpec | None,
        what: str,
    ) -> StoredFile:
        if await self._verifier.existing(bucket, key) is not None:
            content = await _hashed(chunks, size, what)
            return await self._verifier.settle_duplicate(bucket, key, content, content_type)
        digest = ThreadedSha256(size, what)
        body = digest.hashing(prefetch(chunks, STREAM_PREFETCH_DEPTH))
        try:
            with refusals_explained(bucket, key, size, content_type):
                if size <= self.standard_upload_max_bytes:
                    token = uuid.uuid4().hex
                    await self._standard(bucket, key, body, content_type, size, known, token, what)
                    version = None
                else:
                    token = None
                    version = await self._tus(bucket, key, body, content_type, size, what)
        except ObjectExists:
            # Another writer's object appeared since the check: the retry settles against it.
            raise TransientStorageError(
                f"{what}: another upload to the key finished first; retry to compare"
            ) from None
        content = Content(size, digest.hexdigest())
        stored = await self._verifier.verified(
            bucket, key, content, content_type, version=version, upload_token=token
        )
        log.info("stored %s/%s: %d bytes, sha256 %s (streamed)", bucket, key, size, content.sha256)
        return stored

    async def _standard(
        self,
        bucket: str,
        key: str,
        body: AsyncIterator[bytes],
        content_type: str,
        size: int,
        known: BucketSpec | None,
        token: str,
        what: str,
    ) -> None:
        """One request, never retried here: the body is a stream that cannot be rewound (a
        transient failure is the caller's to retry, with a fresh source)."""
        headers = {
            "content-type": content_type,
            "content-length": str(size),
            "cache-control": f"max-age={self._connection.options.cache_control_s}",
            "x-upsert": "false",
            "x-metadata": _base64_json({UPLOAD_METADATA_KEY: token}),
        }
        url = self._connection.object_url("object", bucket, key)
        try:
            await self._connection.request("POST", url, what, content=body, headers=headers)
        except PayloadTooLarge:
            bucket_limit = None if known is None else known.file_size_limit
            if known is None or (bucket_limit is not None and size > bucket_limit):
                raise
            # The bucket allows this size: the server caps standard uploads below it.
            self.standard_upload_max_bytes = min(self.standard_upload_max_bytes, size - 1)
            log.warning(
                "%s: the server refused a standard upload of %d bytes that bucket %s allows; "
                "objects of this size go by TUS from now on", what, size, bucket,
            )
            raise TransientStorageError(
                f"{what}: the server caps standard uploads below {size} bytes; retry by TUS"
            ) from None

    async def _tus(
        self,
        bucket: str,
        key: str,
        body: AsyncIterator[bytes],
        content_type: str,
        size: int,
        what: str,
    ) -> str | None:
        """The whole upload by TUS; the object version it creates."""
        metadata = {
            "bucketName": bucket,
            "objectName": key,
            "contentType": content_type,
            "cacheControl": str(self._connection.options.cache_control_s),
        }
        stats = await self._connection.tus.upload_stream(
            body, size, metadata, what, {"x-upsert": "false"}
        )
        return upload_version(stats.url)


def _base64_json(value: dict[str, str]) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode("ascii")


async def _hashed(chunks: AsyncIterable[bytes], size: int, what: str) -> Content:
    """Size and sha256 of a stream that is not uploaded (the key is taken already)."""
    digest = ThreadedSha256(size, what)
    async for _ in digest.hashing(prefetch(chunks, STREAM_PREFETCH_DEPTH)):
        pass
    return Content(size, digest.hexdigest())
