"""configure_logging: every record, FastStream's included, leaves through our one handler (JSON
when asked, never ANSI colours), and an idle pull fetch is not logged as an ERROR."""

from __future__ import annotations

import logging
import sys
import threading
import warnings
from collections.abc import Iterator

import pytest
from reelvault_common.runtime.logs import configure_logging

from tests.support.logging_state import json_lines, preserved_logging


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    with preserved_logging():
        yield



def test_loggers_faststream_set_up_again_are_routed_again(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("svc", "INFO", "text")
    # What FastStream does to its loggers when it creates them (at import and at broker start).
    for name in ("faststream", "faststream.access.nats"):
        logger = logging.getLogger(name)
        logger.propagate = False
        logger.addHandler(logging.StreamHandler(sys.stdout))
    logging.getLogger("faststream.access.nats").warning("connection lost")
    logging.getLogger("faststream").warning("app warning")

    captured = capsys.readouterr()
    assert captured.out == ""
    assert "svc WARNING faststream.access.nats: connection lost" in captured.err
    assert "svc WARNING faststream: app warning" in captured.err
    assert captured.err.count("connection lost") == 1


@pytest.mark.parametrize(("level", "shown"), [("INFO", False), ("DEBUG", True)])
def test_an_idle_pull_fetch_is_not_an_error(
    capsys: pytest.CaptureFixture[str], level: str, shown: bool
) -> None:
    configure_logging("svc", level, "json")
    access = logging.getLogger("faststream.access.nats")
    access.setLevel(logging.INFO)  # as FastStream sets it
    access.error(
        "Task-7 raised an exception, retrying...\nIf this behavior causes issues, ...",
        exc_info=TimeoutError(),
    )
    access.info("callback for Task-7 is being executed...")

    lines = json_lines(capsys.readouterr().err)
    if shown:
        assert [line["level"] for line in lines] == ["DEBUG", "DEBUG"]
    else:
        assert lines == []


def test_other_faststream_errors_stay_errors(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("svc", "INFO", "json")
    access = logging.getLogger("faststream.access.nats")
    access.error("Task-7 raised an exception, retrying...", exc_info=ConnectionResetError())
    access.error("handler failed", exc_info=TimeoutError())  # a handler's own timeout

    lines = json_lines(capsys.readouterr().err)
    assert [line["level"] for line in lines] == ["ERROR", "ERROR"]


def test_uncaught_exceptions_and_warnings_are_log_lines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("svc", "INFO", "json")
    try:
        raise RuntimeError("crashed")
    except RuntimeError:
        sys.excepthook(*sys.exc_info())  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("careful", UserWarning, stacklevel=1)

    def fail() -> None:
        raise ValueError("thread crashed")

    thread = threading.Thread(target=fail, name="worker")
    thread.start()
    thread.join()

    lines = json_lines(capsys.readouterr().err)
    assert lines[0]["level"] == "CRITICAL" and "RuntimeError: crashed" in lines[0]["exc"]
    assert lines[1]["logger"] == "py.warnings" and "careful" in lines[1]["msg"]
    assert lines[2]["msg"] == "uncaught exception in thread worker"
    assert "ValueError: thread crashed" in lines[2]["exc"]
