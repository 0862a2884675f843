"""One logging set-up for every service: plain text for people, JSON lines for machines.

Every line a process logs goes through the one handler installed here, FastStream's lines too.
FastStream gives its own loggers (``faststream`` when it is imported, ``faststream.access.nats``
when a broker starts) a handler of their own with an ANSI colour formatter, writing to stdout or
stderr, and turns their propagation off. ``configure_logging`` takes those handlers away and
turns propagation back on, now and whenever FastStream sets them up again later, so with
``fmt="json"`` every line is a JSON object and no line carries colour codes.

Lines name what they are about: the video and organization in hand (``bind_log_context``, set
by the consumer runner from the event and by the gateway from the request) and, when a span is
active, its trace and span ids (OpenTelemetry, see ``telemetry.py``). JSON lines carry them as
``video_id``, ``org``, ``trace_id`` and ``span_id``; text lines end with them, briefly.

The logging module is the only dependency: FastStream is an optional extra of this library, and
nothing here imports it; OpenTelemetry (the ``observability`` extra) is used when installed.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType

try:
    from opentelemetry.trace import get_current_span
except ImportError:  # without the observability extra: no trace ids in log lines
    get_current_span = None  # type: ignore[assignment]

# FastStream's loggers, by name. Created here if FastStream has not created them yet, so the
# routing filter is on them before FastStream adds its handlers.
FASTSTREAM_LOGGERS = ("faststream", "faststream.access", "faststream.access.nats")

# What the current task's log lines are about (a task started from here inherits them).
_VIDEO_ID: ContextVar[str | None] = ContextVar("reelvault_log_video_id", default=None)
_ORG: ContextVar[str | None] = ContextVar("reelvault_log_org", default=None)
# The record attributes ``_WithContext`` sets, in the order lines show them.
CONTEXT_FIELDS = ("video_id", "org", "trace_id", "span_id")


def bind_log_context(*, video_id: object | None = None, org: str | None = None) -> None:
    """From here on, this task's log lines (and those of tasks it starts) name ``video_id``
    and/or ``org``. Only ids: never anything secret."""
    if video_id is not None:
        _VIDEO_ID.set(str(video_id))
    if org is not None:
        _ORG.set(org)


def log_scope() -> LogScope:
    """A fresh log context for one unit of work (a delivery, a request): nothing bound on
    entry, and whatever was bound inside is gone on exit."""
    return LogScope()


class LogScope:
    """``log_scope()``'s context manager (a class, not a generator: it is on every message's
    path)."""

    __slots__ = ("_tokens",)

    def __enter__(self) -> None:
        self._tokens = (_VIDEO_ID.set(None), _ORG.set(None))

    def __exit__(self, *exc: object) -> None:
        video_token, org_token = self._tokens
        _VIDEO_ID.reset(video_token)
        _ORG.reset(org_token)


class _WithContext(logging.Filter):
    """On our handler: puts the log context and the active span's ids on each record (as
    ``video_id``, ``org``, ``trace_id``, ``span_id``), read when the record is handled, in the
    task that logged it. Values a call passed itself (``extra=``) are kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        found: dict[str, str | None] = {"video_id": _VIDEO_ID.get(), "org": _ORG.get()}
        if get_current_span is not None:
            context = get_current_span().get_span_context()
            if context.is_valid:
                found["trace_id"] = format(context.trace_id, "032x")
                found["span_id"] = format(context.span_id, "016x")
        for name, value in found.items():
            if value is not None and getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


def _context_of(record: logging.LogRecord) -> dict[str, str]:
    return {
        name: str(value)
        for name in CONTEXT_FIELDS
        if (value := getattr(record, name, None)) is not None
    }


class _TextFormatter(logging.Formatter):
    """``<time> <service> <LEVEL> <logger>: <message>``, then ``[video=… org=… trace=…]`` when
    known (before a traceback; the span id only in JSON)."""

    _SHORT = (("video_id", "video"), ("org", "org"), ("trace_id", "trace"))

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        context = _context_of(record)
        suffix = " ".join(f"{short}={context[name]}" for name, short in self._SHORT
                          if name in context)
        return f"{line} [{suffix}]" if suffix else line


