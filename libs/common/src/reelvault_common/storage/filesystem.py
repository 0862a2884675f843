"""Filesystem storage: the embedded default. Same rules as Supabase (bucket limits, MIME types,
no overwrite); the gateway serves the files under ``/files/{bucket}/{key}``, with an HMAC token
for private buckets."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import hmac
import json
import mimetypes
import os
import stat
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO
from urllib.parse import quote, urlencode

import anyio

from reelvault_common.contracts.events import StoredFile
from reelvault_common.storage.interface import (
    BucketNotFound,
    BucketRulesMismatch,
    BucketSpec,
    ListedObject,
    ObjectConflict,
    ObjectInfo,
    ObjectNotFound,
    PayloadTooLarge,
    StorageError,
    StreamLengthMismatch,
    check_key,
)
from reelvault_common.storage.streams import WRITE_BATCH, WRITEBACK_BYTES

READ_CHUNK = 1024 * 1024
# Commit locks are striped over this many files (bounded, unlike one per key); keys sharing a
# stripe only wait for each other's few renames and fsyncs.
LOCK_STRIPES = 64
# Puts announced at most this size are gathered in memory and written in one thread hop.
SMALL_OBJECT_BYTES = 1024 * 1024
# Bytes a put may have handed to its writer thread and not yet written: the source waits
# beyond this, so memory per put stays bounded however slow the disk is.
WRITER_QUEUE_BYTES = 4 * 1024 * 1024


def sign_path(secret: bytes, bucket: str, key: str, expires_at: int) -> str:
    message = f"{bucket}/{key}:{expires_at}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, bucket: str, key: str, expires_at: int, token: str) -> bool:
    if expires_at < time.time():
        return False
    return hmac.compare_digest(sign_path(secret, bucket, key, expires_at), token)


@dataclass(frozen=True)
class _Stored:
    """What a key holds, as its metadata (or its own bytes) describe it."""

    content_type: str
    size: int
    sha256: str


def _fsync_dir(path: Path) -> None:
    """Make the folder's entries (a rename, a link, a new subfolder) survive a power loss."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(path: Path) -> None:
    """``mkdir -p`` whose new folders are durable: each new one's parent is fsynced."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        # Made meanwhile by a concurrent writer (or a file: the next mkdir reports it).
        with contextlib.suppress(FileExistsError):
            folder.mkdir()
        _fsync_dir(folder.parent)


def _write_durably(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _check_length(bucket: str, key: str, received: int, announced: int | None) -> None:
    """A put's stream must have exactly the length announced for it (when one was)."""
    if announced is not None and received != announced:
        raise StreamLengthMismatch(
            f"put {bucket}/{key}: the stream had {'more than ' if received > announced else ''}"
            f"{received} bytes, not the announced {announced}; nothing stored"
        )


