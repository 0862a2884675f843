"""One writer per object key across processes: a claim in NATS KV before writing.

Why: a Supabase Storage server checks that a key is free when an upload starts and upserts when
it ends, without checking again, so two writers of one key can both succeed, the later bytes
winning silently. A writer therefore claims the key (an atomic KV ``create``) before it writes; a
second writer waits for the first to finish and then meets the stored object like any later
writer: a no-op on the same bytes, ``ObjectConflict`` on others.

The claim is a lease, renewed while the write goes on, so one left by a crashed writer is taken
over (compare-and-set on its revision) once it lapses. After a successful write the claim
records the object's size and sha256: a streamed Supabase upload cannot carry its sha256 in the
object's metadata (known only after the last byte, when TUS has long fixed the metadata), and
``ClaimedStorage.stat`` reads it from there. The catalog remains the system of record; the
records expire with the bucket's ``ttl``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, replace
from typing import Literal, Protocol, TypeVar

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import (
    APIError,
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
)
from nats.js.kv import KeyValue

from reelvault_common.contracts.events import StoredFile
from reelvault_common.storage.interface import (
    BucketSpec,
    ListedObject,
    ObjectInfo,
    ObjectStorage,
    TransientStorageError,
    check_key,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
# JetStream "wrong last sequence" error codes (a compare-and-set lost the race).
_WRONG_LAST = (10071, 10164)
DEFAULT_RECORD_TTL_S = 7 * 24 * 3600.0


@dataclass(frozen=True)
class ClaimRecord:
    """A key's claim: being written by ``owner`` until ``expires_at`` unless renewed, or
    stored (with the size and sha256 the writer verified)."""

    owner: str
    state: Literal["writing", "stored"]
    expires_at: float
    size: int | None = None
    sha256: str | None = None

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> ClaimRecord:
        data = json.loads(raw)
        return cls(
            owner=str(data["owner"]),
            state="stored" if data.get("state") == "stored" else "writing",
            expires_at=float(data.get("expires_at") or 0.0),
            size=int(data["size"]) if data.get("size") is not None else None,
            sha256=str(data["sha256"]) if data.get("sha256") else None,
        )


class ClaimStore(Protocol):
    """Compare-and-set records by name (NATS KV; ``MemoryClaimStore`` within one process)."""

    async def get(self, name: str) -> tuple[ClaimRecord, int] | None: ...
    async def create(self, name: str, record: ClaimRecord) -> int | None: ...
    async def update(self, name: str, record: ClaimRecord, *, last: int) -> int | None: ...
    async def delete(self, name: str, *, last: int) -> bool: ...


async def _transient(what: str, call: Callable[[], Awaitable[T]]) -> T:
    """NATS trouble (a timeout, a reconnect) is worth retrying later, like a storage 5xx."""
    try:
        return await call()
    except (nats.errors.Error, TimeoutError) as exc:
        raise TransientStorageError(f"{what}: NATS KV unavailable: {exc!r}") from exc


class NatsClaimStore:
    """Claims in a NATS KV bucket (history 1; records expire ``ttl`` after their last write)."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    @classmethod
    async def open(
        cls,
        js: JetStreamContext,
        bucket: str,
        *,
        ttl_s: float = DEFAULT_RECORD_TTL_S,
        replicas: int = 1,
    ) -> NatsClaimStore:
        try:
            return cls(await js.key_value(bucket))
        except (BucketNotFoundError, NotFoundError):
            pass
        config = KeyValueConfig(
            bucket=bucket, history=1, ttl=ttl_s, storage=StorageType.FILE, replicas=replicas
        )
        try:
            return cls(await js.create_key_value(config))
        except APIError:  # another replica created it first
            return cls(await js.key_value(bucket))

    async def get(self, name: str) -> tuple[ClaimRecord, int] | None:
        async def call() -> tuple[ClaimRecord, int] | None:
            try:
                entry = await self._kv.get(name)
            except KeyNotFoundError:
                return None
            if entry.value is None or entry.revision is None:
                return None
            return ClaimRecord.from_bytes(entry.value), entry.revision

        return await _transient("read a storage claim", call)

    async def create(self, name: str, record: ClaimRecord) -> int | None:
        async def call() -> int | None:
            try:
                return await self._kv.create(name, record.to_bytes())
            except KeyWrongLastSequenceError:
                return None

        return await _transient("claim a storage key", call)

    async def update(self, name: str, record: ClaimRecord, *, last: int) -> int | None:
        async def call() -> int | None:
            try:
                return await self._kv.update(name, record.to_bytes(), last=last)
            except KeyWrongLastSequenceError:
                return None

        return await _transient("update a storage claim", call)

    async def delete(self, name: str, *, last: int) -> bool:
        async def call() -> bool:
            try:
                await self._kv.delete(name, last=last)
            except KeyWrongLastSequenceError:
                return False
            except APIError as exc:
                if exc.err_code in _WRONG_LAST:  # nats-py does not translate this one
                    return False
                raise
            return True

        return await _transient("release a storage claim", call)


