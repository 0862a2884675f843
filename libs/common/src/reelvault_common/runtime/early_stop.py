"""For a service's ``__main__``, before its slow imports: a SIGTERM that arrives while they run
is a clean stop (exit 0), not a death by signal. The service installs its own graceful handlers
once it runs. Importing this module imports nothing else of reelvault's."""

from __future__ import annotations

import signal
import sys


def exit_cleanly_on_sigterm() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