def _sha256_of(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class _FileWriter:
    """Hashes and writes one put's chunks in a thread of its own, while the event loop goes on
    pulling the source.

    Handing chunks over is an append under a lock, a batch of ``WRITE_BATCH`` bytes at a time
    (the loop waits only when ``WRITER_QUEUE_BYTES`` are queued), where a worker-thread hop
    per chunk plus a read-ahead task cost the loop more than the download itself leaves
    spare: the loop's share of the copy is what limits it on a busy machine
    (bench/archive.py). Chunks are written as they came (no joining copy); the kernel's
    writeback is started every ``WRITEBACK_BYTES`` so the one fsync at the end is short."""

    def __init__(self, handle: IO[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self._handle = handle
        self._loop = loop
        self._digest = hashlib.sha256()
        self._lock = threading.Condition()
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._batch: list[bytes] = []  # pieces not handed over yet (the event loop's side)
        self._batched = 0
        self._closing = False
        self._discard = False
        self._error: BaseException | None = None
        self._room: asyncio.Future[None] | None = None
        self._written = 0
        self._written_back = 0
        self.size = 0
        self._thread = threading.Thread(target=self._run, name="storage-put", daemon=True)
        self._thread.start()

    async def write(self, chunk: bytes) -> None:
        if not isinstance(chunk, bytes):
            chunk = bytes(chunk)  # a source may reuse its buffer once it yielded it
        self.size += len(chunk)
        self._batch.append(chunk)
        self._batched += len(chunk)
        if self._batched >= WRITE_BATCH:
            await self._hand_over()

    async def _hand_over(self) -> None:
        batch, batched = self._batch, self._batched
        self._batch, self._batched = [], 0
        with self._lock:
            self._raise_error()
            self._queue.extend(batch)
            self._queued += batched
            self._lock.notify()
            if self._queued < WRITER_QUEUE_BYTES:
                return
            room = self._room = self._loop.create_future()
        await room
        with self._lock:
            self._raise_error()

    async def finish(self) -> str:
        """Write what is queued, flush and fsync once (in the writer's thread); the sha256 of
        every byte written."""
        if self._batch:
            await self._hand_over()
        with self._lock:
            self._closing = True
            self._lock.notify()
        await anyio.to_thread.run_sync(self._thread.join)
        with self._lock:
            self._raise_error()
        return self._digest.hexdigest()

    async def abort(self) -> None:
        """Drop what is queued and wait for the thread (even when cancelled), so the caller
        can remove the file."""
        self._batch.clear()
        with self._lock:
            self._closing = self._discard = True
            self._queue.clear()
            self._lock.notify()
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._thread.join)

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._lock.wait()
                chunk = self._queue.popleft() if self._queue else None
            try:
                if chunk is None:  # closing, all written
                    if not self._discard:
                        self._handle.flush()
                        os.fsync(self._handle.fileno())
                    return
                self._write(chunk)
            except BaseException as exc:  # surfaced to the writer's caller
                with self._lock:
                    self._error = exc
                    self._queue.clear()
                    self._closing = True
                self._wake()
                return
            with self._lock:
                self._queued -= len(chunk)
            self._wake()

    def _write(self, chunk: bytes) -> None:
        if self._discard:
            return
        self._digest.update(chunk)
        self._handle.write(chunk)
        self._written += len(chunk)
        if self._written - self._written_back >= WRITEBACK_BYTES and hasattr(os, "posix_fadvise"):
            # DONTNEED starts writeback of the stretch without waiting for it.
            self._handle.flush()
            os.posix_fadvise(
                self._handle.fileno(),
                self._written_back,
                self._written - self._written_back,
                os.POSIX_FADV_DONTNEED,
            )
            self._written_back = self._written

    def _wake(self) -> None:
        """Let a ``write`` waiting for room go on once the queue is short enough (or broken)."""
        with self._lock:
            room = self._room
            if room is None or (self._queued >= WRITER_QUEUE_BYTES and self._error is None):
                return
            self._room = None
        self._loop.call_soon_threadsafe(_set_done, room)


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class FilesystemStorage:
    """``root/<bucket>/<key>`` holds the bytes; ``root/.meta`` the type and sha256;
    ``root/.buckets`` the bucket rules; ``root/.locks`` the commit locks; ``root/.tmp`` files
    being written (one left there by a crash is never looked at again).

    Committing a put (``_commit``), safe against any number of processes putting at one key
    and against a crash at any point:

    1. the bytes go to a temp file, fsynced, and its metadata to another, fsynced (no lock);
    2. under the key's commit lock (``flock``; the kernel drops it when a process dies):
       if the key holds an object, compare sha256s (same: no-op, else ``ObjectConflict``);
       otherwise rename the metadata into place and fsync its folder, THEN hard-link the temp
       file at the key (the commit point: the object appears whole, with its metadata already
       durable) and fsync the key's folder.

    So only one writer at a time decides, metadata is replaced only while no object exists,
    and an object is never visible before its metadata. A crash before the link leaves no
    object (metadata it may have left is overwritten by the next put and ignored meanwhile:
    the object's presence decides); a crash after it leaves a finished object. An object
    whose metadata is missing or of another length (placed by hand, or left by the earlier,
    lock-less commit) is described from its own bytes: size and sha256 computed, content type
    guessed from the key."""

    def __init__(self, root: Path, public_base_url: str, signing_key: bytes) -> None:
        self._root = root.resolve()
        self._base_url = public_base_url.rstrip("/")
        self._signing_key = signing_key
        # Bucket rules found on disk: reelvault never changes a bucket's rules, so one read
        # per process is enough (put, stat and public_url all ask).
        self._specs: dict[str, BucketSpec] = {}
        for sub in (".tmp", ".meta", ".buckets", ".locks"):
            (self._root / sub).mkdir(parents=True, exist_ok=True)

    # --- buckets --------------------------------------------------------------------------
    def _bucket_file(self, bucket: str) -> Path:
        return self._root / ".buckets" / f"{bucket}.json"

    def bucket_spec(self, bucket: str) -> BucketSpec:
        known = self._specs.get(bucket)
        if known is not None:
            return known
        path = self._bucket_file(bucket)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise BucketNotFound(f"Bucket not found: {bucket}") from None
        mimes = raw["allowed_mime_types"]
        spec = BucketSpec(
            raw["name"], raw["public"], raw["file_size_limit"], tuple(mimes) if mimes else None
        )
        self._specs[bucket] = spec
        return spec

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
        self,
        bucket: str,
        key: str,
        chunks: AsyncIterable[bytes],
        content_type: str,
        *,
        size: int | None = None,
    ) -> StoredFile:
        spec = self.bucket_spec(bucket)
        spec.check_upload(content_type, size)
        final = self._object_path(bucket, key)
        if size is not None and size <= SMALL_OBJECT_BYTES:
            return await self._put_small(bucket, key, chunks, content_type, size, final)
        tmp = self._root / ".tmp" / uuid.uuid4().hex
        handle: IO[bytes] = await anyio.to_thread.run_sync(tmp.open, "wb")
        writer = _FileWriter(handle, asyncio.get_running_loop())
        try:
            # The source (e.g. a download) keeps streaming while the writer's thread hashes
            # and writes; one fsync at the end, not per chunk.
            limit = spec.file_size_limit
            async for chunk in chunks:
                if limit is not None and writer.size + len(chunk) > limit:
                    raise PayloadTooLarge(
                        f"object exceeds the {spec.file_size_limit} byte limit of bucket {bucket}"
                    )
                await writer.write(chunk)
            _check_length(bucket, key, writer.size, size)
            sha256 = await writer.finish()
        except BaseException:
            await writer.abort()
            handle.close()
            tmp.unlink(missing_ok=True)
            raise
        handle.close()
        try:
            stored_type = await anyio.to_thread.run_sync(
                self._commit, tmp, final, bucket, key, content_type, writer.size, sha256
            )
        finally:
            tmp.unlink(missing_ok=True)
        return await self._stored_file(bucket, key, stored_type, writer.size, sha256)

    async def _put_small(
        self,
        bucket: str,
        key: str,
        chunks: AsyncIterable[bytes],
        content_type: str,
        announced: int,
        final: Path,
    ) -> StoredFile:
        """A put of at most ``SMALL_OBJECT_BYTES`` announced bytes (thumbnails, short clips):
        gathered in memory, then written, fsynced, hashed and committed in ONE worker-thread
        hop instead of one per step; the same commit as any other put."""
        parts: list[bytes] = []
        received = 0
        async for chunk in chunks:
            received += len(chunk)
            if received > announced:
                break
            parts.append(chunk)
        _check_length(bucket, key, received, announced)
        data = b"".join(parts)
        sha256, stored_type = await anyio.to_thread.run_sync(
            self._write_and_commit, data, final, bucket, key, content_type
        )
        return await self._stored_file(bucket, key, stored_type, len(data), sha256)

    async def _stored_file(
        self, bucket: str, key: str, content_type: str, size: int, sha256: str
    ) -> StoredFile:
        return StoredFile(
            bucket=bucket,
            key=key,
            content_type=content_type,
            bytes=size,
            sha256=sha256,
            url=await self.public_url(bucket, key),
        )

    def _write_and_commit(
        self, data: bytes, final: Path, bucket: str, key: str, content_type: str
    ) -> tuple[str, str]:
        tmp = self._root / ".tmp" / uuid.uuid4().hex
        try:
            _write_durably(tmp, data)
            sha256 = hashlib.sha256(data).hexdigest()
            return sha256, self._commit(tmp, final, bucket, key, content_type, len(data), sha256)
        finally:
            tmp.unlink(missing_ok=True)

    def _commit(
        self,
        tmp: Path,
        final: Path,
        bucket: str,
        key: str,
        content_type: str,
        size: int,
        sha256: str,
    ) -> str:
        """Publish the fsynced ``tmp`` at ``final`` (see the class docstring); the content
        type of what the key holds afterwards."""
        meta = self._meta_path(bucket, key)
        _make_dirs(meta.parent)
        _make_dirs(final.parent)
        # Written and fsynced before taking the lock: the critical section only renames,
        # links and fsyncs folders.
        meta_tmp = self._root / ".tmp" / f"meta-{uuid.uuid4().hex}"
        record = {"content_type": content_type, "size": size, "sha256": sha256}
        _write_durably(meta_tmp, json.dumps(record).encode())
        try:
            with self._commit_lock(bucket, key):
                existing = self._stored_meta(bucket, key)
                if existing is not None:
                    return self._check_same(bucket, key, existing, sha256)
                os.replace(meta_tmp, meta)
                _fsync_dir(meta.parent)
                try:
                    os.link(tmp, final)  # the commit point; never replaces an existing name
                except FileExistsError:
                    # Only a writer that skips the lock (a replica still on the earlier,
                    # lock-less commit; a file placed by hand) gets here: our metadata may
                    # not describe that object.
                    meta.unlink(missing_ok=True)
                    _fsync_dir(meta.parent)
                    existing = self._stored_meta(bucket, key)
                    if existing is None:
                        raise ObjectConflict(
                            f"{bucket}/{key} is a folder of other objects"
                        ) from None
                    return self._check_same(bucket, key, existing, sha256)
                _fsync_dir(final.parent)
        finally:
            meta_tmp.unlink(missing_ok=True)
        return content_type

    @contextmanager
    def _commit_lock(self, bucket: str, key: str) -> Iterator[None]:
        """An exclusive ``flock`` shared by every process and thread committing this key (one
        of ``LOCK_STRIPES`` lock files, so their number stays bounded); released on close, or
        by the kernel when the holder dies."""
        stripe = int.from_bytes(hashlib.sha256(f"{bucket}/{key}".encode()).digest()[:4], "big")
        path = self._root / ".locks" / f"{stripe % LOCK_STRIPES:03d}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _check_same(self, bucket: str, key: str, existing: _Stored, sha256: str) -> str:
        """Same bytes: a no-op, answered with the stored content type; else a conflict."""
        if existing.sha256 != sha256:
            raise ObjectConflict(
                f"{bucket}/{key} already holds different bytes (sha256 {existing.sha256})"
            )
        return existing.content_type

    def _stored_meta(self, bucket: str, key: str) -> _Stored | None:
        """What the key holds (content type, size, sha256), or None without an object there.

        Written metadata is trusted only with the object's length; missing or otherwise (a
        file placed by hand, or left by the earlier lock-less commit), the bytes describe
        themselves: sha256 computed, content type guessed from the key."""
        path = self._object_path(bucket, key)
        try:
            found = path.stat()
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(found.st_mode):
            return None
        try:
            meta = json.loads(self._meta_path(bucket, key).read_bytes())
            written = _Stored(str(meta["content_type"]), int(meta["size"]), str(meta["sha256"]))
        except (FileNotFoundError, ValueError, TypeError, KeyError):
            written = None
        if written is not None and written.size == found.st_size:
            return written
        guessed, _ = mimetypes.guess_type(key)
        return _Stored(guessed or "application/octet-stream", found.st_size, _sha256_of(path))

    async def stat(self, bucket: str, key: str) -> ObjectInfo | None:
        self.bucket_spec(bucket)
        stored = await anyio.to_thread.run_sync(self._stored_meta, bucket, key)
        if stored is None:
            return None
        return ObjectInfo(
            bucket=bucket,
            key=key,
            size=stored.size,
            content_type=stored.content_type,
            sha256=stored.sha256,
        )

    async def read(self, bucket: str, key: str) -> AsyncIterator[bytes]:
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

    async def delete(self, bucket: str, key: str) -> bool:
        self.bucket_spec(bucket)
        return await anyio.to_thread.run_sync(self._delete, bucket, key)

    def _delete(self, bucket: str, key: str) -> bool:
        """Under the key's commit lock, so a put of the same key either sees the object
        whole or finds the key free; the object goes before its metadata."""
        path = self._object_path(bucket, key)
        with self._commit_lock(bucket, key):
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            _fsync_dir(path.parent)
            self._meta_path(bucket, key).unlink(missing_ok=True)
        return True

    async def list_objects(self, bucket: str, prefix: str = "") -> AsyncIterator[ListedObject]:
        self.bucket_spec(bucket)
        root = self._root / bucket
        folder = root / prefix.strip("/") if prefix.strip("/") else root
        found = await anyio.to_thread.run_sync(self._walk, root, folder)
        for item in found:
            yield item

    @staticmethod
    def _walk(root: Path, folder: Path) -> list[ListedObject]:
        listed = []
        for directory, _, files in os.walk(folder):
            for name in files:
                path = Path(directory) / name
                with contextlib.suppress(FileNotFoundError):  # removed meanwhile
                    info = path.stat()
                    listed.append(ListedObject(
                        key=path.relative_to(root).as_posix(), size=info.st_size,
                        created_at=datetime.fromtimestamp(info.st_mtime, UTC),
                    ))
        return listed

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
