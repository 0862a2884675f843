"""The storage interface every backend implements, its errors, and bucket rules.

Objects are never overwritten: writing the same bytes to an existing key is a no-op, writing
different bytes is an ``ObjectConflict``. Writes stream; size and sha256 are computed on the way.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from reelvault_common.contracts.events import StoredFile

# What a key may hold, on every backend: Supabase Storage's own character set less ";" (storage3
# does not percent-encode it and the server cuts the key there, storing the object under a
# shorter key) and "?" (it breaks the signature of signed URLs). Refused, never truncated.
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_/!.*'() &$=@:+,-]+$")


class StorageError(Exception):
    code = "storage_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BucketNotFound(StorageError):
    code = "bucket_not_found"


class ObjectNotFound(StorageError):
    code = "object_not_found"


class ObjectConflict(StorageError):
    """Different bytes already live at this key."""

    code = "object_conflict"


class PayloadTooLarge(StorageError):
    code = "payload_too_large"


class MimeTypeNotAllowed(StorageError):
    code = "mime_type_not_allowed"


class Unauthorized(StorageError):
    code = "unauthorized"


class InvalidKey(StorageError):
    code = "invalid_key"


class BucketRulesMismatch(StorageError):
    """A bucket exists with rules other than configured; reported, never silently changed."""

    code = "bucket_rules_mismatch"


class TransientStorageError(StorageError):
    """5xx, timeouts, connection loss: worth retrying with backoff."""

    code = "storage_unavailable"


class StreamLengthMismatch(TransientStorageError):
    """A put's stream had more or fewer bytes than its announced ``size`` (a truncated or odd
    download): nothing was stored, and another try from the start may well succeed."""

    code = "length_mismatch"


@dataclass(frozen=True)
class BucketSpec:
    name: str
    public: bool
    file_size_limit: int | None
    allowed_mime_types: tuple[str, ...] | None

    def allows_mime(self, content_type: str) -> bool:
        if not self.allowed_mime_types:
            return True
        mime = content_type.split(";", 1)[0].strip().lower()
        for pattern in self.allowed_mime_types:
            pattern = pattern.strip().lower()
            if pattern == mime or (pattern.endswith("/*") and mime.startswith(pattern[:-1])):
                return True
        return False

    def check_upload(self, content_type: str, size: int | None = None) -> None:
        """Raise what the bucket's rules say about this upload (size may be known only later)."""
        if not self.allows_mime(content_type):
            raise MimeTypeNotAllowed(
                f"mime type {content_type} is not supported by bucket {self.name} "
                f"(allowed: {', '.join(self.allowed_mime_types or ())})"
            )
        if size is not None and self.file_size_limit is not None and size > self.file_size_limit:
            raise PayloadTooLarge(
                f"object of {size} bytes exceeds the {self.file_size_limit} byte limit "
                f"of bucket {self.name}"
            )


def check_key(key: str) -> None:
    if not key or key.startswith("/") or ".." in key.split("/") or not KEY_PATTERN.fullmatch(key):
        raise InvalidKey(f"invalid object key: {key!r}")


@dataclass(frozen=True)
class ListedObject:
    """An object as a listing names it (``created_at``: None where the backend cannot say)."""

    key: str
    size: int
    created_at: datetime | None


@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    key: str
    size: int
    content_type: str
    sha256: str | None
    version: str | None = None  # the backend's version of the object, where it has one


class ObjectStorage(Protocol):
    """What the services need from object storage."""

    async def ensure_buckets(self, specs: Sequence[BucketSpec]) -> None:
        """Create missing buckets; raise ``BucketRulesMismatch`` for one with other rules."""

    async def put(
        self,
        bucket: str,
        key: str,
        chunks: AsyncIterable[bytes],
        content_type: str,
        *,
        size: int | None = None,
    ) -> StoredFile:
        """Stream ``chunks`` to ``bucket/key``; return what was stored (size, sha256, url).

        ``size``: the stream's length, when known in advance (e.g. a download's
        ``Content-Length``). It lets a backend refuse an oversize object before any byte moves
        and upload while the stream is still arriving; a stream of another length then fails
        the put and stores nothing."""

    async def stat(self, bucket: str, key: str) -> ObjectInfo | None:
        """Size, type and (where known) sha256 of an object, or None if it is missing."""

    def read(self, bucket: str, key: str) -> AsyncIterator[bytes]:
        """The object's bytes in chunks; ``ObjectNotFound`` if it is missing."""

    async def public_url(self, bucket: str, key: str) -> str | None:
        """A permanent URL if the bucket is public, else None."""

    async def signed_url(self, bucket: str, key: str, expires_in_s: int) -> str:
        """A download URL that stops working after ``expires_in_s`` seconds."""

    async def delete(self, bucket: str, key: str) -> bool:
        """Remove the object; False when it was not there (removing twice is harmless)."""

    def list_objects(self, bucket: str, prefix: str = "") -> AsyncIterator[ListedObject]:
        """Every object under the folder ``prefix`` (recursively), in no promised order."""

    async def aclose(self) -> None:
        """Release connections."""
