"""Reads of the Supabase backend: an object's info (``stat``), its bytes, and links to it.

Bytes stream with httpx in chunks (storage3's ``download`` holds the whole body in memory) and
resume with a Range request when the connection drops midway.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from reelvault_common.storage.interface import (
    ObjectInfo,
    ObjectNotFound,
    StorageError,
    TransientStorageError,
    check_key,
)
from reelvault_common.storage.supabase_buckets import SupabaseBuckets
from reelvault_common.storage.supabase_connection import SHA256_METADATA_KEY, SupabaseConnection
from reelvault_common.storage.supabase_errors import ServerError, to_storage_error, transport_error

READ_CHUNK = 1024 * 1024


def object_info_from_json(bucket: str, key: str, body: dict[str, Any]) -> ObjectInfo:
    """``GET /object/info``: current releases answer flat fields (``size``, ``content_type``,
    ``metadata`` = user metadata); older ones the row (``metadata`` = system metadata with
    ``size``/``mimetype``, ``user_metadata`` beside it)."""
    if "size" in body:
        size, content_type = body.get("size"), body.get("content_type")
    else:
        system = body.get("metadata") or {}
        size, content_type = system.get("size"), system.get("mimetype")
    sha = user_metadata_from_json(body).get(SHA256_METADATA_KEY)
    return ObjectInfo(
        bucket=bucket,
        key=key,
        size=int(size or 0),
        content_type=str(content_type or "application/octet-stream"),
        sha256=str(sha) if sha else None,
        version=str(body["version"]) if body.get("version") else None,
    )


def user_metadata_from_json(body: dict[str, Any]) -> dict[str, Any]:
    """The user metadata of a ``GET /object/info`` answer, in either shape."""
    user = body.get("metadata") if "size" in body else body.get("user_metadata")
    return user if isinstance(user, dict) else {}


class ResumableDownload:
    """One object's bytes over as many GETs as it takes: after a dropped connection the next
    GET asks for the rest with a Range header, and must get the same object (206, same ETag)."""

    def __init__(self, http: httpx.AsyncClient, url: str, what: str) -> None:
        self._http = http
        self._url = url
        self._what = what
        self.received = 0
        self._etag: str | None = None
        self._response: httpx.Response | None = None
        self._chunks: AsyncIterator[bytes] | None = None

    async def next_chunk(self) -> bytes | None:
        """The next chunk, or None at the end. A dropped connection (transient) closes the
        response; the next call resumes where it stopped."""
        try:
            if self._chunks is None:
                self._chunks = await self._open()
            chunk = await anext(self._chunks, None)
        except httpx.HTTPError as exc:
            await self.close()
            raise transport_error(exc, self._what) from None
        except BaseException:
            await self.close()
            raise
        if chunk is None:
            await self.close()
        else:
            self.received += len(chunk)
        return chunk

    async def close(self) -> None:
        response, self._response, self._chunks = self._response, None, None
        if response is not None:
            await response.aclose()

    async def _open(self) -> AsyncIterator[bytes]:
        headers = {"Range": f"bytes={self.received}-"} if self.received else {}
        request = self._http.build_request("GET", self._url, headers=headers)
        self._response = response = await self._http.send(request, stream=True)
        if response.status_code >= 400:
            await response.aread()
            raise to_storage_error(ServerError.from_response(response), self._what)
        if self.received and (
            response.status_code != 206
            or (self._etag is not None and response.headers.get("etag") != self._etag)
        ):
            raise StorageError(f"{self._what}: the object changed while reading it")
        self._etag = self._etag or response.headers.get("etag")
        return response.aiter_bytes(READ_CHUNK)


class SupabaseReads:
    """``stat``, ``read``, ``public_url`` and ``signed_url`` of the backend."""

    def __init__(self, connection: SupabaseConnection, buckets: SupabaseBuckets) -> None:
        self._connection = connection
        self._buckets = buckets

    async def stat(self, bucket: str, key: str) -> ObjectInfo | None:
        body = await self.info(bucket, key)
        return None if body is None else object_info_from_json(bucket, key, body)

    async def info(self, bucket: str, key: str) -> dict[str, Any] | None:
        """The server's ``/object/info`` answer as it came (user metadata included)."""
        check_key(key)
        storage = self._connection.storage
        try:
            body = await self._connection.retried_storage3(
                f"stat {bucket}/{key}", lambda: storage.from_(bucket).info(key)
            )
        except ObjectNotFound:
            return None
        return dict(body)

    async def read(self, bucket: str, key: str) -> AsyncIterator[bytes]:
        check_key(key)
        what = f"read {bucket}/{key}"
        url = self._connection.object_url("object/authenticated", bucket, key)
        download = ResumableDownload(self._connection.http, url, what)
        try:
            while True:
                try:
                    chunk = await download.next_chunk()
                except TransientStorageError as failure:
                    # Retries only from a failure on: every chunk that arrives starts the count
                    # afresh, and chunks that arrive at once pay nothing for retrying.
                    chunk = await self._connection.retry_after(
                        failure, what, download.next_chunk
                    )
                if chunk is None:
                    return
                yield chunk
        finally:
            await download.close()

    async def public_url(self, bucket: str, key: str) -> str | None:
        check_key(key)
        if not (await self._buckets.spec(bucket)).public:
            return None
        return str(await self._connection.storage.from_(bucket).get_public_url(key))

    async def signed_url(self, bucket: str, key: str, expires_in_s: int) -> str:
        check_key(key)
        if expires_in_s < 1:
            raise ValueError("expires_in_s must be at least 1")
        what = f"sign {bucket}/{key}"
        storage = self._connection.storage
        answer = await self._connection.retried_storage3(
            what, lambda: storage.from_(bucket).create_signed_url(key, expires_in_s)
        )
        signed = answer.get("signedURL") or answer.get("signedUrl")
        if not signed:
            raise ObjectNotFound(f"{what}: the server returned no signed URL")
        # The server answers a relative "/object/sign/...?token="; storage3 2.34 joins it with
        # the storage URL, older releases did not. Make sure it is absolute either way.
        return signed if "://" in signed else self._connection.url_for(signed.lstrip("/"))
