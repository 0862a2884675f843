"""Supabase Storage backend of ``ObjectStorage``, on ``storage3`` (and ``supabase`` for a project
URL) plus plain httpx where storage3 falls short.

- Where: a project URL (storage at ``{url}/storage/v1/``, through ``supabase.AsyncClient``) or
  an explicit storage URL of a bare storage server (``storage3.AsyncStorageClient``). Both send
  ``Authorization: Bearer <key>`` and ``apikey: <key>``. The service-role key stays in request
  headers: never in URLs we hand out (signed URLs carry the server's own short-lived token),
  never in logs or exception messages.
- Writes never overwrite (no upsert). The sha256 goes into the object's user metadata, which
  an upload sends *before* its bytes. A ``put`` whose size is known and above the TUS threshold
  (default 6 MB) streams: TUS resumable upload to a staging key while downloading and hashing,
  then a server-side copy to the key with the sha256 in ``x-metadata``, then the staging object
  is removed (leftovers of a crash are swept at start). Any other ``put`` spools the stream to a
  temp file while hashing (constant memory), then uploads from the file: storage3's standard
  upload up to the threshold, TUS above it (see ``tus.py`` for why our own client). On 409
  Duplicate the existing object's sha256 decides: same bytes -> no-op, different -> conflict.
- Reads stream with httpx in chunks (storage3's ``download`` holds the whole body in memory) and
  resume with a Range request if the connection drops midway.
- Errors become the typed errors of ``interface.py`` (``supabase_errors.py``); transient ones
  (5xx, timeouts, connection loss) are retried with backoff, a bounded number of times.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import tempfile
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import quote, urljoin

import anyio
import httpx
from pydantic import SecretStr
from storage3 import AsyncStorageClient
from storage3.exceptions import StorageApiError
from storage3.types import CreateOrUpdateBucketOptions

from reelvault_common.contracts.events import StoredFile
from reelvault_common.runtime.settings import StorageSettings
from reelvault_common.storage.interface import (
    BucketNotFound,
    BucketRulesMismatch,
    BucketSpec,
    MimeTypeNotAllowed,
    ObjectConflict,
    ObjectInfo,
    ObjectNotFound,
    PayloadTooLarge,
    StorageError,
    TransientStorageError,
    check_key,
)
from reelvault_common.storage.retry import RetryPolicy, retrying
from reelvault_common.storage.streams import HashingWriter, prefetch
from reelvault_common.storage.supabase_errors import (
    ObjectExists,
    ServerError,
    to_storage_error,
    transport_error,
)
from reelvault_common.storage.tus import SUPABASE_CHUNK_SIZE, TusUploader

log = logging.getLogger(__name__)

T = TypeVar("T")
MB = 1024 * 1024
READ_CHUNK = 1024 * 1024
# Source chunks read ahead of a streamed upload: a little more than one TUS piece, so the
# download keeps going while a piece is PATCHed (memory: this x the source's chunk size).
STREAM_PREFETCH_DEPTH = 8
SHA256_METADATA_KEY = "sha256"


@dataclass(frozen=True)
class SupabaseStorageOptions:
    tus_threshold_bytes: int = 6 * MB  # objects larger than this go through TUS
    tus_chunk_bytes: int = SUPABASE_CHUNK_SIZE
    timeout_s: float = 60.0
    cache_control_s: int = 3600
    spool_dir: Path | None = None  # temp files for put (default: the system temp dir)
    staging_prefix: str = "_staging"  # where streamed uploads land before their copy into place
    staging_max_age_s: float = 24 * 3600.0  # leftovers (a crash mid-put) swept at start after this
    retry: RetryPolicy = field(default_factory=RetryPolicy)


def storage_url_for_project(project_url: str) -> str:
    return project_url.rstrip("/") + "/storage/v1/"


def auth_headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "apikey": key}


def normalized_rules(spec: BucketSpec) -> tuple[bool, int | None, tuple[str, ...] | None]:
    """What makes two buckets' rules the same: order and case of MIME types do not matter,
    and no limit / no list is the same as 0 / an empty list."""
    mimes = tuple(sorted({m.strip().lower() for m in spec.allowed_mime_types or ()})) or None
    return spec.public, spec.file_size_limit or None, mimes


def rules_from_bucket_json(name: str, body: dict[str, Any]) -> BucketSpec:
    limit = body.get("file_size_limit")
    mimes = body.get("allowed_mime_types")
    return BucketSpec(
        name=name,
        public=bool(body.get("public")),
        file_size_limit=int(limit) if limit not in (None, "") else None,
        allowed_mime_types=tuple(str(m) for m in mimes) if mimes else None,
    )


def describe_rules(spec: BucketSpec) -> str:
    limit = f"{spec.file_size_limit} bytes" if spec.file_size_limit else "none"
    mimes = ", ".join(spec.allowed_mime_types) if spec.allowed_mime_types else "any"
    return f"public={spec.public}, file_size_limit={limit}, allowed_mime_types=[{mimes}]"


@dataclass(frozen=True)
class Content:
    """What was uploaded: its length and sha256 (computed by us, on the way)."""

    size: int
    sha256: str


@dataclass(frozen=True)
class Spooled(Content):
    path: Path


class SupabaseStorage:
    """``ObjectStorage`` on Supabase Storage. Build with ``for_project``, ``for_storage_server``
    or ``from_settings``; close with ``aclose``."""

    def __init__(
        self,
        storage: AsyncStorageClient,
        http: httpx.AsyncClient,
        storage_url: str,
        key: SecretStr,
        options: SupabaseStorageOptions | None = None,
    ) -> None:
        self._storage = storage
        self._http = http
        self._url = storage_url if storage_url.endswith("/") else storage_url + "/"
        self._key = key
        self._options = options or SupabaseStorageOptions()
        self._buckets: dict[str, BucketSpec] = {}
        self._tus = TusUploader(
            http,
            urljoin(self._url, "upload/resumable"),
            auth_headers(key.get_secret_value()),
            chunk_size=self._options.tus_chunk_bytes,
            retry=self._options.retry,
        )

    def __repr__(self) -> str:  # never show headers: storage3's reprs include the apikey
        return f"SupabaseStorage({self._url!r})"

    # --- construction ---------------------------------------------------------------------
    @staticmethod
    def _http_client(key: str, options: SupabaseStorageOptions) -> httpx.AsyncClient:
        # One pool for storage3, TUS and streaming reads. Headers ride on every request; HTTP/1.1
        # because big bodies over h2 are slower in httpx and the storage server speaks both.
        return httpx.AsyncClient(
            headers=auth_headers(key),
            timeout=httpx.Timeout(options.timeout_s, connect=min(10.0, options.timeout_s)),
            follow_redirects=False,
        )

    @classmethod
    def for_project(
        cls,
        project_url: str,
        service_role_key: SecretStr | str,
        options: SupabaseStorageOptions | None = None,
    ) -> SupabaseStorage:
        """A Supabase project (``https://<ref>.supabase.co``): storage at ``/storage/v1/``."""
        import supabase
        from supabase.lib.client_options import AsyncClientOptions
        from supabase_auth import AsyncMemoryStorage

        key = _secret(service_role_key)
        opts = options or SupabaseStorageOptions()
        http = cls._http_client(key.get_secret_value(), opts)
        # What ``supabase.acreate_client(url, key)`` builds, constructed synchronously so
        # ``open_storage`` can stay a plain function; the session lookup acreate_client adds is
        # a no-op for a service-role key. We keep this storage client: the supabase client
        # replaces its ``.storage`` on auth events.
        client = supabase.AsyncClient(
            project_url,
            key.get_secret_value(),
            AsyncClientOptions(httpx_client=http, storage=AsyncMemoryStorage()),
        )
        return cls(client.storage, http, str(client.storage_url), key, opts)

    @classmethod
    def for_storage_server(
        cls,
        storage_url: str,
        service_role_key: SecretStr | str,
        options: SupabaseStorageOptions | None = None,
    ) -> SupabaseStorage:
        """A bare storage server (no ``/storage/v1`` prefix), e.g. ``http://127.0.0.1:5000/``."""
        key = _secret(service_role_key)
        opts = options or SupabaseStorageOptions()
        http = cls._http_client(key.get_secret_value(), opts)
        url = storage_url if storage_url.endswith("/") else storage_url + "/"
        storage = AsyncStorageClient(url, auth_headers(key.get_secret_value()), http_client=http)
        return cls(storage, http, url, key, opts)

    @classmethod
    def from_settings(cls, settings: StorageSettings) -> SupabaseStorage:
        key = settings.supabase_service_role_key
        if key is None or not key.get_secret_value():
            raise ValueError(
                "REELVAULT_STORAGE_BACKEND=supabase needs SUPABASE_SERVICE_ROLE_KEY "
                "(the project's service-role key; it stays on the server side)"
            )
        options = SupabaseStorageOptions(
            tus_threshold_bytes=settings.supabase_tus_threshold_bytes,
            timeout_s=settings.supabase_timeout_s,
        )
        if settings.supabase_storage_url:
            return cls.for_storage_server(settings.supabase_storage_url, key, options)
        if settings.supabase_url:
            return cls.for_project(settings.supabase_url, key, options)
        raise ValueError(
            "REELVAULT_STORAGE_BACKEND=supabase needs SUPABASE_URL (a project URL, storage at "
            "{url}/storage/v1/) or SUPABASE_STORAGE_URL (a bare storage server)"
        )

    # --- plumbing -------------------------------------------------------------------------
    async def _retry(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        return await retrying(what, call, self._options.retry)

    async def _storage3(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """One storage3 call with its errors typed."""
        try:
            return await call()
        except StorageApiError as exc:
            raise to_storage_error(ServerError.from_storage3(exc), what) from None
        except httpx.HTTPError as exc:
            raise transport_error(exc, what) from None

    def _object_path(self, prefix: str, bucket: str, key: str) -> str:
        return f"{prefix}/{quote(bucket, safe='')}/{quote(key, safe='/')}"

    # --- buckets --------------------------------------------------------------------------
    async def _fetch_bucket(self, name: str) -> BucketSpec | None:
        """The bucket's rules, or None if it does not exist. Plain httpx on ``GET /bucket/{id}``:
        storage3's ``get_bucket`` model rejects answers whose ``owner`` is null."""
        what = f"get bucket {name}"

        async def call() -> BucketSpec | None:
            try:
                response = await self._http.get(
                    urljoin(self._url, f"bucket/{quote(name, safe='')}")
                )
            except httpx.HTTPError as exc:
                raise transport_error(exc, what) from None
            if response.is_success:
                return rules_from_bucket_json(name, response.json())
            error = to_storage_error(ServerError.from_response(response), what)
            if isinstance(error, (BucketNotFound, ObjectNotFound)):
                return None
            raise error

        return await self._retry(what, call)

    async def _bucket_spec(self, name: str) -> BucketSpec:
        spec = self._buckets.get(name)
        if spec is None:
            spec = await self._fetch_bucket(name)
            if spec is None:
                raise BucketNotFound(f"Bucket not found: {name}")
            self._buckets[name] = spec
        return spec

    async def ensure_buckets(self, specs: Sequence[BucketSpec]) -> None:
        for spec in specs:
            existing = await self._fetch_bucket(spec.name)
            if existing is None:
                await self._create_bucket(spec)
                existing = await self._fetch_bucket(spec.name)
                if existing is None:
                    raise StorageError(f"bucket {spec.name} was created but cannot be read back")
            if normalized_rules(existing) != normalized_rules(spec):
                raise BucketRulesMismatch(
                    f"bucket {spec.name} exists with rules {describe_rules(existing)} but the "
                    f"configuration wants {describe_rules(spec)}; reelvault never changes bucket "
                    "rules by itself: update the bucket or the configuration deliberately"
                )
            self._buckets[spec.name] = existing
            try:
                await self.sweep_staging(spec.name)
            except (StorageError, httpx.HTTPError) as exc:  # housekeeping must not stop a start
                log.warning("could not sweep staging objects of bucket %s: %r", spec.name, exc)

    async def _create_bucket(self, spec: BucketSpec) -> None:
        options: CreateOrUpdateBucketOptions = {"public": spec.public}
        if spec.file_size_limit:
            options["file_size_limit"] = spec.file_size_limit
        if spec.allowed_mime_types:
            options["allowed_mime_types"] = list(spec.allowed_mime_types)
        what = f"create bucket {spec.name}"
        try:
            await self._retry(
                what,
                lambda: self._storage3(
                    what, lambda: self._storage.create_bucket(spec.name, spec.name, options)
                ),
            )
            log.info("created bucket %s (%s)", spec.name, describe_rules(spec))
        except ObjectExists:
            # Another process created it between our look and our create (or our own earlier
            # attempt did, and its answer was lost): fine if the rules match, checked next.
            log.info("bucket %s appeared concurrently; checking its rules", spec.name)

    # --- writes ---------------------------------------------------------------------------
    async def put(
        self,
        bucket: str,
        key: str,
        chunks: AsyncIterable[bytes],
        content_type: str,
        *,
        size: int | None = None,
    ) -> StoredFile:
        check_key(key)
        known = self._buckets.get(bucket)
        if known is not None:
            # Fail before moving any bytes; the server checks again.
            known.check_upload(content_type, size)
        what = f"put {bucket}/{key}"
        if size is not None and size > self._options.tus_threshold_bytes:
            return await self._put_streamed(bucket, key, chunks, content_type, size, what)
        async with self._spool(chunks, known, what) as spooled:
            try:
                if spooled.size > self._options.tus_threshold_bytes:
                    await self._tus_upload(bucket, key, spooled, content_type, what)
                else:
                    await self._retry(
                        what,
                        lambda: self._standard_upload(bucket, key, spooled, content_type, what),
                    )
            except ObjectExists:
                return await self._existing(bucket, key, spooled, content_type)
            except PayloadTooLarge as exc:
                raise PayloadTooLarge(
                    f"{bucket}/{key} ({spooled.size} bytes) is larger than bucket {bucket} or the "
                    f"server allows: {exc.message}"
                ) from None
            except MimeTypeNotAllowed as exc:
                raise MimeTypeNotAllowed(
                    f"bucket {bucket} does not accept {content_type} ({key}): {exc.message}"
                ) from None
        stored = await self._verified(bucket, key, spooled, content_type)
        log.info("stored %s/%s: %d bytes, sha256 %s", bucket, key, spooled.size, spooled.sha256)
        return stored

    @asynccontextmanager
    async def _spool(
        self, chunks: AsyncIterable[bytes], known: BucketSpec | None, what: str
    ) -> AsyncIterator[Spooled]:
        """Copy the stream to a temp file while counting and hashing; remove it afterwards."""
        spool_dir = self._options.spool_dir
        if spool_dir is not None:
            spool_dir.mkdir(parents=True, exist_ok=True)
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

    async def _put_streamed(
        self,
        bucket: str,
        key: str,
        chunks: AsyncIterable[bytes],
        content_type: str,
        size: int,
        what: str,
    ) -> StoredFile:
        """A put whose length is known up front: upload while downloading.

        The sha256 belongs in the object's user metadata, which TUS fixes when the upload is
        created, before the first byte (and is known only after the last). So the bytes go by
        TUS to a staging key as they arrive, hashed on the way, and a server-side copy
        (``POST /object/copy`` with ``x-metadata``, never upserting) puts them at ``key`` with
        the sha256; the staging object is removed after. A 409 on the copy is the usual
        duplicate: same sha256 -> no-op, different -> ``ObjectConflict``. Nothing is ever
        visible at ``key`` before it is complete and labelled."""
        staging = self._staging_key(key)
        digest = _ThreadedSha256()
        metadata = {
            "bucketName": bucket,
            "objectName": staging,
            "contentType": content_type,
            "cacheControl": str(self._options.cache_control_s),
        }
        try:
            try:
                await self._tus.upload_stream(
                    digest.hashing(prefetch(chunks, STREAM_PREFETCH_DEPTH)),
                    size,
                    metadata,
                    what,
                    {"x-upsert": "false"},
                )
            except PayloadTooLarge as exc:
                raise PayloadTooLarge(
                    f"{bucket}/{key} ({size} bytes) is larger than bucket {bucket} or the server "
                    f"allows: {exc.message}"
                ) from None
            except MimeTypeNotAllowed as exc:
                raise MimeTypeNotAllowed(
                    f"bucket {bucket} does not accept {content_type} ({key}): {exc.message}"
                ) from None
            content = Content(size, digest.hexdigest())
            try:
                await self._retry(
                    what, lambda: self._copy_into_place(bucket, staging, key, content, what)
                )
            except ObjectExists:
                return await self._existing(bucket, key, content, content_type)
        finally:
            await self._remove_quietly(bucket, staging, what)
        stored = await self._verified(bucket, key, content, content_type)
        log.info("stored %s/%s: %d bytes, sha256 %s (streamed)", bucket, key, size, content.sha256)
        return stored

    def _staging_key(self, key: str) -> str:
        name = key.rsplit("/", 1)[-1]
        return f"{self._options.staging_prefix}/{uuid.uuid4().hex}-{name}"

    async def _copy_into_place(
        self, bucket: str, source: str, key: str, content: Content, what: str
    ) -> None:
        """``POST /object/copy``: server-side, so no byte crosses the network again. The user
        metadata comes from the ``x-metadata`` header (base64 JSON) because ``copyMetadata`` is
        false; content type and cache control are the staging object's."""
        headers = {
            "x-upsert": "false",
            "x-metadata": base64.b64encode(json.dumps(self._metadata(content)).encode()).decode(),
        }
        body = {"bucketId": bucket, "sourceKey": source, "destinationKey": key,
                "copyMetadata": False}
        try:
            response = await self._http.post(
                urljoin(self._url, "object/copy"), json=body, headers=headers
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc, f"{what}: copy into place") from None
        if not response.is_success:
            raise to_storage_error(ServerError.from_response(response), f"{what}: copy into place")

    async def _delete_objects(self, bucket: str, keys: list[str], what: str) -> None:
        """``DELETE /object/{bucket}`` with ``prefixes`` (missing names are skipped)."""
        try:
            response = await self._http.request(
                "DELETE",
                urljoin(self._url, f"object/{quote(bucket, safe='')}"),
                json={"prefixes": keys},
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc, what) from None
        if not response.is_success:
            raise to_storage_error(ServerError.from_response(response), what)

    async def _remove_quietly(self, bucket: str, key: str, what: str) -> None:
        """Delete a staging object (it may not exist: the upload failed before completing).
        Failures are logged only: the start-up sweep removes what is left."""
        try:
            await self._delete_objects(bucket, [key], f"{what}: remove staging object {key}")
        except StorageError as exc:
            log.warning("%s", exc.message)

    async def sweep_staging(self, bucket: str, *, now: datetime | None = None) -> int:
        """Remove staging objects older than ``staging_max_age_s`` (left by a crash between a
        streamed upload and its copy into place); returns how many. Younger ones may belong to
        an upload in progress elsewhere and stay."""
        prefix = self._options.staging_prefix
        cutoff = (now or datetime.now(UTC)).timestamp() - self._options.staging_max_age_s
        stale: list[str] = []
        offset = 0
        while True:
            response = await self._http.post(
                urljoin(self._url, f"object/list/{quote(bucket, safe='')}"),
                json={"prefix": prefix, "limit": 1000, "offset": offset,
                      "sortBy": {"column": "name", "order": "asc"}},
            )
            if not response.is_success:
                raise to_storage_error(ServerError.from_response(response), f"list {bucket}")
            entries = response.json()
            for entry in entries:
                created = _timestamp(entry.get("created_at"))
                if entry.get("id") and created is not None and created < cutoff:
                    stale.append(f"{prefix}/{entry['name']}")
            if len(entries) < 1000:
                break
            offset += len(entries)
        for start in range(0, len(stale), 1000):
            await self._delete_objects(
                bucket, stale[start : start + 1000], f"remove stale staging objects of {bucket}"
            )
        if stale:
            log.info("removed %d stale staging objects from bucket %s", len(stale), bucket)
        return len(stale)

    def _metadata(self, content: Content) -> dict[str, str]:
        return {SHA256_METADATA_KEY: content.sha256}

    async def _standard_upload(
        self, bucket: str, key: str, spooled: Spooled, content_type: str, what: str
    ) -> None:
        # storage3 streams a real file object in 64 KiB chunks; those reads block the loop
        # briefly, acceptable below the TUS threshold. Always set the content type: storage3
        # defaults to text/plain, which MIME rules reject.
        file_options: dict[str, Any] = {
            "content-type": content_type,
            "cache-control": str(self._options.cache_control_s),
            "upsert": "false",
            "metadata": self._metadata(spooled),
        }
        handle = await anyio.to_thread.run_sync(spooled.path.open, "rb")
        try:
            await self._storage3(
                what,
                lambda: self._storage.from_(bucket).upload(key, handle, file_options),  # type: ignore[arg-type]
            )
        finally:
            handle.close()

    async def _tus_upload(
        self, bucket: str, key: str, spooled: Spooled, content_type: str, what: str
    ) -> None:
        metadata = {
            "bucketName": bucket,
            "objectName": key,
            "contentType": content_type,
            "cacheControl": str(self._options.cache_control_s),
            "metadata": json.dumps(self._metadata(spooled)),
        }
        await self._tus.upload(spooled.path, spooled.size, metadata, what, {"x-upsert": "false"})

    async def _existing(
        self, bucket: str, key: str, spooled: Content, content_type: str
    ) -> StoredFile:
        """409 Duplicate: a no-op if the stored bytes are ours, else a conflict."""
        info = await self.stat(bucket, key)
        if info is None:
            raise TransientStorageError(
                f"put {bucket}/{key}: the server reported a duplicate that is gone now; retry"
            )
        same = await self._same_bytes(info, spooled)
        if not same:
            raise ObjectConflict(
                f"{bucket}/{key} already holds different bytes ({info.size} bytes, sha256 "
                f"{info.sha256 or 'unknown'}; this upload: {spooled.size} bytes, sha256 "
                f"{spooled.sha256}); objects are never overwritten"
            )
        log.info("%s/%s already stored with the same sha256: no-op", bucket, key)
        return await self._stored_file(bucket, key, info.content_type or content_type, spooled)

    async def _same_bytes(self, info: ObjectInfo, spooled: Content) -> bool:
        if info.size != spooled.size:
            return False
        if info.sha256 is not None:
            return info.sha256 == spooled.sha256
        # Stored without our metadata (by another tool): hash it, streaming.
        digest = hashlib.sha256()
        async for chunk in self.read(info.bucket, info.key):
            digest.update(chunk)
        return digest.hexdigest() == spooled.sha256

    async def _verified(
        self, bucket: str, key: str, spooled: Content, content_type: str
    ) -> StoredFile:
        info = await self.stat(bucket, key)
        if info is None:
            raise TransientStorageError(f"put {bucket}/{key}: upload acknowledged but not found")
        if info.size != spooled.size or info.sha256 not in (None, spooled.sha256):
            # Someone else's bytes won a race at the key (or the server stored something else).
            raise ObjectConflict(
                f"{bucket}/{key} holds {info.size} bytes with sha256 {info.sha256} after "
                f"uploading {spooled.size} bytes with sha256 {spooled.sha256}"
            )
        return await self._stored_file(bucket, key, content_type, spooled)

    async def _stored_file(
        self, bucket: str, key: str, content_type: str, spooled: Content
    ) -> StoredFile:
        return StoredFile(
            bucket=bucket,
            key=key,
            content_type=content_type,
            bytes=spooled.size,
            sha256=spooled.sha256,
            url=await self.public_url(bucket, key),
        )

    # --- reads ----------------------------------------------------------------------------
    async def stat(self, bucket: str, key: str) -> ObjectInfo | None:
        check_key(key)
        what = f"stat {bucket}/{key}"
        try:
            body = await self._retry(
                what, lambda: self._storage3(what, lambda: self._storage.from_(bucket).info(key))
            )
        except ObjectNotFound:
            return None
        return _object_info(bucket, key, body)

    async def read(self, bucket: str, key: str) -> AsyncIterator[bytes]:
        check_key(key)
        what = f"read {bucket}/{key}"
        url = urljoin(self._url, self._object_path("object/authenticated", bucket, key))
        received = 0
        etag: str | None = None
        failures = 0
        while True:
            headers = {"Range": f"bytes={received}-"} if received else {}
            try:
                async with self._http.stream("GET", url, headers=headers) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        raise to_storage_error(ServerError.from_response(response), what)
                    if received and (
                        response.status_code != 206
                        or (etag is not None and response.headers.get("etag") != etag)
                    ):
                        raise StorageError(f"{what}: the object changed while reading it")
                    etag = etag or response.headers.get("etag")
                    async for chunk in response.aiter_bytes(READ_CHUNK):
                        received += len(chunk)
                        failures = 0
                        yield chunk
                    return
            except httpx.HTTPError as exc:
                error: TransientStorageError = transport_error(exc, what)
            except TransientStorageError as exc:
                error = exc
            failures += 1
            if failures >= self._options.retry.attempts:
                raise TransientStorageError(f"{error.message} (gave up after {failures} attempts)")
            delay = self._options.retry.delay(failures)
            log.warning(
                "%s interrupted at %d bytes: %s; resuming in %.2fs",
                what,
                received,
                error.message,
                delay,
            )
            await anyio.sleep(delay)

    # --- links ----------------------------------------------------------------------------
    async def public_url(self, bucket: str, key: str) -> str | None:
        check_key(key)
        if not (await self._bucket_spec(bucket)).public:
            return None
        return str(await self._storage.from_(bucket).get_public_url(key))

    async def signed_url(self, bucket: str, key: str, expires_in_s: int) -> str:
        check_key(key)
        if expires_in_s < 1:
            raise ValueError("expires_in_s must be at least 1")
        what = f"sign {bucket}/{key}"
        answer = await self._retry(
            what,
            lambda: self._storage3(
                what, lambda: self._storage.from_(bucket).create_signed_url(key, expires_in_s)
            ),
        )
        signed = answer.get("signedURL") or answer.get("signedUrl")
        if not signed:
            raise ObjectNotFound(f"{what}: the server returned no signed URL")
        # The server answers a relative "/object/sign/...?token="; storage3 2.34 joins it with
        # the storage URL, older releases did not. Make sure it is absolute either way.
        return signed if "://" in signed else urljoin(self._url, signed.lstrip("/"))

    async def aclose(self) -> None:
        await self._http.aclose()


def _secret(key: SecretStr | str) -> SecretStr:
    secret = key if isinstance(key, SecretStr) else SecretStr(key)
    if not secret.get_secret_value():
        raise ValueError("the Supabase service-role key is empty")
    return secret


class _ThreadedSha256:
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


def _timestamp(value: object) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _object_info(bucket: str, key: str, body: dict[str, Any]) -> ObjectInfo:
    """``GET /object/info``: current releases answer flat fields (``size``, ``content_type``,
    ``metadata`` = user metadata); older ones the row (``metadata`` = system metadata with
    ``size``/``mimetype``, ``user_metadata`` beside it)."""
    if "size" in body:
        size, content_type, user = body.get("size"), body.get("content_type"), body.get("metadata")
    else:
        system = body.get("metadata") or {}
        size, content_type = system.get("size"), system.get("mimetype")
        user = body.get("user_metadata")
    sha = (user or {}).get(SHA256_METADATA_KEY) if isinstance(user, dict) else None
    return ObjectInfo(
        bucket=bucket,
        key=key,
        size=int(size or 0),
        content_type=str(content_type or "application/octet-stream"),
        sha256=str(sha) if sha else None,
    )


__all__ = ["SupabaseStorage", "SupabaseStorageOptions"]
