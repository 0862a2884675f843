"""Removing orphaned uploads: reference images (``{org}/uploads/...`` in the images bucket)
that no video referenced within a grace period (24 h by default) of their upload.

The archiver owns writes to storage, so it sweeps: per organization, it lists the uploads older
than the grace, asks the catalog (which alone reads Postgres) which of them some video
references, a deleted video's included, and removes the rest, in batches and at a bounded rate.

- An upload younger than the grace, or whose age the backend cannot tell, is never removed; so
  is one the catalog names as referenced, and nothing at all when the catalog does not answer
  (an unanswered question is never read as "unreferenced").
- Replicas: a pass starts only with the sweep lease, a record in NATS KV naming when the last
  pass started (an atomic create or compare-and-set on its revision), so the replicas together
  sweep once per interval. A pass that overlaps another (a lease taken over from a replica that
  stalled) is still safe: each removal is decided the same way and removing twice is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import nats.errors
from nats.aio.client import Client as NatsClient
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
from reelvault_common.contracts.catalog import FindReferencedUploads, ListOrgs, RpcReply
from reelvault_common.messaging.topology import Topology
from reelvault_common.storage.interface import ListedObject, ObjectStorage

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- pure rules ---------------------------------------------------------------------------
def uploads_prefix(org: str) -> str:
    """The folder of an organization's uploads (``layout.upload_key``)."""
    return f"{org}/uploads/"


def old_enough(listed: ListedObject, org: str, now: datetime, grace: timedelta) -> bool:
    """An upload of ``org`` uploaded at least ``grace`` ago (unknown age: never)."""
    return (listed.key.startswith(uploads_prefix(org)) and listed.created_at is not None
            and listed.created_at <= now - grace)


def orphans(candidates: Iterable[str], referenced: Iterable[str]) -> list[str]:
    """The candidates no video references, in their order."""
    kept = set(referenced)
    return [key for key in candidates if key not in kept]


def lease_free(last_started: datetime | None, now: datetime, every: timedelta) -> bool:
    """May a pass start now, the last one (of any replica) having started at ``last_started``?"""
    return last_started is None or now - last_started >= every


@dataclass(frozen=True)
class OrphanSweepResult:
    orgs: int = 0
    listed: int = 0  # uploads seen
    candidates: int = 0  # older than the grace
    referenced: int = 0  # kept: some video references them
    removed: int = 0
    skipped: bool = False  # another replica holds the lease

    def plus(self, other: OrphanSweepResult) -> OrphanSweepResult:
        return OrphanSweepResult(
            orgs=self.orgs + other.orgs, listed=self.listed + other.listed,
            candidates=self.candidates + other.candidates,
            referenced=self.referenced + other.referenced, removed=self.removed + other.removed,
        )


# --- what the sweeper needs -----------------------------------------------------------------
class UploadReferences(Protocol):
    """The catalog's answers (over NATS in production)."""

    async def organizations(self) -> list[str]: ...
    async def referenced(self, org: str, keys: Sequence[str]) -> list[str]: ...


class SweepLease(Protocol):
    async def acquire(self, now: datetime) -> bool:
        """True when this replica may sweep now (and the lease then names ``now``)."""


class CatalogUnavailable(Exception):
    """The catalog did not answer or refused: nothing is removed in this pass."""


class CatalogReferences:
    """``UploadReferences`` over the catalog's request/reply subjects."""

    def __init__(self, connection: NatsClient, topology: Topology, timeout_s: float) -> None:
        self._connection = connection
        self._topology = topology
        self._timeout_s = timeout_s

    async def _ask(self, message: ListOrgs | FindReferencedUploads) -> RpcReply:
        try:
            raw = await self._connection.request(
                self._topology.rpc_subject(message), message.model_dump_json().encode(),
                timeout=self._timeout_s)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError) as exc:
            raise CatalogUnavailable(f"no catalog answered: {exc!r}") from exc
        reply = RpcReply.model_validate_json(raw.data)
        if not reply.ok:
            raise CatalogUnavailable(reply.error.message if reply.error else "refused")
        return reply

    async def organizations(self) -> list[str]:
        return [org.slug for org in (await self._ask(ListOrgs())).orgs or []]

    async def referenced(self, org: str, keys: Sequence[str]) -> list[str]:
        reply = await self._ask(FindReferencedUploads(org=org, keys=list(keys)))
        if reply.referenced_keys is None:
            raise CatalogUnavailable("the catalog's answer names no referenced keys")
        return reply.referenced_keys


