"""The event loop every service runs on: uvloop (asyncio's own where uvloop is not installed,
i.e. Windows). A service's ``__main__`` calls ``run(main)`` in place of ``asyncio.run(main())``.

Importing this module imports nothing else of reelvault's (it follows the early-SIGTERM
handler in ``__main__``, before the slow imports)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)

__all__ = ["loop_factory", "run"]


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop constructor, or None (asyncio's default loop) without uvloop."""
    try:
        import uvloop
    except ImportError:  # not built for this platform (Windows)
        return None
    return uvloop.new_event_loop


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``asyncio.run(main())`` on ``loop_factory()``'s loop: the same clean-up (pending tasks
    cancelled, async generators and the default executor shut down) and the same exceptions,
    ``SystemExit`` included, so exit codes are unchanged. Logs the loop in use once."""

    async def announced() -> T:
        # The loop takes SIGTERM/SIGINT over from the early exit handler before main runs.
        from reelvault_common.runtime.lifecycle import listen_for_stop_signals

        listen_for_stop_signals()
        # Queued now, run at main's first await: by then main has configured logging (its
        # first lines, in every service), so the line reaches the service's log.
        asyncio.get_running_loop().call_soon(_announce)
        return await main()

    # asyncio.Runner: asyncio.run takes a loop_factory only from Python 3.12 on.
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(announced())


def _announce() -> None:
    loop = type(asyncio.get_running_loop())
    log.info("event loop: %s.%s", loop.__module__, loop.__qualname__)
