"""Byte sources for storage tests: deterministic incompressible data, chunk streams, hashes."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

from reelvault_common.storage.interface import ObjectStorage


def pattern(size: int, seed: int = 1) -> bytes:
    """Deterministic, incompressible-enough bytes (no two 64 KiB blocks alike)."""
    block = hashlib.sha256(seed.to_bytes(4, "big")).digest() * 2048  # 64 KiB
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += counter.to_bytes(8, "big") + block[8:]
        counter += 1
    return bytes(out[:size])


async def chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def read_sha256(store: ObjectStorage, bucket: str, key: str) -> str:
    """sha256 of the stored bytes, read back in full."""
    digest = hashlib.sha256()
    async for chunk in store.read(bucket, key):
        digest.update(chunk)
    return digest.hexdigest()
