"""Filesystem storage: the embedded default. Same rules as Supabase (bucket limits, MIME types,
no overwrite); the gateway serves the files under ``/files/{bucket}/{key}``, with an HMAC token
for private buckets."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import IO
from urllib.parse import quote, urlencode

import anyio

from reelvault_common.contracts.events import StoredFile
from reelvault_common.storage.interface import (
    BucketNotFound,
    BucketRulesMismatch,
    BucketSpec,
    ObjectConflict,
    ObjectInfo,
    ObjectNotFound,
    PayloadTooLarge,
    StorageError,
    check_key,
)
from reelvault_common.storage.streams import WRITEBACK_BYTES, HashingWriter, prefetch

READ_CHUNK = 1024 * 1024


def sign_path(secret: bytes, bucket: str, key: str, expires_at: int) -> str:
    message = f"{bucket}/{key}:{expires_at}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, bucket: str, key: str, expires_at: int, token: str) -> bool:
    if expires_at < time.time():
        return False
    return hmac.compare_digest(sign_path(secret, bucket, key, expires_at), token)


class FilesystemStorage:
    """``root/<bucket>/<key>`` holds the bytes; ``root/.meta`` the type and sha256;
    ``root/.buckets`` the bucket rules."""

    def __init__(self, root: Path, public_base_url: str, signing_key: bytes) -> None:
        self._root = root.resolve()
        self._base_url = public_base_url.rstrip("/")
        self._signing_key = signing_key
        for sub in (".tmp", ".meta", ".buckets"):
            (self._root / sub).mkdir(parents=True, exist_ok=True)

    # --- buckets --------------------------------------------------------------------------
    def _bucket_file(self, bucket: str) -> Path:
        return self._root / ".buckets" / f"{bucket}.json"

    def bucket_spec(self, bucket: str) -> BucketSpec:
        path = self._bucket_file(bucket)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise BucketNotFound(f"Bucket not found: {bucket}") from None
        mimes = raw["allowed_mime_types"]
        return BucketSpec(
            raw["name"], raw["public"], raw["file_size_limit"], tuple(mimes) if mimes else None
        )

    async def ensure_buckets(self, specs: Sequence[BucketSpec]) -> None:
        for spec in specs:
            try:
                existing = self.bucket_spec(spec.name)
            except BucketNotFound:
                (self._root / spec.name).mkdir(parents=True, exist_ok=True)
                tmp = self._root / ".tmp" / f"bucket-{uuid.uuid4().hex}"
                tmp.write_text(json.dumps(asdict(spec)))
                os.replace(tmp, self._bucket_file(spec.name))
                continue
            if existing != spec:
                raise BucketRulesMismatch(
                    f"bucket {spec.name} exists with rules {existing} but {spec} is configured"
                )

    # --- objects --------------------------------------------------------------------------
    def _object_path(self, bucket: str, key: str) -> Path:
        check_key(key)
        return self._root / bucket / key

    def _meta_path(self, bucket: str, key: str) -> Path:
        return self._root / ".meta" / bucket / f"{key}.json"

    def local_path(self, bucket: str, key: str) -> Path:
        """The file on disk (the gateway serves it directly)."""
        return self._object_path(bucket, key)

    async def put(
        self, bucket: str, key: str, chunks: AsyncIterable[bytes], content_type: str
    ) -> StoredFile:
        spec = self.bucket_spec(bucket)
        spec.check_upload(content_type)
        final = self._object_path(bucket, key)
        tmp = self._root / ".tmp" / uuid.uuid4().hex
        handle: IO[bytes] = await anyio.to_thread.run_sync(tmp.open, "wb")
        # Writeback starts as the file grows, so the one fsync at the end is short.
        writer = HashingWriter(handle, writeback_bytes=WRITEBACK_BYTES)
        try:
            # The source (e.g. a download) keeps streaming while a thread hashes and writes;
            # one fsync at the end, not per chunk.
            limit = spec.file_size_limit
            async for chunk in prefetch(chunks):
                if limit is not None and writer.size + len(chunk) > limit:
                    raise PayloadTooLarge(
                        f"object exceeds the {spec.file_size_limit} byte limit of bucket {bucket}"
                    )
                await writer.write(chunk)
            sha256 = await writer.finish(fsync=True)
        except BaseException:
            handle.close()
            tmp.unlink(missing_ok=True)
            raise
        handle.close()
        size = writer.size
        try:
            await anyio.to_thread.run_sync(
                self._commit, tmp, final, bucket, key, content_type, size, sha256
            )
        finally:
            tmp.unlink(missing_ok=True)
        return StoredFile(
            bucket=bucket,
            key=key,
            content_type=content_type,
            bytes=size,
            sha256=sha256,
            url=await self.public_url(bucket, key),
        )

    def _commit(
        self,
        tmp: Path,
        final: Path,
        bucket: str,
        key: str,
        content_type: str,
        size: int,
        sha256: str,
    ) -> None:
        meta = self._meta_path(bucket, key)
        meta.parent.mkdir(parents=True, exist_ok=True)
        final.parent.mkdir(parents=True, exist_ok=True)
        existing = self._read_meta(bucket, key) if final.exists() else None
        if existing is not None:
            self._check_same(bucket, key, existing, sha256)
            return
        meta_tmp = self._root / ".tmp" / f"meta-{uuid.uuid4().hex}"
        meta_tmp.write_text(
            json.dumps({"content_type": content_type, "size": size, "sha256": sha256})
        )
        os.replace(meta_tmp, meta)
        try:
            os.link(tmp, final)  # fails if the key exists: no overwrite, even under a race
        except FileExistsError:
            self._check_same(bucket, key, self._read_meta(bucket, key), sha256)

    def _check_same(self, bucket: str, key: str, existing: dict[str, object], sha256: str) -> None:
        if existing.get("sha256") != sha256:
            raise ObjectConflict(
                f"{bucket}/{key} already holds different bytes (sha256 {existing.get('sha256')})"
            )

    def _read_meta(self, bucket: str, key: str) -> dict[str, object]:
        try:
            return dict(json.loads(self._meta_path(bucket, key).read_text()))
        except FileNotFoundError:
            # Bytes without metadata (a crash between the two writes): hash the file itself.
            path = self._object_path(bucket, key)
            digest = hashlib.sha256()
            with path.open("rb") as fh:
                while block := fh.read(READ_CHUNK):
                    digest.update(block)
            return {"content_type": "application/octet-stream", "size": path.stat().st_size,
                    "sha256": digest.hexdigest()}

    async def stat(self, bucket: str, key: str) -> ObjectInfo | None:
        self.bucket_spec(bucket)
        path = self._object_path(bucket, key)
        if not path.is_file():
            return None
        meta = await anyio.to_thread.run_sync(self._read_meta, bucket, key)
        return ObjectInfo(
            bucket=bucket,
            key=key,
            size=path.stat().st_size,
            content_type=str(meta["content_type"]),
            sha256=str(meta["sha256"]),
        )

    async def read(self, bucket: str, key: str) -> AsyncIterator[bytes]:  # type: ignore[override]
        path = self._object_path(bucket, key)
        try:
            handle: IO[bytes] = await anyio.to_thread.run_sync(path.open, "rb")
        except FileNotFoundError:
            raise ObjectNotFound(f"Object not found: {bucket}/{key}") from None
        try:
            while chunk := await anyio.to_thread.run_sync(handle.read, READ_CHUNK):
                yield chunk
        finally:
            handle.close()

    # --- links ----------------------------------------------------------------------------
    def _file_url(self, bucket: str, key: str) -> str:
        return f"{self._base_url}/files/{quote(bucket)}/{quote(key)}"

    async def public_url(self, bucket: str, key: str) -> str | None:
        return self._file_url(bucket, key) if self.bucket_spec(bucket).public else None

    async def signed_url(self, bucket: str, key: str, expires_in_s: int) -> str:
        if await self.stat(bucket, key) is None:
            raise ObjectNotFound(f"Object not found: {bucket}/{key}")
        expires_at = int(time.time()) + expires_in_s
        token = sign_path(self._signing_key, bucket, key, expires_at)
        return f"{self._file_url(bucket, key)}?{urlencode({'expires': expires_at, 'token': token})}"

    def verify(self, bucket: str, key: str, expires_at: int, token: str) -> bool:
        return verify_signature(self._signing_key, bucket, key, expires_at, token)

    async def aclose(self) -> None:
        return None


__all__ = ["FilesystemStorage", "StorageError", "sign_path", "verify_signature"]
