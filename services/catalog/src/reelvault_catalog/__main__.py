"""``python -m reelvault_catalog``: run the catalog until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio

from reelvault_catalog.app import main

if __name__ == "__main__":
    asyncio.run(main())
