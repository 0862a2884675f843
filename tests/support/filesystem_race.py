"""Processes that race ``FilesystemStorage.put`` on one key, and one that crashes mid-put.

Run in child processes (``multiprocessing`` with the ``spawn`` start method, so each child is a
fresh interpreter, as two archiver replicas would be); they report through a queue."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path
from typing import Any

from reelvault_common.storage import ObjectConflict, ObjectNotFound
from reelvault_common.storage.filesystem import FilesystemStorage

BUCKET = "videos"
# One content type per variant of the bytes, so metadata of the wrong writer shows.
CONTENT_TYPES = ("video/mp4", "video/webm", "video/quicktime", "video/x-matroska")


def race_key(round_no: int) -> str:
    return f"race/{round_no}/video.mp4"


def payload(variant: int, round_no: int) -> bytes:
    """Variants 0 and 1 have the same length (only the sha256 tells them apart); the others
    differ in length too."""
    length = 48 * 1024 + (0 if variant < 2 else variant * 1000)
    seed = hashlib.sha256(f"{variant}/{round_no}".encode()).digest()
    return (seed * (length // len(seed) + 1))[:length]


def open_store(root: str) -> FilesystemStorage:
    return FilesystemStorage(Path(root), "http://race.test", b"k" * 32)


async def _chunks(data: bytes, barrier: Barrier) -> AsyncIterator[bytes]:
    yield data[: len(data) // 2]
    # Every writer has its temp file half written before any of them goes on, so they reach
    # the commit at about the same moment.
    await asyncio.to_thread(barrier.wait, 60)
    yield data[len(data) // 2 :]


async def _write_rounds(
    root: str, variant: int, rounds: int, barrier: Barrier, results: Any
) -> None:
    store = open_store(root)
    for round_no in range(rounds):
        data = payload(variant, round_no)
        try:
            stored = await store.put(
                BUCKET, race_key(round_no), _chunks(data, barrier), CONTENT_TYPES[variant]
            )
        except ObjectConflict:
            results.put(("conflict", round_no, variant, None))
        else:
            outcome = (stored.bytes, stored.sha256, stored.content_type)
            results.put(("stored", round_no, variant, outcome))


def writer(root: str, variant: int, rounds: int, barrier: Barrier, results: Any) -> None:
    asyncio.run(_write_rounds(root, variant, rounds, barrier, results))


@dataclass
class Observation:
    key: str
    size: int
    sha256: str | None
    content_type: str
    read_size: int
    read_sha256: str


async def _watch(root: str, rounds: int, stop: Event, results: Any) -> None:
    """Look at every round's key over and over while the writers race: whatever is visible must
    be whole and described by its metadata."""
    store = open_store(root)
    seen = 0
    while not stop.is_set():
        for round_no in range(rounds):
            info = await store.stat(BUCKET, race_key(round_no))
            if info is None:
                continue
            try:
                data = b"".join([chunk async for chunk in store.read(BUCKET, info.key)])
            except ObjectNotFound:
                results.put(("vanished", info.key))
                continue
            seen += 1
            observation = Observation(
                info.key, info.size, info.sha256, info.content_type, len(data),
                hashlib.sha256(data).hexdigest(),
            )
            if (observation.size, observation.sha256) != (
                observation.read_size, observation.read_sha256,
            ):
                results.put(("inconsistent", observation))
        await asyncio.sleep(0.002)  # leave the writers some CPU
    results.put(("watched", seen))


def watcher(root: str, rounds: int, stop: Event, results: Any) -> None:
    asyncio.run(_watch(root, rounds, stop, results))


def crashing_writer(root: str, key: str, variant: int, crash_at: str) -> None:
    """Put ``payload(variant, 0)`` at ``key`` and die like a killed process (``os._exit``: no
    cleanup, no ``finally``) at ``crash_at``: ``"<name>"`` on the first call of ``os.<name>``
    (before it acts), ``"<name>:after"`` right after it, ``"returned"`` once the put returned."""
    name, _, when = crash_at.partition(":")
    if name != "returned":
        original = getattr(os, name)

        def crash(*args: Any, **kwargs: Any) -> Any:
            if when == "after":
                original(*args, **kwargs)
            os._exit(70)

        setattr(os, name, crash)

    async def put() -> None:
        async def once() -> AsyncIterator[bytes]:
            yield payload(variant, 0)

        await open_store(root).put(BUCKET, key, once(), CONTENT_TYPES[variant])

    asyncio.run(put())
    os._exit(70 if name == "returned" else 71)  # 71: the crash point was never reached
