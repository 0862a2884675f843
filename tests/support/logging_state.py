"""``configure_logging`` changes process-wide state (root handler, FastStream's loggers,
exception hooks, warnings capture); tests that call it put everything back afterwards."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any

from reelvault_common.runtime.logs import FASTSTREAM_LOGGERS


@contextlib.contextmanager
def preserved_logging() -> Iterator[None]:
    names = ["", *FASTSTREAM_LOGGERS, "httpx", "httpx2"]
    saved = {
        name: (logger.handlers[:], logger.filters[:], logger.propagate, logger.level)
        for name in names
        for logger in [logging.getLogger(name)]
    }
    hooks = (sys.excepthook, threading.excepthook)
    try:
        yield
    finally:
        for name, (handlers, filters, propagate, level) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers[:] = handlers
            logger.filters[:] = filters
            logger.propagate = propagate
            logger.setLevel(level)
        sys.excepthook, threading.excepthook = hooks
        logging.captureWarnings(False)


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every non-empty line parsed as JSON (a line that is not JSON fails the test)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]
