"""RecordedWatch: a create registered before its publish hears the catalog's word, even when
the word comes before the publish's ack; strangers' words and garbage are ignored."""

from __future__ import annotations

import asyncio
import uuid

from reelvault_gateway.visibility import RecordedWatch


async def test_the_word_reaches_the_registered_create_and_nothing_lingers() -> None:
    watch = RecordedWatch()
    mine, other = uuid.uuid4(), uuid.uuid4()
    with watch.expect(mine) as recorded:
        watch.on_message(str(other).encode())
        watch.on_message(b"not a uuid")
        watch.on_message(b"\xff\xfe")
        assert not recorded.done()
        watch.on_message(str(mine).encode())  # e.g. before the publish's ack arrived
        await asyncio.wait_for(recorded, timeout=1)
    assert len(watch) == 0


async def test_a_word_for_nobody_is_dropped() -> None:
    watch = RecordedWatch()
    watch.recorded(uuid.uuid4())
    assert len(watch) == 0
