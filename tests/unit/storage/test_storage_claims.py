"""Key claims: one writer at a time, lapsed leases taken over, stored records kept."""

from __future__ import annotations

import asyncio

import pytest
from reelvault_common.contracts.events import StoredFile
from reelvault_common.storage.claims import (
    ClaimRecord,
    KeyClaims,
    MemoryClaimStore,
    claim_name,
)
from reelvault_common.storage.interface import TransientStorageError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def stored_file(sha256: str, size: int = 3) -> StoredFile:
    return StoredFile(bucket="b", key="k", content_type="video/mp4", bytes=size, sha256=sha256,
                      url=None)


async def test_a_second_writer_waits_for_the_first_then_takes_its_turn() -> None:
    store = MemoryClaimStore()
    first, second = KeyClaims(store, poll_s=0.01), KeyClaims(store, poll_s=0.01)
    order: list[str] = []

    async def write(claims: KeyClaims, name: str, sha: str) -> None:
        async with claims.hold("b", "k") as claim:
            order.append(f"{name} in")
            await asyncio.sleep(0.05)
            order.append(f"{name} out")
            await claims.stored(claim, stored_file(sha))

    await asyncio.gather(write(first, "a", "1" * 64), write(second, "b", "2" * 64))
    assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])
    record = await first.recorded("b", "k")
    assert record is not None and record.state == "stored"


async def test_a_live_claim_makes_the_other_writer_give_up_after_its_wait() -> None:
    store = MemoryClaimStore()
    holder = KeyClaims(store, lease_s=90)
    waiter = KeyClaims(store, wait_s=0.05, poll_s=0.01)
    async with holder.hold("b", "k"):
        with pytest.raises(TransientStorageError, match="another writer"):
            async with waiter.hold("b", "k"):
                pass


async def test_a_lapsed_claim_is_taken_over() -> None:
    store = MemoryClaimStore()
    crashed = ClaimRecord("gone", "writing", expires_at=10.0)
    await store.create(claim_name("b", "k"), crashed)
    claims = KeyClaims(store, clock=Clock(), wait_s=0)
    async with claims.hold("b", "k") as claim:
        assert claim.record.owner != "gone"


async def test_a_failed_write_puts_back_the_stored_record_it_took_over() -> None:
    store = MemoryClaimStore()
    claims = KeyClaims(store)
    async with claims.hold("b", "k") as claim:
        await claims.stored(claim, stored_file("1" * 64))
    with pytest.raises(RuntimeError):
        async with claims.hold("b", "k"):
            raise RuntimeError("conflict")
    record = await claims.recorded("b", "k")
    assert record is not None and record.sha256 == "1" * 64


async def test_a_write_that_stored_nothing_leaves_no_claim() -> None:
    store = MemoryClaimStore()
    claims = KeyClaims(store)
    with pytest.raises(RuntimeError):
        async with claims.hold("b", "k"):
            raise RuntimeError("upload failed")
    assert await store.get(claim_name("b", "k")) is None


def test_claim_names_are_kv_safe_for_any_key() -> None:
    name = claim_name("videos", "org/a b!*'()&$=@:+,/x.mp4")
    assert name.startswith("k.") and name[2:].isalnum()
