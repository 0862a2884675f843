"""``python -m reelvault_gateway``: serve the gateway with uvicorn.

SIGTERM/SIGINT: stop accepting connections, let in-flight requests finish (up to
``shutdown_grace_s``), run the lifespan's shutdown, exit 0. A second signal forces the exit."""

from __future__ import annotations

from reelvault_common.runtime.early_stop import exit_cleanly_on_sigterm

exit_cleanly_on_sigterm()  # before the slow imports below

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import uvicorn
from reelvault_common.runtime.eventloop import run
from reelvault_common.runtime.lifecycle import wait_for_stop_signal
from reelvault_common.runtime.logs import configure_logging
from reelvault_common.runtime.telemetry import configure_telemetry

from reelvault_gateway.app import create_app
from reelvault_gateway.settings import GatewaySettings

log = logging.getLogger("reelvault_gateway")


class _Server(uvicorn.Server):
    # uvicorn re-raises the signal it caught once it has stopped, so the process would die
    # of SIGTERM (exit -15); main() handles the signals instead and exits 0 after a clean stop.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def main() -> None:
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level, settings.log_format)
    configure_telemetry("gateway")
    # NATS not answering within REELVAULT_STARTUP_TIMEOUT_S ends the process (non-zero), so
    # an orchestrator sees a failed start instead of a gateway that is never ready.
    gave_up: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def on_startup_failure(reason: str) -> None:
        if not gave_up.done():
            gave_up.set_result(reason)

    stopping = asyncio.Event()
    config = uvicorn.Config(
        create_app(settings, on_startup_failure=on_startup_failure, stopping=stopping),
        host=settings.host,
        port=settings.port,
        lifespan="on",
        # Our own access log leaves out query strings (signed links carry tokens).
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_s)),
        proxy_headers=False,
        server_header=False,
    )
    server = _Server(config)
    serving = asyncio.create_task(server.serve(), name="uvicorn")
    stop = asyncio.create_task(wait_for_stop_signal(), name="stop-signal")
    waits: set[asyncio.Future[Any]] = {serving, stop, gave_up}
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    if gave_up.done() and not stop.done():
        log.error("gateway cannot start: %s", gave_up.result())
        stop.cancel()
        server.should_exit = True
        await serving
        raise SystemExit(1)
    if stop.done():
        log.info("gateway stopping (%s)", stop.result().name)
        server.should_exit = True
        stopping.set()  # still starting up (waiting for NATS)? stop waiting
        # A second signal while draining: stop waiting for in-flight requests.
        second = asyncio.create_task(wait_for_stop_signal())
        second.add_done_callback(lambda _: setattr(server, "force_exit", True))
        try:
            await serving
        finally:
            second.cancel()
    else:
        stop.cancel()
        await serving
    if not server.started:
        raise SystemExit(3)  # start-up failed (e.g. port in use, bucket rules mismatch)


if __name__ == "__main__":
    run(main)
