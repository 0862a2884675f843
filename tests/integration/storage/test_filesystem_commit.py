"""``FilesystemStorage.put`` from many processes at once, and processes dying mid-put: the object
at a key and its metadata always describe the same bytes, exactly one writer's bytes win (the
others get a no-op for the same bytes, ``ObjectConflict`` for other bytes), nothing partial is
ever visible, and a crash at any point leaves nothing inconsistent (real files, real
processes; no broker)."""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import queue
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from reelvault_common.storage import BucketSpec, ObjectConflict, ObjectNotFound
from reelvault_common.storage.filesystem import FilesystemStorage

from tests.support.filesystem_race import (
    BUCKET,
    CONTENT_TYPES,
    crashing_writer,
    open_store,
    payload,
    race_key,
    watcher,
    writer,
)

pytestmark = pytest.mark.integration

SPEC = BucketSpec(BUCKET, False, None, ("video/*",))
# Seven writers per round: three with the same bytes, and three other byte strings (one of them
# the same length as the first), each with its own content type.
WRITER_VARIANTS = (0, 0, 0, 1, 1, 2, 3)
ROUNDS = 30
SPAWN = multiprocessing.get_context("spawn")


def make_store(root: Path) -> FilesystemStorage:
    store = open_store(str(root))
    asyncio.run(store.ensure_buckets([SPEC]))
    return store


async def once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def read_all(store: FilesystemStorage, key: str) -> bytes:
    async def read() -> bytes:
        return b"".join([chunk async for chunk in store.read(BUCKET, key)])

    return asyncio.run(read())


def drain(results: Any, count: int, deadline: float, processes: list[Any]) -> list[Any]:
    items = []
    while len(items) < count:
        try:
            items.append(results.get(timeout=max(0.1, deadline - time.monotonic())))
        except queue.Empty:
            codes = [p.exitcode for p in processes]
            raise AssertionError(f"{len(items)}/{count} results; exit codes {codes}") from None
    return items


def test_racing_writers_leave_one_winner_described_by_its_metadata(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = make_store(root)
    barrier = SPAWN.Barrier(len(WRITER_VARIANTS))
    results = SPAWN.Queue()
    stop = SPAWN.Event()
    watch_results = SPAWN.Queue()
    watching = SPAWN.Process(target=watcher, args=(str(root), ROUNDS, stop, watch_results))
    writers = [
        SPAWN.Process(target=writer, args=(str(root), variant, ROUNDS, barrier, results))
        for variant in WRITER_VARIANTS
    ]
    watching.start()
    for process in writers:
        process.start()
    try:
        outcomes = drain(
            results, len(WRITER_VARIANTS) * ROUNDS, time.monotonic() + 240, [*writers, watching]
        )
    finally:
        stop.set()
        for process in writers:
            process.join(30)
        watched = drain(watch_results, 1, time.monotonic() + 30, [watching])
        while watched[-1][0] != "watched":
            watched += drain(watch_results, 1, time.monotonic() + 30, [watching])
        watching.join(30)
        for process in [*writers, watching]:
            if process.is_alive():
                process.kill()
    assert [p.exitcode for p in writers] == [0] * len(writers)

    by_round: dict[int, list[tuple[str, int, Any]]] = defaultdict(list)
    for outcome, round_no, variant, stored in outcomes:
        by_round[round_no].append((outcome, variant, stored))
    winners = set()
    for round_no in range(ROUNDS):
        key = race_key(round_no)
        data = read_all(store, key)
        winner = next(v for v in set(WRITER_VARIANTS) if payload(v, round_no) == data)
        winners.add(winner)
        digest = hashlib.sha256(data).hexdigest()
        expected = (len(data), digest, CONTENT_TYPES[winner])
        info = asyncio.run(store.stat(BUCKET, key))
        assert info is not None
        assert (info.size, info.sha256, info.content_type) == expected, round_no
        # Every writer of the winning bytes succeeded (one wrote, the rest were no-ops) and was
        # told what is stored; every writer of other bytes got a conflict.
        for outcome, variant, stored in by_round[round_no]:
            if variant == winner:
                assert (outcome, stored) == ("stored", expected), (round_no, variant)
            else:
                assert outcome == "conflict", (round_no, variant, stored)
    # Without crashes nothing is left behind in the temp folder.
    assert list((root / ".tmp").iterdir()) == []
    # The watcher saw objects while they were being written, and never one that was partial or
    # described by another writer's metadata.
    problems = [item for item in watched if item[0] != "watched"]
    assert problems == []
    assert watched[-1][1] > 0
    print(f"winning variants over {ROUNDS} rounds: {sorted(winners)}; watched {watched[-1][1]}")


@pytest.mark.parametrize(
    ("crash_at", "published"),
    [
        ("fsync", False),  # while making the temp file durable
        ("replace", False),  # the metadata in a temp file, not in place yet
        ("link", False),  # the metadata in place (and the commit lock held), no object yet
        ("link:after", True),  # the object linked, its folder not yet fsynced
        ("returned", True),  # all done, then killed
    ],
)
def test_a_crash_at_any_point_leaves_a_consistent_key(
    tmp_path: Path, crash_at: str, published: bool
) -> None:
    root = tmp_path / "store"
    key = "crash/video.mp4"
    make_store(root)
    crashed = SPAWN.Process(target=crashing_writer, args=(str(root), key, 1, crash_at))
    crashed.start()
    crashed.join(60)
    assert crashed.exitcode == 70, "the writer did not die at the crash point"

    store = open_store(str(root))  # a new process's view: nothing cached
    first, other = payload(1, 0), payload(2, 0)
    info = asyncio.run(store.stat(BUCKET, key))
    if published:
        expected = (len(first), hashlib.sha256(first).hexdigest(), CONTENT_TYPES[1])
        assert info is not None and (info.size, info.sha256, info.content_type) == expected
        assert read_all(store, key) == first
        again = asyncio.run(store.put(BUCKET, key, once(first), CONTENT_TYPES[1]))
        assert (again.bytes, again.sha256, again.content_type) == expected
        with pytest.raises(ObjectConflict):
            asyncio.run(store.put(BUCKET, key, once(other), CONTENT_TYPES[2]))
        assert read_all(store, key) == first
        return
    # Nothing was published: not visible, and the next writer (other bytes, another type) owns
    # the key -- metadata the dead writer may have left is not what describes the object. Its
    # commit lock died with it, so this does not wait.
    assert info is None
    with pytest.raises(ObjectNotFound):
        read_all(store, key)
    stored = asyncio.run(
        asyncio.wait_for(store.put(BUCKET, key, once(other), CONTENT_TYPES[2]), 30)
    )
    expected = (len(other), hashlib.sha256(other).hexdigest(), CONTENT_TYPES[2])
    assert (stored.bytes, stored.sha256, stored.content_type) == expected
    info = asyncio.run(store.stat(BUCKET, key))
    assert info is not None and (info.size, info.sha256, info.content_type) == expected
    assert read_all(store, key) == other