class NatsSweepLease:
    """The lease in a NATS KV bucket: one record, the start of the last pass (ISO 8601)."""

    NAME = "uploads"

    def __init__(self, kv: KeyValue, every: timedelta) -> None:
        self._kv = kv
        self._every = every

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str, every: timedelta, *,
                   replicas: int = 1) -> NatsSweepLease:
        try:
            return cls(await js.key_value(bucket), every)
        except (BucketNotFoundError, NotFoundError):
            pass
        config = KeyValueConfig(bucket=bucket, history=1, storage=StorageType.FILE,
                                replicas=replicas)
        try:
            return cls(await js.create_key_value(config), every)
        except APIError:  # another replica created it first
            return cls(await js.key_value(bucket), every)

    async def acquire(self, now: datetime) -> bool:
        stamp = now.isoformat().encode()
        with contextlib.suppress(KeyWrongLastSequenceError):
            await self._kv.create(self.NAME, stamp)
            return True
        try:
            entry = await self._kv.get(self.NAME)
        except KeyNotFoundError:
            return False  # removed meanwhile: the next pass creates it again
        try:
            last = datetime.fromisoformat((entry.value or b"").decode())
        except ValueError:
            last = None
        if not lease_free(last, now, self._every) or entry.revision is None:
            return False
        try:
            await self._kv.update(self.NAME, stamp, last=entry.revision)
        except KeyWrongLastSequenceError:
            return False  # another replica took it first
        return True


# --- the sweeper ----------------------------------------------------------------------------
class OrphanSweeper:
    def __init__(
        self,
        storage: ObjectStorage,
        bucket: str,
        references: UploadReferences,
        lease: SweepLease,
        *,
        grace_s: float = 86400.0,
        batch_size: int = 200,
        max_deletions_per_s: float = 20.0,
        clock: Clock = utcnow,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._storage = storage
        self._bucket = bucket
        self._references = references
        self._lease = lease
        self._grace = timedelta(seconds=grace_s)
        self._batch_size = batch_size
        self._pause_s = 1.0 / max_deletions_per_s if max_deletions_per_s > 0 else 0.0
        self._clock = clock
        self._sleep = sleep

    async def sweep_once(self) -> OrphanSweepResult:
        """One pass over every organization's uploads (if this replica holds the lease)."""
        now = self._clock()
        # The catalog first: a pass it cannot answer should not hold the lease.
        orgs = await self._references.organizations()
        if not await self._lease.acquire(now):
            return OrphanSweepResult(skipped=True)
        total = OrphanSweepResult()
        for org in orgs:
            total = total.plus(await self.sweep_org(org, now))
        return total

    async def sweep_org(self, org: str, now: datetime) -> OrphanSweepResult:
        listed = candidates = referenced = removed = 0
        batch: list[str] = []
        async for item in self._storage.list_objects(self._bucket, uploads_prefix(org)):
            listed += 1
            if not old_enough(item, org, now, self._grace):
                continue
            candidates += 1
            batch.append(item.key)
            if len(batch) >= self._batch_size:
                kept, gone = await self._settle(org, batch)
                referenced, removed, batch = referenced + kept, removed + gone, []
        if batch:
            kept, gone = await self._settle(org, batch)
            referenced, removed = referenced + kept, removed + gone
        if removed:
            log.info("orphaned uploads of %s: %d removed, %d referenced kept", org, removed,
                     referenced)
        return OrphanSweepResult(orgs=1, listed=listed, candidates=candidates,
                                 referenced=referenced, removed=removed)

    async def _settle(self, org: str, batch: Sequence[str]) -> tuple[int, int]:
        """Ask about one batch, remove its orphans; (referenced, removed)."""
        doomed = orphans(batch, await self._references.referenced(org, batch))
        removed = 0
        for key in doomed:
            if await self._storage.delete(self._bucket, key):
                removed += 1
                log.debug("removed orphaned upload %s/%s", self._bucket, key)
            if self._pause_s:
                await self._sleep(self._pause_s)
        return len(batch) - len(doomed), removed

    async def run(self, interval_s: float, stopping: asyncio.Event) -> None:
        """Sweep every ``interval_s`` until ``stopping``; a failed pass (the catalog or storage
        away) is logged and tried again at the next interval."""
        while not stopping.is_set():
            try:
                result = await self.sweep_once()
                if not result.skipped:
                    log.info("orphaned uploads: %d of %d old enough removed (%d orgs)",
                             result.removed, result.candidates, result.orgs)
            except Exception as exc:
                log.warning("orphaned uploads sweep failed, trying again in %.0fs: %r",
                            interval_s, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval_s)
