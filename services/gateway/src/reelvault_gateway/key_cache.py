"""API keys as the catalog knows them, cached in the process so that checking a key costs no
round trip per request.

- A miss asks the catalog (``LookupKey`` over NATS); the answer, found or not, is kept for
  ``ttl_s`` counted from when the question was sent, so no answer is trusted longer than that.
- Concurrent misses for one key share one question.
- A word on ``Topology.key_changes`` (the catalog names each key it revoked) drops the entry
  at once, and a question in flight for that key is not cached when its answer comes (it may
  predate the change). When that word is lost, the TTL still bounds how long a revoked key
  works.
- The catalog unreachable on a miss raises (the caller answers 503): nothing is let in on a
  stale answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from reelvault_common.contracts.catalog import KeyAuth
from reelvault_common.contracts.tenancy import looks_like_public_id

log = logging.getLogger(__name__)

Lookup = Callable[[str], Awaitable[KeyAuth | None]]
# Enough for every key in use; bounds the memory that made-up key ids could take.
MAX_ENTRIES = 10_000


class KeyCache:
    def __init__(
        self,
        lookup: Lookup,
        ttl_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self._lookup = lookup
        self._ttl_s = ttl_s
        self._clock = clock
        self._max_entries = max_entries
        self._entries: dict[str, tuple[float, KeyAuth | None]] = {}  # id -> (expires, answer)
        self._pending: dict[str, asyncio.Task[KeyAuth | None]] = {}

    async def get(self, public_id: str) -> KeyAuth | None:
        """The key's record (None: the catalog does not know it)."""
        entry = self._entries.get(public_id)
        if entry is not None and self._clock() < entry[0]:
            return entry[1]
        task = self._pending.get(public_id)
        if task is None:
            fetch = self._fetch(public_id, asked_at=self._clock())
            task = asyncio.create_task(fetch, name=f"key-lookup-{public_id}")
            # Retrieved here so an answer nobody waits for any more is not reported as lost.
            task.add_done_callback(_consume_exception)
            self._pending[public_id] = task
        # Shielded: one caller giving up (a closed connection) does not cancel the others' answer.
        return await asyncio.shield(task)

    async def _fetch(self, public_id: str, asked_at: float) -> KeyAuth | None:
        task = asyncio.current_task()
        try:
            found = await self._lookup(public_id)
        finally:
            current = self._pending.get(public_id) is task
            if current:
                del self._pending[public_id]
        if current:  # not invalidated while asking
            self._store(public_id, asked_at + self._ttl_s, found)
        return found

    def _store(self, public_id: str, expires: float, found: KeyAuth | None) -> None:
        self._entries.pop(public_id, None)  # re-inserted last: the dict's order is its age
        self._entries[public_id] = (expires, found)
        if len(self._entries) > self._max_entries:
            now = self._clock()
            for stale in [k for k, (until, _) in self._entries.items() if until <= now]:
                del self._entries[stale]
            while len(self._entries) > self._max_entries:
                del self._entries[next(iter(self._entries))]

    def invalidate(self, public_id: str) -> None:
        self._entries.pop(public_id, None)
        self._pending.pop(public_id, None)

    def on_message(self, data: bytes) -> None:
        """A message on ``Topology.key_changes``: the public id of a changed key."""
        try:
            public_id = data.decode("ascii").strip()
        except UnicodeDecodeError:
            return
        if looks_like_public_id(public_id):
            self.invalidate(public_id)
            log.info("key %s changed; dropped from the cache", public_id)

    def __len__(self) -> int:
        return len(self._entries)


def _consume_exception(task: asyncio.Task[KeyAuth | None]) -> None:
    if not task.cancelled():
        task.exception()
