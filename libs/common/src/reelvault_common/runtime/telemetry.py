"""Traces (OpenTelemetry): one trace per video request, across every service.

The gateway opens a server span per HTTP request; ``EventPublisher`` opens a producer span per
event and carries the trace in the message's headers (W3C ``traceparent``/``tracestate``, or
whatever ``OTEL_PROPAGATORS`` names); the ``ConsumerRunner`` continues it for each delivery in a
consumer span, so what a handler publishes joins the same trace: gateway -> generator ->
archiver -> catalog.

Exported over OTLP/HTTP only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set; the other standard variables apply as
OpenTelemetry documents them (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER``/``_ARG``, ``OTEL_BSP_*``, ``OTEL_EXPORTER_OTLP_HEADERS``/``_TIMEOUT``/
``_COMPRESSION``/``_CERTIFICATE``, ``OTEL_PROPAGATORS``, ``OTEL_TRACES_EXPORTER=none``,
``OTEL_SDK_DISABLED``). Without an endpoint nothing is set up: ``tracer()`` is None, and every
helper here returns after one check -- no span, no header, no exporter.

Only OpenTelemetry's public API is used. The SDK and the exporter are imported only when
traces are exported.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from reelvault_common.runtime.logs import bind_log_context, log_scope

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)

TRACER_NAME = "reelvault"

# Span attributes: OpenTelemetry's messaging conventions, plus the video and organization.
MESSAGING_SYSTEM = "messaging.system"
DESTINATION = "messaging.destination.name"
OPERATION_TYPE = "messaging.operation.type"
OPERATION_NAME = "messaging.operation.name"
MESSAGE_ID = "messaging.message.id"
CONSUMER_GROUP = "messaging.consumer.group.name"
DELIVERY_ATTEMPT = "reelvault.delivery.attempt"
VIDEO_ID = "reelvault.video.id"
ORG = "reelvault.org"

Attributes = Mapping[str, str | int | float | bool]

_tracer: Tracer | None = None
# What the span helpers return when not tracing: no span, nothing to do (reusable).
_NO_SPAN: AbstractContextManager[None] = contextlib.nullcontext()


class NatsHeaders(Getter[Mapping[str, str] | None], Setter[MutableMapping[str, str]]):
    """Reads and writes trace context in a NATS message's headers (a ``dict`` in nats-py).

    NATS header names are case-sensitive; the propagators use lower-case names, and a name
    another client wrote in other case (``Traceparent``) is found as well."""

    def get(self, carrier: Mapping[str, str] | None, key: str) -> list[str] | None:
        if not carrier:
            return None
        value = carrier.get(key)
        if value is None:
            lowered = key.lower()
            value = next((v for k, v in carrier.items() if k.lower() == lowered), None)
        return None if value is None else [value]

    def keys(self, carrier: Mapping[str, str] | None) -> list[str]:
        return list(carrier or ())

    def set(self, carrier: MutableMapping[str, str], key: str, value: str) -> None:
        carrier[key] = value


NATS_HEADERS = NatsHeaders()


# --- set-up ---------------------------------------------------------------------------------
def export_endpoint(env: Mapping[str, str] | None = None) -> str | None:
    """Where traces go (the traces endpoint, else the base one), or None: no export."""
    env = os.environ if env is None else env
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    return (endpoint or "").strip() or None


def exporting(env: Mapping[str, str] | None = None) -> bool:
    """Does the environment ask for traces over OTLP?"""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    named = env.get("OTEL_TRACES_EXPORTER") or "otlp"
    exporters = {name.strip().lower() for name in named.split(",")}
    return "otlp" in exporters and export_endpoint(env) is not None


def build_tracer_provider(service: str) -> TracerProvider | None:
    """A tracer provider exporting over OTLP/HTTP, configured from the process environment,
    or None when the environment does not ask for traces (``exporting``). Installs nothing."""
    if not exporting():
        return None
    # Only when exporting: the SDK and the exporter cost start-up time and memory.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol.strip() != "http/protobuf":
        log.warning("OTLP protocol %r is not available here: traces go over http/protobuf",
                    protocol)
    # The service's own name unless the environment names it (Resource.create reads it).
    resource = Resource.create({} if _names_service(os.environ) else {SERVICE_NAME: service})
    provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def _names_service(env: Mapping[str, str]) -> bool:
    """Does ``OTEL_SERVICE_NAME`` or ``OTEL_RESOURCE_ATTRIBUTES`` give ``service.name``?"""
    pairs = env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(",")
    return bool(env.get("OTEL_SERVICE_NAME", "").strip()) or any(
        pair.partition("=")[0].strip() == "service.name" for pair in pairs
    )


def configure_telemetry(service: str) -> bool:
    """Once per process, at start (after ``configure_logging``): export this service's traces
    when the environment says where (see the module's docstring). True if it does. The
    provider flushes what is left when the process exits."""
    provider = build_tracer_provider(service)
    if provider is None:
        return False
    trace.set_tracer_provider(provider)
    use_tracer_provider(provider)
    log.info("traces exported over OTLP/HTTP to %s", _without_secrets(export_endpoint() or ""))
    return True


def use_tracer_provider(provider: trace.TracerProvider | None) -> None:
    """Trace with ``provider`` from now on (None: stop tracing). ``configure_telemetry`` calls
    it; tests use it with an in-memory exporter."""
    global _tracer
    _tracer = None if provider is None else provider.get_tracer(TRACER_NAME)


@contextlib.contextmanager
def tracing_with(provider: trace.TracerProvider | None) -> Iterator[None]:
    """``use_tracer_provider(provider)`` for a while, then back to what was used before."""
    global _tracer
    before = _tracer
    use_tracer_provider(provider)
    try:
        yield
    finally:
        _tracer = before


def tracer() -> Tracer | None:
    """The tracer of this process, None when traces are not exported."""
    return _tracer


def _without_secrets(url: str) -> str:
    """Scheme, host and path of an endpoint: never credentials or a query."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


# --- events ---------------------------------------------------------------------------------
def trace_headers() -> dict[str, str]:
    """The current trace context as message headers; empty when not tracing (e.g. to keep
    with work that continues later outside this context, see ``continued``)."""
    headers: dict[str, str] = {}
    if _tracer is not None and trace.get_current_span().get_span_context().is_valid:
        propagate.inject(headers, setter=NATS_HEADERS)
    return headers


def producing(
    event: Any, subject: str, headers: MutableMapping[str, str]
) -> AbstractContextManager[Span | None]:
    """The producer span of publishing ``event`` (``publish <type>``); its context goes into
    ``headers``. Yields None, and does nothing, when not tracing."""
    tracer = _tracer
    if tracer is None:
        return _NO_SPAN
    return _producing(tracer, event, subject, headers)


@contextlib.contextmanager
def _producing(
    tracer: Tracer, event: Any, subject: str, headers: MutableMapping[str, str]
) -> Iterator[Span]:
    attributes = {
        MESSAGING_SYSTEM: "nats",
        DESTINATION: subject,
        OPERATION_TYPE: "send",
        OPERATION_NAME: "publish",
        MESSAGE_ID: str(getattr(event, "event_id", "")),
        **_about(event),
    }
    with tracer.start_as_current_span(
        f"publish {getattr(event, 'type', subject)}", kind=SpanKind.PRODUCER,
        attributes=attributes,
    ) as span:
        propagate.inject(headers, setter=NATS_HEADERS)
        yield span


def consuming(
    consumer: str, subject: str, headers: Mapping[str, str] | None
) -> AbstractContextManager[None]:
    """Around one delivery, from before its decoding to its ack: a consumer span continuing
    the trace in ``headers`` (named once the event is known, see ``delivered``), and a fresh
    log context. Only the log context when not tracing."""
    tracer = _tracer
    if tracer is None:
        return log_scope()
    return _consuming(tracer, consumer, subject, headers)


@contextlib.contextmanager
def _consuming(
    tracer: Tracer, consumer: str, subject: str, headers: Mapping[str, str] | None
) -> Iterator[None]:
    parent = propagate.extract(headers, getter=NATS_HEADERS) if headers else None
    attributes = {
        MESSAGING_SYSTEM: "nats",
        DESTINATION: subject,
        OPERATION_TYPE: "process",
        OPERATION_NAME: "process",
        CONSUMER_GROUP: consumer,
    }
    with log_scope(), tracer.start_as_current_span(
        "process", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
    ):
        yield


def delivered(event: Any, attempt: int) -> None:
    """A delivery decoded to ``event``: log lines name its video and organization from now
    on, and the consumer span its type (``process <type>``), attempt, video and org."""
    video_id, org = getattr(event, "video_id", None), getattr(event, "org", None)
    bind_log_context(video_id=video_id, org=org)
    if _tracer is None:
        return
    span = trace.get_current_span()
    if span.is_recording():
        span.update_name(f"process {getattr(event, 'type', type(event).__name__)}")
        span.set_attribute(DELIVERY_ATTEMPT, attempt)
        span.set_attribute(MESSAGE_ID, str(getattr(event, "event_id", "")))
        span.set_attributes(_about(event))


# --- any span -------------------------------------------------------------------------------
def span(name: str, attributes: Attributes | None = None) -> AbstractContextManager[Span | None]:
    """A child span of the current one (e.g. the catalog's write, the archiver's copy); an
    exception leaving it is recorded. Yields None, and does nothing, when not tracing."""
    tracer = _tracer
    if tracer is None:
        return _NO_SPAN
    return tracer.start_as_current_span(name, attributes=attributes)


def continued(headers: Mapping[str, str] | None, name: str,
              attributes: Attributes | None = None) -> AbstractContextManager[Span | None]:
    """A span continuing the trace kept in ``headers`` (``trace_headers()`` taken earlier):
    work that belongs to a request but starts elsewhere, e.g. a provider's webhook about a
    job created while handling the request. A new trace when ``headers`` hold none."""
    tracer = _tracer
    if tracer is None:
        return _NO_SPAN
    parent = propagate.extract(headers, getter=NATS_HEADERS) if headers else None
    return tracer.start_as_current_span(name, context=parent, attributes=attributes)


def tag(*, video_id: object | None = None, org: str | None = None) -> None:
    """This work is about ``video_id`` of ``org``: named in the log lines that follow (in this
    task) and on the current span."""
    bind_log_context(video_id=video_id, org=org)
    if _tracer is None:
        return
    current = trace.get_current_span()
    if current.is_recording():
        if video_id is not None:
            current.set_attribute(VIDEO_ID, str(video_id))
        if org is not None:
            current.set_attribute(ORG, org)


def failed(error: BaseException | str) -> None:
    """The current span's work failed: the exception recorded (or the reason given, when the
    exception could echo a payload), status ERROR."""
    if _tracer is None:
        return
    current = trace.get_current_span()
    if not current.is_recording():
        return
    if isinstance(error, BaseException):
        current.record_exception(error)
        current.set_status(Status(StatusCode.ERROR, type(error).__name__))
    else:
        current.set_status(Status(StatusCode.ERROR, error))


def _about(event: Any) -> dict[str, str]:
    attributes = {}
    video_id, org = getattr(event, "video_id", None), getattr(event, "org", None)
    if video_id is not None:
        attributes[VIDEO_ID] = str(video_id)
    if org is not None:
        attributes[ORG] = str(org)
    return attributes

