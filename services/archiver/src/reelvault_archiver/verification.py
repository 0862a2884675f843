"""Counting what streams past and checking that storage holds exactly that."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from reelvault_common.contracts.events import StoredFile
from reelvault_common.storage.interface import ObjectInfo


class VerificationFailed(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class StreamFacts:
    size: int
    sha256: str | None  # None: counted only (the storage's sha256 of the stream is the one)
    complete: bool


class StreamTally:
    """Wraps a chunk stream; counts bytes (and hashes them, unless ``hash_bytes=False``) as they
    pass (nothing is kept).

    The archiver's own count, independent of the storage backend's, is what the stored object
    is verified against. For videos the sha256 is left to the backend, which computes it over
    the same stream in its writer thread: a second pass here, on the event loop, cost ~20 % of
    the copy's throughput (bench/archive.py) and could only disagree with the backend's if the
    backend hashed other bytes than it was handed."""

    def __init__(self, chunks: AsyncIterable[bytes], *, hash_bytes: bool = True) -> None:
        self._chunks = chunks
        self._digest = hashlib.sha256() if hash_bytes else None
        self._size = 0
        self._complete = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            self._size += len(chunk)
            if self._digest is not None:
                self._digest.update(chunk)
            yield chunk
        self._complete = True

    @property
    def size(self) -> int:
        return self._size

    def facts(self) -> StreamFacts:
        sha256 = self._digest.hexdigest() if self._digest is not None else None
        return StreamFacts(self._size, sha256, self._complete)


def verify_copy(
    streamed: StreamFacts,
    stored: StoredFile,
    info: ObjectInfo | None,
    declared_length: int | None,
) -> None:
    """Raise ``VerificationFailed`` unless storage holds exactly the streamed bytes (and the
    provider's ``Content-Length``, when it sent one, agrees): the stored object's size and
    sha256 (``info``, read back after the upload) against the stream's count and sha256 (ours,
    or the backend's when we only counted)."""
    problems: list[str] = []
    if not streamed.complete:
        problems.append("storage finished before the download stream did")
    if declared_length is not None and streamed.size != declared_length:
        problems.append(
            f"received {streamed.size} bytes but the provider announced {declared_length}"
        )
    sha256 = streamed.sha256 or stored.sha256
    if stored.bytes != streamed.size or stored.sha256 != sha256:
        problems.append(
            f"storage accounted {stored.bytes} bytes sha256 {stored.sha256}, "
            f"streamed {streamed.size} bytes sha256 {sha256}"
        )
    if info is None:
        problems.append(f"{stored.bucket}/{stored.key} is missing after the upload")
    else:
        if info.size != streamed.size:
            problems.append(f"stored object has {info.size} bytes, streamed {streamed.size}")
        if info.sha256 is not None and info.sha256 != sha256:
            problems.append(f"stored object sha256 {info.sha256} != streamed {sha256}")
    if problems:
        raise VerificationFailed("; ".join(problems))
