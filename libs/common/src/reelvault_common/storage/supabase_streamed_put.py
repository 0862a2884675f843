"""A Supabase put whose length is known up front and above the TUS threshold: upload while
downloading, through a staging object.

The sha256 belongs in the object's user metadata, which TUS fixes when the upload is created,
before the first byte (and is known only after the last). So the bytes go by TUS to a staging key
as they arrive, hashed on the way, and a server-side copy (``POST /object/copy`` with
``x-metadata``, never upserting) puts them at the key with the sha256; the staging object is
removed after. A 409 on the copy is the usual duplicate: same sha256 -> no-op, different ->
``ObjectConflict``. Nothing is ever visible at the key before it is complete and labelled.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import AsyncIterable, AsyncIterator

import anyio

from reelvault_common.contracts.events import StoredFile
from reelvault_common.storage.streams import prefetch
from reelvault_common.storage.supabase_connection import SupabaseConnection, user_metadata
from reelvault_common.storage.supabase_errors import ObjectExists
from reelvault_common.storage.supabase_staging import StagingArea
from reelvault_common.storage.supabase_verify import Content, UploadVerifier, refusals_explained

log = logging.getLogger(__name__)

# Source chunks read ahead of a streamed upload: a little more than one TUS piece, so the
# download keeps going while a piece is PATCHed (memory: this x the source's chunk size).
STREAM_PREFETCH_DEPTH = 8


class ThreadedSha256:
    """sha256 of a chunk stream, each update in a worker thread (hashlib releases the GIL), so
    the event loop keeps moving bytes meanwhile."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    async def hashing(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            await anyio.to_thread.run_sync(self._digest.update, chunk)
            yield chunk

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


class StreamedPut:
    """TUS to a staging key while the source streams, copy into place, remove the staging
    object (a crash leaves it to the start-up sweep)."""

    def __init__(
        self, connection: SupabaseConnection, staging: StagingArea, verifier: UploadVerifier
    ) -> None:
        self._connection = connection
        self._staging = staging
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
        staging = self._staging.new_key(key)
        try:
            with refusals_explained(bucket, key, size, content_type):
                content = await self._upload_to_staging(
                    bucket, staging, chunks, content_type, size, what
                )
            try:
                await self._connection.retry(
                    what, lambda: self._copy_into_place(bucket, staging, key, content, what)
                )
            except ObjectExists:
                return await self._verifier.settle_duplicate(bucket, key, content, content_type)
        finally:
            await self._staging.remove_quietly(bucket, staging, what)
        stored = await self._verifier.verified(bucket, key, content, content_type)
        log.info("stored %s/%s: %d bytes, sha256 %s (streamed)", bucket, key, size, content.sha256)
        return stored

    async def _upload_to_staging(
        self,
        bucket: str,
        staging: str,
        chunks: AsyncIterable[bytes],
        content_type: str,
        size: int,
        what: str,
    ) -> Content:
        """TUS the stream to ``staging`` as it arrives; what was sent, hashed on the way."""
        digest = ThreadedSha256()
        metadata = {
            "bucketName": bucket,
            "objectName": staging,
            "contentType": content_type,
            "cacheControl": str(self._connection.options.cache_control_s),
        }
        await self._connection.tus.upload_stream(
            digest.hashing(prefetch(chunks, STREAM_PREFETCH_DEPTH)),
            size,
            metadata,
            what,
            {"x-upsert": "false"},
        )
        return Content(size, digest.hexdigest())

    async def _copy_into_place(
        self, bucket: str, source: str, key: str, content: Content, what: str
    ) -> None:
        """``POST /object/copy``: server-side, so no byte crosses the network again. The user
        metadata comes from the ``x-metadata`` header (base64 JSON) because ``copyMetadata`` is
        false; content type and cache control are the staging object's."""
        metadata = json.dumps(user_metadata(content.sha256)).encode()
        headers = {"x-upsert": "false", "x-metadata": base64.b64encode(metadata).decode()}
        body = {"bucketId": bucket, "sourceKey": source, "destinationKey": key,
                "copyMetadata": False}
        await self._connection.request(
            "POST",
            self._connection.url_for("object/copy"),
            f"{what}: copy into place",
            json=body,
            headers=headers,
        )
