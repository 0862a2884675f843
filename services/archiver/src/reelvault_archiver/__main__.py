"""``python -m reelvault_archiver``."""

import asyncio

from reelvault_archiver.app import main

if __name__ == "__main__":
    asyncio.run(main())
