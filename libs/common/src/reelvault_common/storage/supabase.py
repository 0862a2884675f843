"""Supabase Storage backend of ``ObjectStorage``, on ``storage3`` (and ``supabase`` for a project
URL) plus plain httpx where storage3 falls short.

- Where: a project URL (storage at ``{url}/storage/v1/``, through ``supabase.AsyncClient``) or
  an explicit storage URL of a bare storage server (``storage3.AsyncStorageClient``). Both send
  ``Authorization: Bearer <key>`` and ``apikey: <key>`` (``supabase_connection.py``).
- Buckets are created when missing and never changed (``supabase_buckets.py``).
- Writes never overwrite (no upsert). A ``put`` whose size is known and above the TUS threshold
  (default 6 MB) streams straight to its key, as one standard upload (up to 5 GiB) or by TUS
  (``supabase_streamed_put.py``); any other
  ``put`` spools to a temp file first (``supabase_spooled_put.py``). On 409 Duplicate the
  existing object's sha256 decides: same bytes -> no-op, different -> conflict
  (``supabase_verify.py``). The server upserts at the end of every write without checking
  again, so concurrent writers of one key must take turns: ``claims.ClaimedStorage``.
- Staging objects left by earlier releases (which copied streamed uploads into place) are swept
  at start (``supabase_staging.py``); a failed sweep is returned, not only logged.
- Reads stream in chunks and resume with a Range request (``supabase_reads.py``).
- Errors become the typed errors of ``interface.py`` (``supabase_errors.py``); transient ones
  (5xx, timeouts, connection loss) are retried with backoff, a bounded number of times.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from datetime import datetime

import httpx
from pydantic import SecretStr
from storage3 import AsyncStorageClient

from reelvault_common.contracts.events import StoredFile
from reelvault_common.runtime.settings import StorageSettings
from reelvault_common.storage.interface import BucketSpec, ListedObject, ObjectInfo, check_key
from reelvault_common.storage.supabase_buckets import SupabaseBuckets
from reelvault_common.storage.supabase_connection import (
    SupabaseConnection,
    SupabaseStorageOptions,
    auth_headers,
    http_client,
    service_role_secret,
)
from reelvault_common.storage.supabase_listing import delete_object, list_objects
from reelvault_common.storage.supabase_reads import SupabaseReads
from reelvault_common.storage.supabase_spooled_put import SpooledPut
from reelvault_common.storage.supabase_staging import StagingArea, SweepResult
from reelvault_common.storage.supabase_streamed_put import StreamedPut
from reelvault_common.storage.supabase_verify import UploadVerifier


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
        self._options = options or SupabaseStorageOptions()
        self._connection = SupabaseConnection(storage, http, storage_url, key, self._options)
        self._buckets = SupabaseBuckets(self._connection)
        self._staging = StagingArea(self._connection)
        self._reads = SupabaseReads(self._connection, self._buckets)
        verifier = UploadVerifier(self._reads)
        self._spooled_put = SpooledPut(self._connection, verifier)
        self._streamed_put = StreamedPut(self._connection, verifier)

    def __repr__(self) -> str:  # never show headers: storage3's reprs include the apikey
        return f"SupabaseStorage({self._connection.url!r})"

    # --- construction ---------------------------------------------------------------------
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

        key = service_role_secret(service_role_key)
        opts = options or SupabaseStorageOptions()
        http = http_client(key.get_secret_value(), opts)
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
        key = service_role_secret(service_role_key)
        opts = options or SupabaseStorageOptions()
        http = http_client(key.get_secret_value(), opts)
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
            standard_upload_max_bytes=settings.supabase_standard_upload_max_bytes,
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

    # --- buckets --------------------------------------------------------------------------
    async def ensure_buckets(self, specs: Sequence[BucketSpec]) -> None:
        results = []
        for spec in specs:
            await self._buckets.ensure(spec)
            results.append(await self._staging.sweep_quietly(spec.name))
        self.sweeps = tuple(results)

    sweeps: tuple[SweepResult, ...] = ()
    """The start-up sweeps of ``ensure_buckets``, failed ones with their error (also counted in
    ``reelvault_storage_cleanup_failures_total``)."""

    async def sweep_staging(self, bucket: str, *, now: datetime | None = None) -> int:
        """Remove staging objects older than ``staging_max_age_s``; returns how many."""
        return await self._staging.sweep(bucket, now=now)

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
        known = self._buckets.known(bucket)
        if known is not None:
            # Fail before moving any bytes; the server checks again.
            known.check_upload(content_type, size)
        what = f"put {bucket}/{key}"
        if size is not None and size > self._options.tus_threshold_bytes:
            return await self._streamed_put.put(
                bucket, key, chunks, content_type, size, known, what
            )
        return await self._spooled_put.put(bucket, key, chunks, content_type, known, what)

    # --- reads and links ------------------------------------------------------------------
    async def stat(self, bucket: str, key: str) -> ObjectInfo | None:
        return await self._reads.stat(bucket, key)

    def read(self, bucket: str, key: str) -> AsyncIterator[bytes]:
        return self._reads.read(bucket, key)

    async def public_url(self, bucket: str, key: str) -> str | None:
        return await self._reads.public_url(bucket, key)

    async def signed_url(self, bucket: str, key: str, expires_in_s: int) -> str:
        return await self._reads.signed_url(bucket, key, expires_in_s)

    async def delete(self, bucket: str, key: str) -> bool:
        return await delete_object(self._connection, bucket, key)

    def list_objects(self, bucket: str, prefix: str = "") -> AsyncIterator[ListedObject]:
        return list_objects(self._connection, bucket, prefix)

    async def aclose(self) -> None:
        await self._connection.http.aclose()


__all__ = ["SupabaseStorage", "SupabaseStorageOptions"]
