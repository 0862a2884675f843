"""``python -m reelvault_providersim``: serve the simulator with uvicorn.

SIGTERM / SIGINT stop it gracefully: no new connections, requests in flight finish, the app's
shutdown runs (renders awaited, a temporary data dir removed), then the process exits 0 like
the other services. A second signal gets the default behaviour (immediate stop).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from pydantic import ValidationError
from reelvault_common.runtime.eventloop import run
from reelvault_common.runtime.lifecycle import wait_for_stop_signal
from reelvault_common.runtime.logs import configure_logging
from reelvault_common.runtime.metrics import MetricsSettings, serve_metrics

from reelvault_providersim.app import create_app
from reelvault_providersim.settings import SimSettings

log = logging.getLogger("reelvault_providersim")


class _Server(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Signals are handled in _serve; uvicorn's own handlers would re-raise the signal
        # after shutdown and turn a clean stop into a "killed by SIGTERM" exit status.
        yield


async def _serve(settings: SimSettings) -> None:
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        log_config=None,  # keep configure_logging's handler
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_s)),
        access_log=settings.log_level.upper() == "DEBUG",
    )
    server = _Server(config)
    serving = asyncio.create_task(server.serve())
    stopping = asyncio.create_task(wait_for_stop_signal())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if stopping.done():
        log.info("received %s, shutting down", stopping.result().name)
        server.should_exit = True
    else:
        stopping.cancel()
    await serving


def main() -> None:
    try:
        settings = SimSettings()  # api_key comes from the environment
    except ValidationError as exc:
        sys.exit(f"provider-sim: invalid configuration (PROVIDER_SIM_API_KEY is required):\n{exc}")
    configure_logging("provider-sim", settings.log_level)
    # /metrics (the process's CPU, memory, GC) on REELVAULT_METRICS_PORT, like the services.
    serve_metrics(MetricsSettings())
    run(lambda: _serve(settings))


if __name__ == "__main__":
    main()
