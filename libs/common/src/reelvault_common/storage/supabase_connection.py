"""How the Supabase backend talks to its storage server: options, auth headers, the one httpx
pool, typed errors for storage3 calls and plain requests, and bounded retries.

The service-role key stays in request headers: never in URLs we hand out, never in logs or
exception messages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urljoin

import httpx
from pydantic import SecretStr
from storage3 import AsyncStorageClient
from storage3.exceptions import StorageApiError

from reelvault_common.storage.retry import RetryPolicy, retrying, retrying_after
from reelvault_common.storage.supabase_errors import ServerError, to_storage_error, transport_error
from reelvault_common.storage.tus import SUPABASE_CHUNK_SIZE, TusUploader

T = TypeVar("T")
MB = 1024 * 1024
SHA256_METADATA_KEY = "sha256"
# A streamed standard upload's own random token in the object's user metadata: after the
# upload, the stored object must carry it (else another writer's upload replaced ours).
UPLOAD_METADATA_KEY = "upload"
# Supabase's documented maximum of one standard upload.
STANDARD_UPLOAD_MAX_BYTES = 5 * 1024 * MB


@dataclass(frozen=True)
class SupabaseStorageOptions:
    tus_threshold_bytes: int = 6 * MB  # larger objects stream; smaller ones are spooled
    # Streamed objects up to this size go as one standard upload, larger ones by TUS.
    standard_upload_max_bytes: int = STANDARD_UPLOAD_MAX_BYTES
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


def service_role_secret(key: SecretStr | str) -> SecretStr:
    secret = key if isinstance(key, SecretStr) else SecretStr(key)
    if not secret.get_secret_value():
        raise ValueError("the Supabase service-role key is empty")
    return secret


def http_client(key: str, options: SupabaseStorageOptions) -> httpx.AsyncClient:
    # One pool for storage3, TUS and streaming reads. Headers ride on every request; HTTP/1.1
    # because big bodies over h2 are slower in httpx and the storage server speaks both.
    return httpx.AsyncClient(
        headers=auth_headers(key),
        timeout=httpx.Timeout(options.timeout_s, connect=min(10.0, options.timeout_s)),
        follow_redirects=False,
    )


def user_metadata(sha256: str) -> dict[str, str]:
    """The object's user metadata: our sha256 of its bytes."""
    return {SHA256_METADATA_KEY: sha256}


class SupabaseConnection:
    """The clients and options every part of the backend shares."""

    def __init__(
        self,
        storage: AsyncStorageClient,
        http: httpx.AsyncClient,
        storage_url: str,
        key: SecretStr,
        options: SupabaseStorageOptions,
    ) -> None:
        self.storage = storage
        self.http = http
        self.url = storage_url if storage_url.endswith("/") else storage_url + "/"
        self.options = options
        self.tus = TusUploader(
            http,
            urljoin(self.url, "upload/resumable"),
            auth_headers(key.get_secret_value()),
            chunk_size=options.tus_chunk_bytes,
            retry=options.retry,
        )

    def url_for(self, path: str) -> str:
        return urljoin(self.url, path)

    def object_url(self, prefix: str, bucket: str, key: str) -> str:
        return self.url_for(f"{prefix}/{quote(bucket, safe='')}/{quote(key, safe='/')}")

    def bucket_url(self, prefix: str, bucket: str) -> str:
        return self.url_for(f"{prefix}/{quote(bucket, safe='')}")

    async def retry(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        return await retrying(what, call, self.options.retry)

    async def retry_after(
        self, failure: BaseException, what: str, call: Callable[[], Awaitable[T]]
    ) -> T:
        """``retry`` once ``call`` has failed with ``failure`` on the caller's fast path."""
        return await retrying_after(failure, what, call, self.options.retry)

    async def storage3(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """One storage3 call with its errors typed."""
        try:
            return await call()
        except StorageApiError as exc:
            raise to_storage_error(ServerError.from_storage3(exc), what) from None
        except httpx.HTTPError as exc:
            raise transport_error(exc, what) from None

    async def retried_storage3(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """A storage3 call with its errors typed, retried while they are transient."""
        return await self.retry(what, lambda: self.storage3(what, call))

    async def request(self, method: str, url: str, what: str, **kwargs: Any) -> httpx.Response:
        """One plain request (for what storage3 lacks or gets wrong); an error answer or a
        transport failure becomes the typed error."""
        try:
            response = await self.http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise transport_error(exc, what) from None
        if not response.is_success:
            raise to_storage_error(ServerError.from_response(response), what)
        return response