class _JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
            **_context_of(record),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry)


class _ThroughOurHandler(logging.Filter):
    """On FastStream's loggers: before one of their records is handled, their own handlers
    (colour formatters) are removed and propagation is turned back on, so the record -- and every
    later one -- reaches the root logger's handler. A filter, because FastStream configures its
    broker logger when the broker starts, after ``configure_logging``, and leaves filters alone.
    All of FastStream's loggers are put right at once: a record propagating from a child would
    otherwise still meet the colour handler of a parent that has not logged anything yet."""

    def __init__(self, loggers: Iterable[logging.Logger]) -> None:
        super().__init__()
        self._loggers = tuple(loggers)

    def filter(self, record: logging.LogRecord) -> bool:
        for logger in self._loggers:
            _route_to_root(logger)
        return True


def _route_to_root(logger: logging.Logger) -> None:
    if logger.handlers or not logger.propagate:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True


class _IdleFetchIsNotAnError(logging.Filter):
    """On our handler: FastStream restarts a JetStream pull subscription's fetch task whenever a
    fetch ends without a message (the client raises ``TimeoutError``), logs that restart as an
    ERROR with the traceback ("... raised an exception, retrying"), and logs "callback for
    <task> is being executed" at INFO each time one of its tasks ends. A consumer with nothing
    to do is not an error: both become DEBUG lines, shown only when the level is DEBUG."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self._show_debug = level <= logging.DEBUG

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("faststream") or record.levelno <= logging.DEBUG:
            return True
        message = record.getMessage()
        exc = record.exc_info[1] if record.exc_info else None
        idle_fetch = isinstance(exc, TimeoutError) and "raised an exception, retrying" in message
        task_ended = message.startswith("callback for ") and "is being executed" in message
        if not (idle_fetch or task_ended):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return self._show_debug


def configure_logging(service: str, level: str = "INFO", fmt: str = "text") -> None:
    """Send every log record of this process, as text or as JSON lines, to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter(service))
    else:
        handler.setFormatter(
            _TextFormatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.setLevel(level.upper())  # an unknown level name is a ValueError here, before anything
    numeric_level = root.level
    handler.addFilter(_IdleFetchIsNotAnError(numeric_level))
    handler.addFilter(_WithContext())
    root.handlers[:] = [handler]

    faststream_loggers = [logging.getLogger(name) for name in FASTSTREAM_LOGGERS]
    router = _ThroughOurHandler(faststream_loggers)
    for logger in faststream_loggers:
        _route_to_root(logger)
        for old in [f for f in logger.filters if isinstance(f, _ThroughOurHandler)]:
            logger.removeFilter(old)
        logger.addFilter(router)

    # Python's warnings and uncaught exceptions would otherwise print plain text to stderr.
    logging.captureWarnings(True)
    crash_log = logging.getLogger(service)

    def log_uncaught(
        exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        crash_log.critical("uncaught exception", exc_info=(exc_type, exc, tb))

    def log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None or issubclass(args.exc_type, SystemExit):
            return  # as the default hook: a thread's SystemExit ends it quietly
        crash_log.critical(
            "uncaught exception in thread %s",
            args.thread.name if args.thread else "?",
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        )

    sys.excepthook = log_uncaught
    threading.excepthook = log_uncaught_in_thread

    # httpx (and its fork httpx2) logs every request URL and FastStream every message at INFO:
    # at that volume they would drown what matters, so they speak only at DEBUG.
    chatty_level = logging.DEBUG if numeric_level <= logging.DEBUG else logging.WARNING
    for name in ("httpx", "httpx2", "faststream.access"):
        logging.getLogger(name).setLevel(chatty_level)


def broker_logger() -> logging.Logger:
    """The logger to hand FastStream's broker (``NatsBroker(logger=broker_logger())``, its
    public parameter): the broker then logs through it instead of building its own colour
    logger, and its records reach ``configure_logging``'s handler."""
    return logging.getLogger("faststream.access.reelvault")