class MemoryClaimStore:
    """The same compare-and-set semantics within one process (no other writer outside it)."""

    def __init__(self) -> None:
        self._records: dict[str, tuple[ClaimRecord, int]] = {}
        self._revision = 0

    def _next(self) -> int:
        self._revision += 1
        return self._revision

    async def get(self, name: str) -> tuple[ClaimRecord, int] | None:
        return self._records.get(name)

    async def create(self, name: str, record: ClaimRecord) -> int | None:
        if name in self._records:
            return None
        revision = self._next()
        self._records[name] = (record, revision)
        return revision

    async def update(self, name: str, record: ClaimRecord, *, last: int) -> int | None:
        current = self._records.get(name)
        if current is None or current[1] != last:
            return None
        revision = self._next()
        self._records[name] = (record, revision)
        return revision

    async def delete(self, name: str, *, last: int) -> bool:
        current = self._records.get(name)
        if current is None or current[1] != last:
            return False
        del self._records[name]
        return True


def claim_name(bucket: str, key: str) -> str:
    """A KV-safe name for ``bucket/key`` (object keys hold characters KV keys may not)."""
    return "k." + hashlib.sha256(f"{bucket}/{key}".encode()).hexdigest()


class Claim:
    """A held claim: renewed in the background until released."""

    def __init__(
        self, name: str, record: ClaimRecord, revision: int, previous: ClaimRecord | None = None
    ) -> None:
        self.name = name
        self.record = record
        self.revision = revision
        self.previous = previous  # a stored record taken over: put back if this write fails
        self.lost = False


