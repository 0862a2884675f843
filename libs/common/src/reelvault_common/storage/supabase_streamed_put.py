"""A Supabase put whose length is known up front and above the TUS threshold: upload while
downloading, by TUS straight to the key.

The server creates the object only when the last byte of a TUS upload has arrived (until then
the bytes are an upload, not an object), so nothing appears at the key before it is complete,
and no byte is copied after the upload (a server-side copy is a real byte copy on the server,
which cost as much as the upload itself). The price: the sha256, known only after the last byte,
cannot ride in the object's user metadata (TUS fixes it at creation). The sha256 returned is
ours, computed on the way; the catalog keeps it, and ``ClaimedStorage`` records it beside the
key's claim.

The key is checked free first (an existing object settles the put: same bytes -> no-op, other
bytes -> ``ObjectConflict``, its bytes hashed when it has no sha256 of ours). The server checks
again at every PATCH but upserts at the end without checking, so after the upload the stored
object must be the version this upload created; writers of one key must still take turns
(``ClaimedStorage``) for the loser of a race never to report success.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterable, AsyncIterator

import anyio

from reelvault_common.contracts.events import StoredFile
from reelvault_common.storage.interface import StreamLengthMismatch, TransientStorageError
from reelvault_common.storage.streams import prefetch
from reelvault_common.storage.supabase_connection import SupabaseConnection
from reelvault_common.storage.supabase_errors import ObjectExists
from reelvault_common.storage.supabase_verify import Content, UploadVerifier, refusals_explained
from reelvault_common.storage.tus import upload_version

log = logging.getLogger(__name__)

# Source chunks read ahead of a streamed upload: a little more than one TUS piece, so the
# download keeps going while a piece is PATCHed (memory: this x the source's chunk size).
STREAM_PREFETCH_DEPTH = 8


class ThreadedSha256:
    """sha256 of a chunk stream, each update in a worker thread (hashlib releases the GIL), so
    the event loop keeps moving bytes meanwhile."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self.size = 0

    async def hashing(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            await anyio.to_thread.run_sync(self._digest.update, chunk)
            self.size += len(chunk)
            yield chunk

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


class StreamedPut:
    """TUS to the key while the source streams; verify the object is this upload's."""

    def __init__(self, connection: SupabaseConnection, verifier: UploadVerifier) -> None:
        self._connection = connection
        self._verifier = verifier

    async def put(
        self,
        bucket: str,
        key: str,
        chunks: AsyncIterable[bytes],
        content_type: str,
        size: int,
        what: str,
    ) -> StoredFile:
        if await self._verifier.existing(bucket, key) is not None:
            content = await _hashed(chunks, size, what)
            return await self._verifier.settle_duplicate(bucket, key, content, content_type)
        digest = ThreadedSha256()
        metadata = {
            "bucketName": bucket,
            "objectName": key,
            "contentType": content_type,
            "cacheControl": str(self._connection.options.cache_control_s),
        }
        try:
            with refusals_explained(bucket, key, size, content_type):
                stats = await self._connection.tus.upload_stream(
                    digest.hashing(prefetch(chunks, STREAM_PREFETCH_DEPTH)),
                    size,
                    metadata,
                    what,
                    {"x-upsert": "false"},
                )
        except ObjectExists:
            # Another writer's object appeared since the check: the retry settles against it.
            raise TransientStorageError(
                f"{what}: another upload to the key finished first; retry to compare"
            ) from None
        content = Content(size, digest.hexdigest())
        stored = await self._verifier.verified(
            bucket, key, content, content_type, version=upload_version(stats.url)
        )
        log.info("stored %s/%s: %d bytes, sha256 %s (streamed)", bucket, key, size, content.sha256)
        return stored


async def _hashed(chunks: AsyncIterable[bytes], size: int, what: str) -> Content:
    """Size and sha256 of a stream that is not uploaded (the key is taken already)."""
    digest = ThreadedSha256()
    async for _ in digest.hashing(prefetch(chunks, STREAM_PREFETCH_DEPTH)):
        pass
    if digest.size != size:
        raise StreamLengthMismatch(
            f"{what}: the stream had {digest.size} bytes, not the announced {size}"
        )
    return Content(size, digest.hexdigest())
