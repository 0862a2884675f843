"""``python -m reelvault_sorasim``: serve the simulator with uvicorn.

Uvicorn installs its own SIGTERM/SIGINT handlers: the first signal stops accepting
connections, finishes requests in flight and runs the app's shutdown (renders are awaited,
the temporary data dir removed).
"""

from __future__ import annotations

import sys

import uvicorn
from pydantic import ValidationError
from reelvault_common.logs import configure_logging

from reelvault_sorasim.app import create_app
from reelvault_sorasim.settings import SimSettings


def main() -> None:
    try:
        settings = SimSettings()  # api_key comes from the environment
    except ValidationError as exc:
        sys.exit(f"sora-sim: invalid configuration (SORA_SIM_API_KEY is required):\n{exc}")
    configure_logging("sora-sim", settings.log_level)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        log_config=None,  # keep configure_logging's handler
        timeout_graceful_shutdown=10,
        access_log=settings.log_level.upper() == "DEBUG",
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
