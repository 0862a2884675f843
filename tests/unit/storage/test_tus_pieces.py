"""How a streamed TUS upload regroups a source's chunks into pieces, and resumes within one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from reelvault_common.storage.interface import StreamLengthMismatch
from reelvault_common.storage.tus import TusStats, _cut_into_pieces, _Piece


async def source(sizes: list[int]) -> AsyncIterator[bytes]:
    position = 0
    for size in sizes:
        yield bytes((position + i) % 251 for i in range(size))
        position += size


def expected(length: int) -> bytes:
    return bytes(i % 251 for i in range(length))


async def cut(sizes: list[int], length: int, piece: int) -> list[_Piece]:
    queue: asyncio.Queue[_Piece | None] = asyncio.Queue()
    await _cut_into_pieces(source(sizes), length, piece, queue, "test")
    pieces = [queue.get_nowait() for _ in range(queue.qsize())]
    return [piece for piece in pieces if piece is not None]


async def body(piece: _Piece, offset: int) -> bytes:
    return b"".join([part async for part in piece.body(offset, TusStats())])


@pytest.mark.parametrize(
    "sizes",
    [[10] * 10, [7, 13, 1, 29, 50], [100], [30, 30, 40], [1] * 100, [29, 1, 30, 40]],
)
async def test_pieces_are_exact_and_cover_the_stream_in_order(sizes: list[int]) -> None:
    pieces = await cut(sizes, 100, 30)
    assert [(p.start, p.end) for p in pieces] == [(0, 30), (30, 60), (60, 90), (90, 100)]
    joined = b"".join([await body(p, p.start) for p in pieces])
    assert joined == expected(100)


async def test_a_piece_resumes_from_any_offset_inside_it() -> None:
    (first, second) = await cut([7, 13, 5, 15], 40, 20)
    for offset in range(second.start, second.end + 1):
        assert await body(second, offset) == expected(40)[offset:40]
    assert await body(first, 0) == expected(20)


@pytest.mark.parametrize("sizes", [[10, 10], [10, 10, 10, 1]])
async def test_a_source_of_another_length_is_refused(sizes: list[int]) -> None:
    with pytest.raises(StreamLengthMismatch):
        await cut(sizes, 30, 20)


async def test_an_empty_stream_of_length_zero_has_no_piece() -> None:
    assert await cut([], 0, 20) == []
