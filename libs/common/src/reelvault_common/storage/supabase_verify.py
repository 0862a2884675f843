"""How a Supabase put ends: the stored object checked against what was sent, a 409 Duplicate
settled by the sha256 (same bytes -> no-op, different -> ``ObjectConflict``), and the server's
refusals explained with the bucket and key they are about."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from reelvault_common.contracts.events import StoredFile
from reelvault_common.storage.interface import (
    MimeTypeNotAllowed,
    ObjectConflict,
    ObjectInfo,
    PayloadTooLarge,
    TransientStorageError,
)
from reelvault_common.storage.supabase_connection import UPLOAD_METADATA_KEY
from reelvault_common.storage.supabase_reads import (
    SupabaseReads,
    object_info_from_json,
    user_metadata_from_json,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Content:
    """What was uploaded: its length and sha256 (computed by us, on the way)."""

    size: int
    sha256: str


@contextmanager
def refusals_explained(bucket: str, key: str, size: int, content_type: str) -> Iterator[None]:
    """The server's "too large" and "wrong type" answers, told with the bucket and key."""
    try:
        yield
    except PayloadTooLarge as exc:
        raise PayloadTooLarge(
            f"{bucket}/{key} ({size} bytes) is larger than bucket {bucket} or the server "
            f"allows: {exc.message}"
        ) from None
    except MimeTypeNotAllowed as exc:
        raise MimeTypeNotAllowed(
            f"bucket {bucket} does not accept {content_type} ({key}): {exc.message}"
        ) from None


class UploadVerifier:
    """Checks an upload's outcome by reading the object's info (and its bytes if needed)."""

    def __init__(self, reads: SupabaseReads) -> None:
        self._reads = reads

    async def verified(
        self,
        bucket: str,
        key: str,
        content: Content,
        content_type: str,
        *,
        version: str | None = None,
        upload_token: str | None = None,
    ) -> StoredFile:
        """The stored object after an acknowledged upload, which must hold ``content`` and be
        our upload's: the object ``version`` it created, or the ``upload_token`` it carried in
        its user metadata, when known (the server upserts at the end of an upload, so a
        concurrent writer's object may have replaced ours)."""
        body = await self._reads.info(bucket, key)
        if body is None:
            raise TransientStorageError(f"put {bucket}/{key}: upload acknowledged but not found")
        info = object_info_from_json(bucket, key, body)
        stored_token = user_metadata_from_json(body).get(UPLOAD_METADATA_KEY)
        if upload_token is not None and stored_token != upload_token:
            raise ObjectConflict(
                f"{bucket}/{key} holds another writer's upload ({info.size} bytes) after ours "
                f"({content.size} bytes, sha256 {content.sha256})"
            )
        if version is not None and info.version is not None and info.version != version:
            raise ObjectConflict(
                f"{bucket}/{key} holds another writer's upload (version {info.version}, "
                f"{info.size} bytes) after ours (version {version}, sha256 {content.sha256})"
            )
        if info.size != content.size or info.sha256 not in (None, content.sha256):
            # Someone else's bytes won a race at the key (or the server stored something else).
            raise ObjectConflict(
                f"{bucket}/{key} holds {info.size} bytes with sha256 {info.sha256} after "
                f"uploading {content.size} bytes with sha256 {content.sha256}"
            )
        return await self.stored_file(bucket, key, content_type, content)

    async def settle_duplicate(
        self, bucket: str, key: str, content: Content, content_type: str
    ) -> StoredFile:
        """409 Duplicate: a no-op if the stored bytes are ours, else a conflict."""
        info = await self._reads.stat(bucket, key)
        if info is None:
            raise TransientStorageError(
                f"put {bucket}/{key}: the server reported a duplicate that is gone now; retry"
            )
        if not await self._same_bytes(info, content):
            raise ObjectConflict(
                f"{bucket}/{key} already holds different bytes ({info.size} bytes, sha256 "
                f"{info.sha256 or 'unknown'}; this upload: {content.size} bytes, sha256 "
                f"{content.sha256}); objects are never overwritten"
            )
        log.info("%s/%s already stored with the same sha256: no-op", bucket, key)
        return await self.stored_file(bucket, key, info.content_type or content_type, content)

    async def stored_file(
        self, bucket: str, key: str, content_type: str, content: Content
    ) -> StoredFile:
        return StoredFile(
            bucket=bucket,
            key=key,
            content_type=content_type,
            bytes=content.size,
            sha256=content.sha256,
            url=await self._reads.public_url(bucket, key),
        )

    async def existing(self, bucket: str, key: str) -> ObjectInfo | None:
        return await self._reads.stat(bucket, key)

    async def _same_bytes(self, info: ObjectInfo, content: Content) -> bool:
        if info.size != content.size:
            return False
        if info.sha256 is not None:
            return info.sha256 == content.sha256
        # Stored without our metadata (by another tool): hash it, streaming.
        digest = hashlib.sha256()
        async for chunk in self._reads.read(info.bucket, info.key):
            digest.update(chunk)
        return digest.hexdigest() == content.sha256
