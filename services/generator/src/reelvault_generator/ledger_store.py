"""The job ledger on a NATS KV bucket: optimistic concurrency does the locking.

Two kinds of keys:
- ``<video id>`` -> ``LedgerEntry`` (claim, job, failure);
- ``job.<provider>.<job id>`` -> the video id owning that provider job (a ``JobBinding``:
  with what finishing the video needs, so a webhook naming the job costs one read), written
  before the ledger says ``created``. Recovery adopts only jobs nobody owns, and owning is an
  atomic ``create``, so two videos with the same prompt can never share one job.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from typing import Protocol

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

from reelvault_generator.ledger import JobBinding, LedgerEntry, video_key

log = logging.getLogger(__name__)

_KV_KEY = re.compile(r"^[-/_=.a-zA-Z0-9]+$")
# JetStream "wrong last sequence" error codes (a compare-and-set lost the race).
_WRONG_LAST = (10071, 10164)


def _job_key(provider: str, job_id: str) -> str:
    key = f"job.{provider}.{job_id}"
    if _KV_KEY.fullmatch(key) and ".." not in key and not key.endswith("."):
        return key
    return f"job.{provider}.h{hashlib.sha256(job_id.encode()).hexdigest()}"


async def open_bucket(
    js: JetStreamContext,
    bucket: str,
    *,
    replicas: int = 1,
    config: KeyValueConfig | None = None,
) -> KeyValue:
    """The bucket, created when missing (default: file storage, history 1)."""
    try:
        return await js.key_value(bucket)
    except (BucketNotFoundError, NotFoundError):
        pass
    if config is None:
        config = KeyValueConfig(bucket=bucket, history=1, storage=StorageType.FILE,
                                replicas=replicas)
    try:
        kv = await js.create_key_value(config)
        log.info("created KV bucket %s", bucket)
        return kv
    except APIError:
        # Another replica created it first (with the same config).
        return await js.key_value(bucket)


class LedgerStore(Protocol):
    """What the generator needs from the ledger's storage (``JobLedger``; fakes in tests)."""

    async def read(self, video_id: uuid.UUID) -> tuple[LedgerEntry, int] | None: ...
    async def claim(self, video_id: uuid.UUID, entry: LedgerEntry) -> int | None: ...
    async def replace(
        self, video_id: uuid.UUID, entry: LedgerEntry, *, last: int
    ) -> int | None: ...
    async def release(self, video_id: uuid.UUID, *, last: int) -> bool: ...
    async def bind_job(
        self, provider: str, job_id: str, video_id: uuid.UUID, *,
        binding: JobBinding | None = None,
    ) -> bool: ...
    async def job_owner(self, provider: str, job_id: str) -> uuid.UUID | None: ...
    async def job_binding(self, provider: str, job_id: str) -> JobBinding | None: ...


class JobLedger:
    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str, *, replicas: int = 1) -> JobLedger:
        return cls(await open_bucket(js, bucket, replicas=replicas))

    async def read(self, video_id: uuid.UUID) -> tuple[LedgerEntry, int] | None:
        try:
            entry = await self._kv.get(video_key(video_id))
        except KeyNotFoundError:
            return None
        if entry.value is None or entry.revision is None:
            return None
        return LedgerEntry.from_bytes(entry.value), entry.revision

    async def claim(self, video_id: uuid.UUID, entry: LedgerEntry) -> int | None:
        """Write ``entry`` if the video has no entry; its revision, or None if one exists."""
        try:
            return await self._kv.create(video_key(video_id), entry.to_bytes())
        except KeyWrongLastSequenceError:
            return None

    async def replace(self, video_id: uuid.UUID, entry: LedgerEntry, *, last: int) -> int | None:
        """Write ``entry`` if the entry is still at revision ``last``; else None."""
        try:
            return await self._kv.update(video_key(video_id), entry.to_bytes(), last=last)
        except KeyWrongLastSequenceError:
            return None

    async def release(self, video_id: uuid.UUID, *, last: int) -> bool:
        """Drop a claim (the create definitely did not happen), if it is still ours."""
        try:
            await self._kv.delete(video_key(video_id), last=last)
        except KeyWrongLastSequenceError:
            return False
        except APIError as exc:
            # nats-py's delete does not translate a lost compare-and-set.
            if exc.err_code in _WRONG_LAST:
                return False
            raise
        return True

    async def bind_job(
        self, provider: str, job_id: str, video_id: uuid.UUID, *,
        binding: JobBinding | None = None,
    ) -> bool:
        """Record that ``job_id`` belongs to ``video_id`` (with ``binding``'s details when
        given); False if another video owns it."""
        if binding is None or binding.video_id != video_id:
            binding = JobBinding(video_id=video_id)
        key = _job_key(provider, job_id)
        try:
            await self._kv.create(key, binding.to_bytes())
            return True
        except KeyWrongLastSequenceError:
            owner = await self.job_owner(provider, job_id)
            return owner == video_id

    async def job_owner(self, provider: str, job_id: str) -> uuid.UUID | None:
        binding = await self.job_binding(provider, job_id)
        return binding.video_id if binding is not None else None

    async def job_binding(self, provider: str, job_id: str) -> JobBinding | None:
        try:
            entry = await self._kv.get(_job_key(provider, job_id))
        except KeyNotFoundError:
            return None
        return JobBinding.from_bytes(entry.value) if entry.value else None
