"""The services' event loop helper: uvloop where it is installed, asyncio.run's semantics."""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest
from reelvault_common.runtime import eventloop

needs_uvloop = pytest.mark.skipif(sys.platform == "win32", reason="uvloop is not on Windows")


@needs_uvloop
def test_main_runs_on_uvloop_and_its_result_comes_back() -> None:
    import uvloop

    async def main() -> type[asyncio.AbstractEventLoop]:
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop())

    assert eventloop.run(main) is uvloop.Loop


def test_without_uvloop_it_is_asyncios_own_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop -> ImportError
    assert eventloop.loop_factory() is None

    async def main() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert eventloop.run(main).startswith("asyncio")


def test_exit_codes_and_errors_pass_through() -> None:
    async def exits() -> None:
        await asyncio.sleep(0)
        raise SystemExit(3)

    async def fails() -> None:
        raise ValueError("boom")

    with pytest.raises(SystemExit) as stopped:
        eventloop.run(exits)
    assert stopped.value.code == 3
    with pytest.raises(ValueError, match="boom"):
        eventloop.run(fails)


def test_pending_tasks_are_cancelled_at_the_end() -> None:
    cancelled: list[bool] = []

    async def main() -> None:
        async def forever() -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        asyncio.get_running_loop().create_task(forever())
        await asyncio.sleep(0)

    eventloop.run(main)
    assert cancelled == [True]


@needs_uvloop
def test_the_loop_in_use_is_logged_once_logging_is_set_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        caplog.set_level(logging.INFO, logger=eventloop.__name__)  # as configure_logging would
        await asyncio.sleep(0)

    eventloop.run(main)
    assert [r.getMessage() for r in caplog.records if r.name == eventloop.__name__] == [
        "event loop: uvloop.Loop"
    ]
