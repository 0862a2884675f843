"""``python -m reelvault_generator``: run the generator until SIGTERM/SIGINT."""

import asyncio

from reelvault_generator.app import main

if __name__ == "__main__":
    asyncio.run(main())
