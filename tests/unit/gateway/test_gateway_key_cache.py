"""The key cache: answers kept at most ``ttl_s`` (from when the question was sent), concurrent
misses sharing one question, an invalidation dropping an entry at once (and a question in
flight not cached), failures never cached, memory bounded."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from reelvault_common.contracts.catalog import ApiKeyInfo, KeyAuth
from reelvault_gateway.catalog import CatalogUnavailable
from reelvault_gateway.key_cache import KeyCache

ID = "0123456789abcdef"
OTHER = "fedcba9876543210"


def auth(public_id: str = ID, revoked: bool = False) -> KeyAuth:
    now = datetime.now(UTC)
    info = ApiKeyInfo(id=uuid.uuid4(), public_id=public_id, org="acme", name="k",
                      scopes=["videos:read"], expires_at=None, created_at=now,
                      last_used_at=None, revoked_at=now if revoked else None)
    return KeyAuth(key=info, key_hash="0" * 64)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Catalog:
    """Answers lookups from ``keys``; counts them; can be held (``gate``) or fail."""

    def __init__(self) -> None:
        self.keys: dict[str, KeyAuth] = {ID: auth()}
        self.asked: list[str] = []
        self.gate: asyncio.Event | None = None
        self.failure: Exception | None = None

    async def lookup(self, public_id: str) -> KeyAuth | None:
        self.asked.append(public_id)
        if self.gate is not None:
            await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        return self.keys.get(public_id)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def catalog() -> Catalog:
    return Catalog()


@pytest.fixture
def cache(catalog: Catalog, clock: Clock) -> KeyCache:
    return KeyCache(catalog.lookup, ttl_s=3.0, clock=clock)


async def test_an_answer_is_kept_for_the_ttl_then_asked_again(
    cache: KeyCache, catalog: Catalog, clock: Clock
) -> None:
    first = await cache.get(ID)
    assert first == catalog.keys[ID]
    clock.now += 2.9
    assert await cache.get(ID) == first
    assert catalog.asked == [ID]
    catalog.keys[ID] = auth(revoked=True)
    clock.now += 0.1  # 3 s after the question: stale
    again = await cache.get(ID)
    assert again is not None and again.key.revoked_at is not None
    assert catalog.asked == [ID, ID]


async def test_unknown_keys_are_cached_too(cache: KeyCache, catalog: Catalog) -> None:
    assert await cache.get(OTHER) is None
    assert await cache.get(OTHER) is None
    assert catalog.asked == [OTHER]


async def test_the_ttl_counts_from_the_question_not_the_answer(
    cache: KeyCache, catalog: Catalog, clock: Clock
) -> None:
    catalog.gate = asyncio.Event()
    waiting = asyncio.create_task(cache.get(ID))
    await asyncio.sleep(0)
    clock.now += 2.0  # a slow answer
    catalog.gate.set()
    await waiting
    clock.now += 1.0
    await cache.get(ID)
    assert catalog.asked == [ID, ID]


async def test_concurrent_misses_share_one_question(cache: KeyCache, catalog: Catalog) -> None:
    catalog.gate = asyncio.Event()
    waiters = [asyncio.create_task(cache.get(ID)) for _ in range(50)]
    others = [asyncio.create_task(cache.get(OTHER)) for _ in range(5)]
    await asyncio.sleep(0.01)
    catalog.gate.set()
    answers = await asyncio.gather(*waiters)
    assert all(answer == catalog.keys[ID] for answer in answers)
    assert await asyncio.gather(*others) == [None] * 5
    assert sorted(catalog.asked) == [ID, OTHER]


async def test_a_waiter_giving_up_does_not_cancel_the_others(
    cache: KeyCache, catalog: Catalog
) -> None:
    catalog.gate = asyncio.Event()
    quitter = asyncio.create_task(cache.get(ID))
    stayer = asyncio.create_task(cache.get(ID))
    await asyncio.sleep(0.01)
    quitter.cancel()
    catalog.gate.set()
    assert await stayer == catalog.keys[ID]
    assert catalog.asked == [ID]


async def test_an_invalidation_drops_the_entry_at_once(
    cache: KeyCache, catalog: Catalog
) -> None:
    await cache.get(ID)
    catalog.keys[ID] = auth(revoked=True)
    cache.on_message(ID.encode())
    found = await cache.get(ID)
    assert found is not None and found.key.revoked_at is not None
    assert catalog.asked == [ID, ID]


async def test_an_answer_in_flight_during_an_invalidation_is_not_cached(
    cache: KeyCache, catalog: Catalog
) -> None:
    catalog.gate = asyncio.Event()
    early = asyncio.create_task(cache.get(ID))  # asked before the revocation
    await asyncio.sleep(0.01)
    cache.invalidate(ID)
    catalog.keys[ID] = auth(revoked=True)
    catalog.gate.set()
    await early
    later = await cache.get(ID)  # asks again: the early answer was not kept
    assert later is not None and later.key.revoked_at is not None
    assert catalog.asked == [ID, ID]


def test_garbage_on_the_changes_subject_is_ignored(cache: KeyCache) -> None:
    for data in (b"", b"\xff\xfe", b"not-a-key-id", b"0123456789ABCDEF", b"0" * 1000):
        cache.on_message(data)  # no exception


async def test_failures_reach_every_waiter_and_are_not_cached(
    cache: KeyCache, catalog: Catalog
) -> None:
    catalog.gate = asyncio.Event()
    catalog.failure = CatalogUnavailable("no catalog")
    waiters = [asyncio.create_task(cache.get(ID)) for _ in range(3)]
    await asyncio.sleep(0.01)
    catalog.gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(result, CatalogUnavailable) for result in results)
    assert catalog.asked == [ID]
    catalog.failure = None
    assert await cache.get(ID) == catalog.keys[ID]  # asked again, not a cached failure
    assert len(catalog.asked) == 2


async def test_the_number_of_entries_is_bounded(catalog: Catalog, clock: Clock) -> None:
    cache = KeyCache(catalog.lookup, ttl_s=3.0, clock=clock, max_entries=10)
    for n in range(25):
        await cache.get(f"{n:016x}")
    assert len(cache) == 10
    await cache.get(f"{24:016x}")  # the newest are kept
    assert len(catalog.asked) == 25
