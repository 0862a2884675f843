"""A Supabase put whose length is not known up front (or small enough): the stream is spooled to
a temp file while counting and hashing (constant memory), then uploaded from the file --
storage3's standard upload up to the TUS threshold, TUS above it. The sha256 goes into the
object's user metadata, which an upload sends before its bytes; hence the spool."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import anyio

from reelvault_common.contracts.events import StoredFile
from reelvault_common.storage.interface import BucketSpec, PayloadTooLarge
from reelvault_common.storage.streams import HashingWriter, prefetch
from reelvault_common.storage.supabase_connection import SupabaseConnection, user_metadata
from reelvault_common.storage.supabase_errors import ObjectExists
from reelvault_common.storage.supabase_verify import Content, UploadVerifier, refusals_explained

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Spooled(Content):
    path: Path


@asynccontextmanager
async def spooled(
    chunks: AsyncIterable[bytes], known: BucketSpec | None, what: str, spool_dir: Path | None
) -> AsyncIterator[Spooled]:
    """Copy the stream to a temp file while counting and hashing; remove it afterwards. With the
    bucket's rules at hand, a stream over its size limit stops as soon as it passes it."""
    if spool_dir is not None:
        await anyio.Path(spool_dir).mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="reelvault-put-", dir=spool_dir)
    path = Path(name)
    handle: IO[bytes] = os.fdopen(fd, "wb")
    limit = known.file_size_limit if known is not None else None
    try:
        # The source (e.g. a download) keeps streaming while a thread hashes and writes.
        writer = HashingWriter(handle)
        async for chunk in prefetch(chunks):
            if limit is not None and writer.size + len(chunk) > limit:
                assert known is not None
                raise PayloadTooLarge(
                    f"{what}: the object exceeds the {limit} byte limit of bucket {known.name}"
                )
            await writer.write(chunk)
        sha256 = await writer.finish(fsync=False)  # a scratch file: no fsync needed
        await anyio.to_thread.run_sync(handle.close)
        yield Spooled(size=writer.size, sha256=sha256, path=path)
    finally:
        handle.close()
        path.unlink(missing_ok=True)  # noqa: ASYNC240 (a local unlink, microseconds)


class SpooledPut:
    """Spool, upload from the file, verify; a duplicate is settled by its sha256."""

    def __init__(self, connection: SupabaseConnection, verifier: UploadVerifier) -> None:
        self._connection = connection
        self._options = connection.options
        self._verifier = verifier

    async def put(
        self,
        bucket: str,
        key: str,
        chunks: AsyncIterable[bytes],
        content_type: str,
        known: BucketSpec | None,
        what: str,
    ) -> StoredFile:
        async with spooled(chunks, known, what, self._options.spool_dir) as file:
            try:
                with refusals_explained(bucket, key, file.size, content_type):
                    await self._upload(bucket, key, file, content_type, what)
            except ObjectExists:
                return await self._verifier.settle_duplicate(bucket, key, file, content_type)
        stored = await self._verifier.verified(bucket, key, file, content_type)
        log.info("stored %s/%s: %d bytes, sha256 %s", bucket, key, file.size, file.sha256)
        return stored

    async def _upload(
        self, bucket: str, key: str, file: Spooled, content_type: str, what: str
    ) -> None:
        if file.size > self._options.tus_threshold_bytes:
            await self._tus_upload(bucket, key, file, content_type, what)
        else:
            await self._connection.retry(
                what, lambda: self._standard_upload(bucket, key, file, content_type, what)
            )

    async def _standard_upload(
        self, bucket: str, key: str, file: Spooled, content_type: str, what: str
    ) -> None:
        # storage3 streams a real file object in 64 KiB chunks; those reads block the loop
        # briefly, acceptable below the TUS threshold. Always set the content type: storage3
        # defaults to text/plain, which MIME rules reject.
        file_options: dict[str, Any] = {
            "content-type": content_type,
            "cache-control": str(self._options.cache_control_s),
            "upsert": "false",
            "metadata": user_metadata(file.sha256),
        }
        storage = self._connection.storage
        handle = await anyio.to_thread.run_sync(file.path.open, "rb")
        try:
            await self._connection.storage3(
                what,
                lambda: storage.from_(bucket).upload(key, handle, file_options),  # type: ignore[arg-type]
            )
        finally:
            handle.close()

    async def _tus_upload(
        self, bucket: str, key: str, file: Spooled, content_type: str, what: str
    ) -> None:
        metadata = {
            "bucketName": bucket,
            "objectName": key,
            "contentType": content_type,
            "cacheControl": str(self._options.cache_control_s),
            "metadata": json.dumps(user_metadata(file.sha256)),
        }
        await self._connection.tus.upload(
            file.path, file.size, metadata, what, {"x-upsert": "false"}
        )
