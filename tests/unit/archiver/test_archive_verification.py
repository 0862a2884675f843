"""Verification of a copy: the archiver's own count against what storage says it holds."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest
from reelvault_archiver.verification import (
    StreamFacts,
    StreamTally,
    VerificationFailed,
    verify_copy,
)
from reelvault_common.contracts.events import StoredFile
from reelvault_common.storage.interface import ObjectInfo

DATA = [b"abc" * 1000, b"", b"xyz" * 77]
SHA = hashlib.sha256(b"".join(DATA)).hexdigest()
SIZE = sum(map(len, DATA))


async def chunks() -> AsyncIterator[bytes]:
    for chunk in DATA:
        yield chunk


def stored(size: int = SIZE, sha256: str = SHA) -> StoredFile:
    return StoredFile(bucket="videos", key="k/video.mp4", content_type="video/mp4", bytes=size,
                      sha256=sha256)


def info(size: int = SIZE, sha256: str | None = SHA) -> ObjectInfo:
    return ObjectInfo(bucket="videos", key="k/video.mp4", size=size, content_type="video/mp4",
                      sha256=sha256)


async def test_tally_counts_and_hashes_while_passing_bytes_through() -> None:
    tally = StreamTally(chunks())
    assert not tally.facts().complete
    passed = [chunk async for chunk in tally]
    assert passed == DATA
    assert tally.facts() == StreamFacts(SIZE, SHA, complete=True)


async def test_tally_of_an_abandoned_stream_is_incomplete() -> None:
    tally = StreamTally(chunks())
    async for _ in tally:
        break
    assert not tally.facts().complete
    with pytest.raises(VerificationFailed, match="before the download stream did"):
        verify_copy(tally.facts(), stored(), info(), None)


def test_matching_copy_passes() -> None:
    verify_copy(StreamFacts(SIZE, SHA, True), stored(), info(), SIZE)
    verify_copy(StreamFacts(SIZE, SHA, True), stored(), info(sha256=None), None)


@pytest.mark.parametrize(
    ("the_stored", "the_info", "declared", "problem"),
    [
        (stored(), info(), SIZE + 1, "provider announced"),
        (stored(size=SIZE - 1), info(), None, "storage accounted"),
        (stored(sha256="0" * 64), info(), None, "storage accounted"),
        (stored(), None, None, "missing after the upload"),
        (stored(), info(size=SIZE - 3), None, "stored object has"),
        (stored(), info(sha256="f" * 64), None, "stored object sha256"),
    ],
)
def test_any_mismatch_fails_verification(
    the_stored: StoredFile, the_info: ObjectInfo | None, declared: int | None, problem: str
) -> None:
    with pytest.raises(VerificationFailed, match=problem):
        verify_copy(StreamFacts(SIZE, SHA, True), the_stored, the_info, declared)


async def test_a_counting_tally_leaves_the_sha256_to_storage() -> None:
    tally = StreamTally(chunks(), hash_bytes=False)
    assert [chunk async for chunk in tally] == DATA
    facts = tally.facts()
    assert facts == StreamFacts(SIZE, None, complete=True)
    verify_copy(facts, stored(), info(), SIZE)  # storage's sha256 is the reference


@pytest.mark.parametrize(
    ("the_stored", "the_info", "problem"),
    [
        (stored(size=SIZE - 1), info(), "storage accounted"),
        (stored(), info(size=SIZE + 1), "stored object has"),
        # What was read back is not what storage computed while writing (e.g. another upload
        # won a race at the key): caught without our own hash too.
        (stored(), info(sha256="e" * 64), "stored object sha256"),
    ],
)
def test_a_counted_copy_is_still_verified_by_size_and_stored_sha256(
    the_stored: StoredFile, the_info: ObjectInfo, problem: str
) -> None:
    with pytest.raises(VerificationFailed, match=problem):
        verify_copy(StreamFacts(SIZE, None, True), the_stored, the_info, SIZE)
