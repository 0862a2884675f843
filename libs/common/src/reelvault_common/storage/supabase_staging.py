"""The staging area of the Supabase backend (under ``staging_prefix``): where earlier releases
landed streamed uploads before copying them into place, and the sweep of what a crash left there.

Cleanup that fails does not stop a start, but it is never only logged: it counts in
``reelvault_storage_cleanup_failures_total{operation}`` and the sweep returns it as its result."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from prometheus_client import Counter

from reelvault_common.storage.interface import StorageError
from reelvault_common.storage.supabase_connection import SupabaseConnection

log = logging.getLogger(__name__)

# The storage server lists and deletes at most this many names per request.
PAGE_SIZE = 1000

CLEANUP_FAILURES = Counter(
    "reelvault_storage_cleanup_failures",
    "Storage housekeeping that failed (a staging object not removed, a sweep that did not run "
    "through); what was left is retried by the next sweep.",
    ["operation"],
)


@dataclass(frozen=True)
class SweepResult:
    """One bucket's sweep: how many staging objects went, or why it failed."""

    bucket: str
    removed: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def parse_timestamp(value: object) -> float | None:
    """An ISO 8601 timestamp of a listing (``...Z`` included) in seconds, or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class StagingArea:
    """Staging objects of every bucket: named, removed, swept."""

    def __init__(self, connection: SupabaseConnection) -> None:
        self._connection = connection
        self._prefix = connection.options.staging_prefix

    def new_key(self, key: str) -> str:
        """A fresh staging key for an upload to ``key`` (unique: uploads never share one)."""
        name = key.rsplit("/", 1)[-1]
        return f"{self._prefix}/{uuid.uuid4().hex}-{name}"

    async def remove_quietly(self, bucket: str, key: str, what: str) -> None:
        """Delete a staging object (it may not exist: the upload failed before completing).
        A failure is counted and logged; the start-up sweep removes what is left."""
        try:
            await self._delete(bucket, [key], f"{what}: remove staging object {key}")
        except StorageError as exc:
            CLEANUP_FAILURES.labels("staging_remove").inc()
            log.warning("%s", exc.message)

    async def sweep(self, bucket: str, *, now: datetime | None = None) -> int:
        """Remove staging objects older than ``staging_max_age_s`` (left by a crash between a
        streamed upload and its copy into place); returns how many. Younger ones may belong to
        an upload in progress elsewhere and stay."""
        cutoff = (now or datetime.now(UTC)).timestamp() - self._connection.options.staging_max_age_s
        stale = await self._stale_keys(bucket, cutoff)
        what = f"remove stale staging objects of {bucket}"
        for start in range(0, len(stale), PAGE_SIZE):
            await self._delete(bucket, stale[start : start + PAGE_SIZE], what)
        if stale:
            log.info("removed %d stale staging objects from bucket %s", len(stale), bucket)
        return len(stale)

    async def sweep_quietly(self, bucket: str) -> SweepResult:
        """``sweep`` at start-up: housekeeping must not stop a start, so a failure is returned
        (and counted, and logged) instead of raised."""
        try:
            return SweepResult(bucket, await self.sweep(bucket))
        except (StorageError, httpx.HTTPError) as exc:
            CLEANUP_FAILURES.labels("staging_sweep").inc()
            message = exc.message if isinstance(exc, StorageError) else repr(exc)
            log.warning("could not sweep staging objects of bucket %s: %s", bucket, message)
            return SweepResult(bucket, 0, message)

    async def _stale_keys(self, bucket: str, cutoff: float) -> list[str]:
        """Keys of the staging objects created before ``cutoff``, page by page."""
        stale: list[str] = []
        offset = 0
        while True:
            response = await self._connection.request(
                "POST",
                self._connection.bucket_url("object/list", bucket),
                f"list {bucket}",
                json={"prefix": self._prefix, "limit": PAGE_SIZE, "offset": offset,
                      "sortBy": {"column": "name", "order": "asc"}},
            )
            entries = response.json()
            for entry in entries:
                created = parse_timestamp(entry.get("created_at"))
                if entry.get("id") and created is not None and created < cutoff:
                    stale.append(f"{self._prefix}/{entry['name']}")
            if len(entries) < PAGE_SIZE:
                return stale
            offset += len(entries)

    async def _delete(self, bucket: str, keys: list[str], what: str) -> None:
        """``DELETE /object/{bucket}`` with ``prefixes`` (missing names are skipped)."""
        await self._connection.request(
            "DELETE", self._connection.bucket_url("object", bucket), what, json={"prefixes": keys}
        )
