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
    sha256: str
    complete: bool


class StreamTally:
    """Wraps a chunk stream; counts bytes and hashes them as they pass (nothing is kept).

    The archiver's own count, independent of the storage backend's, is what the stored object
    is verified against."""

    def __init__(self, chunks: AsyncIterable[bytes]) -> None:
        self._chunks = chunks
        self._digest = hashlib.sha256()
        self._size = 0
        self._complete = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            self._size += len(chunk)
            self._digest.update(chunk)
            yield chunk
        self._complete = True

    @property
    def size(self) -> int:
        return self._size

    def facts(self) -> StreamFacts:
        return StreamFacts(self._size, self._digest.hexdigest(), self._complete)


def verify_copy(
    streamed: StreamFacts,
    stored: StoredFile,
    info: ObjectInfo | None,
    declared_length: int | None,
) -> None:
    """Raise ``VerificationFailed`` unless storage holds exactly the streamed bytes (and the
    provider's ``Content-Length``, when it sent one, agrees)."""
    problems: list[str] = []
    if not streamed.complete:
        problems.append("storage finished before the download stream did")
    if declared_length is not None and streamed.size != declared_length:
        problems.append(
            f"received {streamed.size} bytes but the provider announced {declared_length}"
        )
    if stored.bytes != streamed.size or stored.sha256 != streamed.sha256:
        problems.append(
            f"storage accounted {stored.bytes} bytes sha256 {stored.sha256}, "
            f"streamed {streamed.size} bytes sha256 {streamed.sha256}"
        )
    if info is None:
        problems.append(f"{stored.bucket}/{stored.key} is missing after the upload")
    else:
        if info.size != streamed.size:
            problems.append(f"stored object has {info.size} bytes, streamed {streamed.size}")
        if info.sha256 is not None and info.sha256 != streamed.sha256:
            problems.append(f"stored object sha256 {info.sha256} != streamed {streamed.sha256}")
    if problems:
        raise VerificationFailed("; ".join(problems))
