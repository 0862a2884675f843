"""``python -m reelvault_catalog``: run the catalog until SIGTERM/SIGINT."""

from __future__ import annotations

import signal
import sys

# A stop requested while the slow imports below run is a clean stop (exit 0), not a death by
# signal; the service installs its own graceful handlers once it runs.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

import asyncio

from reelvault_catalog.app import main

if __name__ == "__main__":
    asyncio.run(main())
