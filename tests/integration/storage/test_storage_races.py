"""Concurrent writers of one key, and keys, against the Supabase-Storage-compatible test server
and a real storage server when one is at hand (see conftest.py).

A Supabase server checks that a key is free when a write starts and upserts when it ends: two
writers of different bytes can both succeed. The archiver's writers hold a claim per key in NATS
KV (``ClaimedStorage``), so one wins and the other meets its object."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator

import httpx
import nats
import pytest
from reelvault_common.storage import InvalidKey, ObjectConflict, ObjectStorage
from reelvault_common.storage.claims import ClaimedStorage, KeyClaims, NatsClaimStore
from reelvault_common.storage.interface import KEY_PATTERN
from reelvault_common.storage.layout import MB, Buckets
from reelvault_common.storage.supabase import SupabaseStorage, SupabaseStorageOptions

from tests.support.supabase_storage import ExternalStorage, SupabaseStorageServer

pytestmark = pytest.mark.integration


def server_of(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(storage URL, service key) of the server the test is parametrized with."""
    if request.param == "double":
        server: SupabaseStorageServer = request.getfixturevalue("storage_server")
        return server.url, server.service_key()
    real: ExternalStorage = request.getfixturevalue("real_storage")
    return real.url, real.service_key


@pytest.fixture(params=["double", "real"])
def target(request: pytest.FixtureRequest) -> tuple[str, str]:
    return server_of(request)


async def chunks(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def read_all(store: ObjectStorage, bucket: str, key: str) -> bytes:
    return b"".join([chunk async for chunk in store.read(bucket, key)])


async def test_the_server_checks_the_key_then_upserts(
    target: tuple[str, str], buckets: Buckets, storage_options: SupabaseStorageOptions
) -> None:
    """Two plain uploads without upsert: the slow one passed the check before the fast one
    finished, and both are answered 200; the slow one's bytes stay."""
    url, key = target
    store = SupabaseStorage.for_storage_server(url, key, storage_options)
    await store.ensure_buckets(buckets.all())
    await store.aclose()
    name = f"race/{os.urandom(4).hex()}/video.mp4"
    headers = {"Authorization": f"Bearer {key}", "apikey": key, "content-type": "video/mp4"}
    slow_bytes, fast_bytes = b"a" * 2 * MB, b"b" * 2 * MB
    half_sent = asyncio.Event()
    go_on = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield slow_bytes[: MB]
        half_sent.set()
        await go_on.wait()
        yield slow_bytes[MB:]

    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
        slow = asyncio.create_task(
            http.post(f"object/videos/{name}", content=slow_body(),
                      headers={"content-length": str(len(slow_bytes))})
        )
        await asyncio.wait_for(half_sent.wait(), 10)
        await asyncio.sleep(0.2)  # the server has read the head and checked the key
        fast = await http.post(f"object/videos/{name}", content=fast_bytes)
        go_on.set()
        slow_answer = await slow
        assert fast.status_code == 200, fast.text
        assert slow_answer.status_code == 200, slow_answer.text
        stored = await http.get(f"object/videos/{name}")
    assert stored.content == slow_bytes


@pytest.mark.parametrize("size", [64 * 1024, 8 * MB], ids=["spooled", "streamed"])
async def test_claimed_writers_of_one_key_one_wins_and_reports_the_stored_bytes(
    target: tuple[str, str],
    buckets: Buckets,
    storage_options: SupabaseStorageOptions,
    nats_url: str,
    namespace: str,
    size: int,
) -> None:
    """Two replicas (each its own client and claims) put different bytes to one key at once,
    eight times: each time one succeeds, the other gets ObjectConflict, and what succeeded
    reports the sha256 of the bytes the server keeps."""
    url, key = target
    nc = await nats.connect(nats_url)
    stores = []
    try:
        for _ in range(2):
            claims = await NatsClaimStore.open(nc.jetstream(), f"{namespace}_storage_claims")
            inner = SupabaseStorage.for_storage_server(url, key, storage_options)
            stores.append(ClaimedStorage(inner, KeyClaims(claims, wait_s=60)))
        await stores[0].ensure_buckets(buckets.all())
        for race in range(8):
            name = f"race/{os.urandom(4).hex()}/video.mp4"
            bodies = [bytes([65 + race]) * size, bytes([97 + race]) * size]
            outcomes = await asyncio.gather(
                *(store.put("videos", name, chunks(body), "video/mp4", size=size)
                  for store, body in zip(stores, bodies, strict=True)),
                return_exceptions=True,
            )
            won = [o for o in outcomes if not isinstance(o, BaseException)]
            lost = [o for o in outcomes if isinstance(o, BaseException)]
            assert len(won) == 1, outcomes
            assert len(lost) == 1 and isinstance(lost[0], ObjectConflict), outcomes
            stored = await read_all(stores[0], "videos", name)
            assert won[0].sha256 == hashlib.sha256(stored).hexdigest()
            info = await stores[1].stat("videos", name)
            assert info is not None and info.sha256 == won[0].sha256
    finally:
        for store in stores:
            await store.aclose()
        await nc.close()


# Every character a key may hold, in one key segment, and what is refused.
ALLOWED_SPECIALS = "_!.*'() &$=@:+,-"
REFUSED = [";", "?", "#", "%", "é", "\\", "\"", "<", "{", "^", "`", "|", "~", "[", "\t"]


def test_the_key_rule_is_the_documented_set_less_semicolon_and_question_mark() -> None:
    for char in ALLOWED_SPECIALS:
        assert KEY_PATTERN.fullmatch(f"org/a{char}b")
    for char in REFUSED:
        assert not KEY_PATTERN.fullmatch(f"org/a{char}b"), char


async def test_every_allowed_character_round_trips_through_put_stat_read_and_signed_links(
    target: tuple[str, str], buckets: Buckets, storage_options: SupabaseStorageOptions
) -> None:
    url, key = target
    store = SupabaseStorage.for_storage_server(url, key, storage_options)
    try:
        await store.ensure_buckets(buckets.all())
        name = f"org-{os.urandom(3).hex()}/x{ALLOWED_SPECIALS}y/Clip {ALLOWED_SPECIALS}.mp4"
        body = os.urandom(4096)
        stored = await store.put("videos", name, chunks(body), "video/mp4", size=len(body))
        assert stored.key == name
        info = await store.stat("videos", name)
        assert info is not None and info.size == len(body) and info.key == name
        assert await read_all(store, "videos", name) == body
        link = await store.signed_url("videos", name, 60)
        async with httpx.AsyncClient(timeout=10) as http:
            fetched = await http.get(link)
        assert fetched.status_code == 200, fetched.text
        assert fetched.content == body
        # The server holds exactly that key (nothing cut, nothing rewritten).
        listed = [o.key async for o in store.list_objects("videos", name.rsplit("/", 1)[0])]
        assert listed == [name]
        for char in REFUSED:
            with pytest.raises(InvalidKey):
                await store.put("videos", f"org/a{char}b.mp4", chunks(body), "video/mp4",
                                size=len(body))
    finally:
        await store.aclose()
