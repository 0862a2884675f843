"""Keep a long piece of work alive: call ``beat`` every ``interval_s`` while it runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def keep_alive(beat: Callable[[], Awaitable[None]], interval_s: float) -> AsyncIterator[None]:
    """E.g. ``keep_alive(msg.in_progress, 15)``: JetStream's ack_wait restarts on each beat, so a
    copy longer than ack_wait is not redelivered to another worker mid-way."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await beat()
            except Exception as exc:  # a missed beat only risks a redelivery (idempotent)
                log.warning("heartbeat failed: %r", exc)

    task = asyncio.create_task(loop(), name="heartbeat")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