class KeyClaims:
    """Claims of object keys on a ``ClaimStore``."""

    def __init__(
        self,
        store: ClaimStore,
        *,
        lease_s: float = 90.0,
        wait_s: float = 30.0,
        poll_s: float = 0.1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._lease_s = lease_s
        self._wait_s = wait_s
        self._poll_s = poll_s
        self._clock = clock
        self._owner = uuid.uuid4().hex

    async def recorded(self, bucket: str, key: str) -> ClaimRecord | None:
        """What the last successful writer recorded about ``bucket/key``, if anything."""
        found = await self._store.get(claim_name(bucket, key))
        if found is None or found[0].state != "stored":
            return None
        return found[0]

    async def forget(self, bucket: str, key: str) -> None:
        """Drop what was recorded about ``bucket/key`` (its object was removed)."""
        name = claim_name(bucket, key)
        found = await self._store.get(name)
        if found is not None and found[0].state == "stored":
            await self._store.delete(name, last=found[1])

    @asynccontextmanager
    async def hold(self, bucket: str, key: str) -> AsyncIterator[Claim]:
        """Claim ``bucket/key`` for the block (waiting up to ``wait_s`` for another writer).
        At the end of the block a claim not marked ``stored`` is released."""
        claim = await self._acquire(bucket, key)
        renewing = asyncio.create_task(self._renew(claim), name="storage-claim-renew")
        try:
            yield claim
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            if claim.record.state != "stored":
                await self._release(claim)

    async def _release(self, claim: Claim) -> None:
        """Give up a claim whose write did not happen (a lapsed lease is the fallback)."""
        with contextlib.suppress(TransientStorageError):
            if claim.previous is not None:
                await self._store.update(claim.name, claim.previous, last=claim.revision)
            else:
                await self._store.delete(claim.name, last=claim.revision)

    async def stored(self, claim: Claim, stored: StoredFile) -> None:
        """Record what the key now holds (best effort: the write itself is already done)."""
        record = ClaimRecord(self._owner, "stored", 0.0, stored.bytes, stored.sha256)
        try:
            revision = await self._store.update(claim.name, record, last=claim.revision)
        except TransientStorageError as exc:
            log.warning("could not record %s/%s as stored: %s", stored.bucket, stored.key,
                        exc.message)
            return
        if revision is None:
            log.warning("the claim of %s/%s was taken over before it was recorded",
                        stored.bucket, stored.key)
            return
        claim.record, claim.revision = record, revision

    async def _acquire(self, bucket: str, key: str) -> Claim:
        name = claim_name(bucket, key)
        deadline = self._clock() + self._wait_s
        delay = self._poll_s
        while True:
            record = ClaimRecord(self._owner, "writing", self._clock() + self._lease_s)
            revision = await self._store.create(name, record)
            if revision is not None:
                return Claim(name, record, revision)
            found = await self._store.get(name)
            if found is not None:
                current, last = found
                # A stored record: the object exists, the write settles against it. A lapsed
                # lease: its writer is gone. Either may be taken over.
                if current.state == "stored" or current.expires_at < self._clock():
                    revision = await self._store.update(name, record, last=last)
                    if revision is not None:
                        if current.state == "writing":
                            log.info("took over the lapsed claim of %s/%s", bucket, key)
                            return Claim(name, record, revision)
                        return Claim(name, record, revision, previous=current)
            if self._clock() >= deadline:
                raise TransientStorageError(
                    f"{bucket}/{key} is being written by another writer; try again later"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _renew(self, claim: Claim) -> None:
        while True:
            await asyncio.sleep(self._lease_s / 3)
            record = replace(claim.record, expires_at=self._clock() + self._lease_s)
            try:
                revision = await self._store.update(claim.name, record, last=claim.revision)
            except TransientStorageError as exc:
                log.warning("could not renew the claim %s: %s", claim.name, exc.message)
                continue
            if revision is None:
                claim.lost = True
                log.warning("lost the claim %s (its lease lapsed)", claim.name)
                return
            claim.record, claim.revision = record, revision


class ClaimedStorage:
    """An ``ObjectStorage`` whose puts hold the key's claim while they write, and whose
    ``stat`` fills in the sha256 the backend could not store with the object."""

    def __init__(self, storage: ObjectStorage, claims: KeyClaims) -> None:
        self.inner = storage
        self._claims = claims

    async def ensure_buckets(self, specs: Sequence[BucketSpec]) -> None:
        await self.inner.ensure_buckets(specs)

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
        async with self._claims.hold(bucket, key) as claim:
            stored = await self.inner.put(bucket, key, chunks, content_type, size=size)
            if claim.lost:
                # Another writer may have written meanwhile: what the key holds decides.
                info = await self.inner.stat(bucket, key)
                if info is None or info.size != stored.bytes or (
                    info.sha256 is not None and info.sha256 != stored.sha256
                ):
                    raise TransientStorageError(
                        f"put {bucket}/{key}: the claim lapsed during the write; retry"
                    )
            await self._claims.stored(claim, stored)
            return stored

    async def stat(self, bucket: str, key: str) -> ObjectInfo | None:
        info = await self.inner.stat(bucket, key)
        if info is None or info.sha256 is not None:
            return info
        record = await self._claims.recorded(bucket, key)
        if record is None or record.size != info.size or record.sha256 is None:
            return info
        return replace(info, sha256=record.sha256)

    def read(self, bucket: str, key: str) -> AsyncIterator[bytes]:
        return self.inner.read(bucket, key)

    async def public_url(self, bucket: str, key: str) -> str | None:
        return await self.inner.public_url(bucket, key)

    async def signed_url(self, bucket: str, key: str, expires_in_s: int) -> str:
        return await self.inner.signed_url(bucket, key, expires_in_s)

    async def delete(self, bucket: str, key: str) -> bool:
        removed = await self.inner.delete(bucket, key)
        await self._claims.forget(bucket, key)
        return removed

    def list_objects(self, bucket: str, prefix: str = "") -> AsyncIterator[ListedObject]:
        return self.inner.list_objects(bucket, prefix)

    async def aclose(self) -> None:
        await self.inner.aclose()


__all__ = [
    "Claim",
    "ClaimRecord",
    "ClaimStore",
    "ClaimedStorage",
    "KeyClaims",
    "MemoryClaimStore",
    "NatsClaimStore",
    "claim_name",
]
