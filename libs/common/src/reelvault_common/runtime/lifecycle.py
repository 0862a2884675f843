"""Process lifecycle shared by the services: wait for SIGTERM/SIGINT, then stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable

from reelvault_common.runtime.startup import StartupTimeout

log = logging.getLogger(__name__)

# The listener ``start_unless_stopped`` leaves running once start-up is done, taken over by the
# next ``wait_for_stop_signal`` (so there is no moment without a handler in between).
_listening: asyncio.Task[signal.Signals] | None = None


# The first SIGTERM/SIGINT of the running loop, once handlers are installed (see
# ``listen_for_stop_signals``).
_received: asyncio.Future[signal.Signals] | None = None


def listen_for_stop_signals() -> asyncio.Future[signal.Signals]:
    """Install the loop's SIGTERM/SIGINT handlers now, synchronously (``eventloop.run`` does it
    before the service's main runs, so no signal falls between the early exit handler and the
    service's own listening); the future the first signal resolves. Idempotent per loop."""
    global _received
    loop = asyncio.get_running_loop()
    if _received is not None and _received.get_loop() is loop and not _received.done():
        return _received
    received: asyncio.Future[signal.Signals] = loop.create_future()

    def _on_signal(sig: signal.Signals) -> None:
        if not received.done():
            received.set_result(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, sig)
    _received = received
    return received


async def _first_stop_signal() -> signal.Signals:
    global _received
    loop = asyncio.get_running_loop()
    received = listen_for_stop_signals()
    try:
        return await received
    finally:
        # Handled, or no longer listened for (start-up gave up): a further signal gets the
        # default action again (a forced stop).
        _received = None
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def wait_for_stop_signal() -> signal.Signals:
    """Return the first SIGTERM or SIGINT received by this process."""
    global _listening
    listener, _listening = _listening, None
    if listener is not None and not listener.cancelled():
        with contextlib.suppress(RuntimeError):  # a task of another (finished) event loop
            if listener.get_loop() is asyncio.get_running_loop():
                return await listener
    return await _first_stop_signal()


async def start_unless_stopped(
    start: Callable[[], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
    *,
    service: str,
    logger: logging.Logger | None = None,
) -> signal.Signals | None:
    """Run a service's ``start`` while already listening for SIGTERM/SIGINT.

    Returns None once started (then ``wait_for_stop_signal`` as usual). A signal during
    start-up (e.g. still waiting for NATS): start-up is cancelled, ``stop`` releases what was
    opened, and the signal is returned -- the caller returns, the process exits 0. Start-up
    giving up (``StartupTimeout``): one error line, then ``SystemExit(1)``. Other errors
    propagate."""
    global _listening
    logger = logger or log
    listener = asyncio.ensure_future(_first_stop_signal())
    starting = asyncio.ensure_future(start())
    try:
        await asyncio.wait({listener, starting}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        starting.cancel()
        listener.cancel()
        raise
    if starting.done():
        try:
            starting.result()
        except StartupTimeout as exc:
            listener.cancel()
            logger.error("%s cannot start: %s", service, exc)
            raise SystemExit(1) from None
        except BaseException:
            listener.cancel()
            raise
        _listening = listener
        return None
    sig = listener.result()
    logger.info("%s stopping before it was ready (%s)", service, sig.name)
    starting.cancel()
    try:
        await starting
    except asyncio.CancelledError:
        pass
    except Exception as exc:  # it was being cut short anyway
        logger.debug("start-up ended with %r while stopping", exc)
    await stop()
    return sig
