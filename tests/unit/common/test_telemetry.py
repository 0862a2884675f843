"""Traces: set up only when the environment names an OTLP endpoint, and the trace context
carried across an event (producer span -> message headers -> consumer span)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from typing import Any

import pytest
from nats.js.api import PubAck
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from reelvault_common.contracts.events import VideoRequested
from reelvault_common.messaging.publisher import EventPublisher
from reelvault_common.messaging.topology import Topology
from reelvault_common.runtime import telemetry

from tests.support.tracing import recorded_spans

OTEL_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_TRACES_EXPORTER",
    "OTEL_SDK_DISABLED",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def requested(org: str = "acme") -> VideoRequested:
    return VideoRequested.new(
        video_id=uuid.uuid4(), org=org, correlation_id="req-1", prompt="a hug", model="sora-2",
        seconds="4", size="1280x720",
    )


# --- set-up ---------------------------------------------------------------------------------
def test_without_an_endpoint_nothing_is_set_up() -> None:
    assert not telemetry.exporting({})
    assert telemetry.build_tracer_provider("catalog") is None


def test_an_endpoint_or_a_traces_endpoint_turns_export_on() -> None:
    base = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    traces = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}
    assert telemetry.exporting(base) and telemetry.exporting(traces)
    assert telemetry.export_endpoint({**base, **traces}) == traces[
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
    assert not telemetry.exporting({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "})


@pytest.mark.parametrize(
    "switch", [{"OTEL_TRACES_EXPORTER": "none"}, {"OTEL_SDK_DISABLED": "true"}],
    ids=["exporter-none", "sdk-disabled"],
)
def test_the_standard_switches_turn_export_off(switch: dict[str, str]) -> None:
    assert not telemetry.exporting({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
                                    **switch})


def test_the_provider_names_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    provider = telemetry.build_tracer_provider("archiver")
    assert provider is not None
    try:
        assert provider.resource.attributes["service.name"] == "archiver"
    finally:
        provider.shutdown()


def test_otel_service_name_wins_as_documented(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "archiver-eu")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
    provider = telemetry.build_tracer_provider("archiver")
    assert provider is not None
    try:
        assert provider.resource.attributes["service.name"] == "archiver-eu"
        assert provider.resource.attributes["deployment.environment"] == "test"
    finally:
        provider.shutdown()


def test_service_name_in_resource_attributes_wins_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=video, service.name=arch")
    provider = telemetry.build_tracer_provider("archiver")
    assert provider is not None
    try:
        assert provider.resource.attributes["service.name"] == "arch"
    finally:
        provider.shutdown()


# A fresh interpreter: whether the SDK and the exporter are loaded at all.
_PROBE = """
import json, sys
from opentelemetry import trace
from reelvault_common.messaging import consumer, publisher
from reelvault_common.runtime import telemetry
on = telemetry.configure_telemetry("catalog")
print(json.dumps({
    "on": on,
    "tracer": telemetry.tracer() is not None,
    "provider": type(trace.get_tracer_provider()).__name__,
    "sdk": sorted(m for m in sys.modules if m.startswith(("opentelemetry.sdk",
                                                          "opentelemetry.exporter"))),
}))
"""


def run_probe(env: dict[str, str]) -> dict[str, Any]:
    clean = {k: v for k, v in os.environ.items() if k not in OTEL_VARIABLES}
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                          check=True, timeout=60, env={**clean, **env})
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_configure_without_an_endpoint_loads_no_sdk_and_no_exporter() -> None:
    result = run_probe({})
    assert result == {"on": False, "tracer": False, "provider": "ProxyTracerProvider",
                      "sdk": []}


def test_configure_with_an_endpoint_installs_the_sdk_provider() -> None:
    result = run_probe({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    assert result["on"] and result["tracer"]
    assert result["provider"] == "TracerProvider"
    assert "opentelemetry.exporter.otlp.proto.http.trace_exporter" in result["sdk"]


# --- headers --------------------------------------------------------------------------------
def test_the_trace_goes_into_headers_and_comes_back_out() -> None:
    event = requested()
    subject = f"reelvault.events.acme.{event.type}"
    headers: dict[str, str] = {"Nats-Msg-Id": str(event.event_id)}
    with recorded_spans() as spans:
        with telemetry.span("request") as request:
            assert request is not None
            with telemetry.producing(event, subject, headers):
                pass
        assert set(headers) == {"Nats-Msg-Id", "traceparent"}
        with telemetry.consuming("reelvault-generator-requests", subject, headers):
            telemetry.delivered(event, attempt=2)
            inside = trace.get_current_span().get_span_context()

    publish = spans.named("publish video.requested")
    process = spans.named("process video.requested")
    assert publish.kind is SpanKind.PRODUCER and process.kind is SpanKind.CONSUMER
    assert publish.parent is not None
    assert publish.parent.span_id == request.get_span_context().span_id
    # One trace: the consumer's span is the producer's child.
    assert process.context is not None and publish.context is not None
    assert process.context.trace_id == publish.context.trace_id == inside.trace_id
    assert process.parent is not None and process.parent.span_id == publish.context.span_id
    assert dict(process.attributes or {}) == {
        "messaging.system": "nats",
        "messaging.destination.name": subject,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.consumer.group.name": "reelvault-generator-requests",
        "messaging.message.id": str(event.event_id),
        "reelvault.delivery.attempt": 2,
        "reelvault.video.id": str(event.video_id),
        "reelvault.org": "acme",
    }
    assert (publish.attributes or {})["messaging.destination.name"] == subject


def test_tracestate_travels_and_header_names_of_other_case_are_read() -> None:
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    headers = {"Traceparent": f"00-{trace_id}-{span_id}-01", "tracestate": "vendor=abc"}
    with recorded_spans() as spans, telemetry.consuming("c", "s", headers):
        again: dict[str, str] = {}
        with telemetry.producing(requested(), "s2", again):
            pass
    process = spans.named("process")  # never decoded: named by its operation alone
    assert process.context is not None and format(process.context.trace_id, "032x") == trace_id
    assert process.parent is not None and format(process.parent.span_id, "016x") == span_id
    assert again["traceparent"].split("-")[1] == trace_id
    assert again["tracestate"] == "vendor=abc"


def test_without_tracing_nothing_is_added_and_no_span_is_made() -> None:
    headers = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    out: dict[str, str] = {}
    with telemetry.tracing_with(None), telemetry.consuming("c", "s", headers):
        telemetry.delivered(requested(), 1)
        # The incoming context is not even read: nothing is current.
        assert not trace.get_current_span().get_span_context().is_valid
        with telemetry.producing(requested(), "s", out) as span:
            assert span is None
        with telemetry.span("copy video") as child:
            assert child is None
        assert telemetry.trace_headers() == {}
    assert out == {}


def test_a_failure_marks_the_consumer_span() -> None:
    with recorded_spans() as spans, telemetry.consuming("c", "s", None):
        telemetry.delivered(requested(), 1)
        telemetry.failed(RuntimeError("storage down"))
    process = spans.named("process video.requested")
    assert process.status.status_code is StatusCode.ERROR
    assert [event.name for event in process.events] == ["exception"]


def test_continued_joins_the_trace_kept_earlier() -> None:
    with recorded_spans() as spans:
        with telemetry.span("process video.requested"):
            kept = telemetry.trace_headers()
        with telemetry.continued(kept, "webhook video.completed"):
            pass
    first, later = spans.named("process video.requested"), spans.named("webhook video.completed")
    assert first.context is not None and later.context is not None and later.parent is not None
    assert later.context.trace_id == first.context.trace_id
    assert later.parent.span_id == first.context.span_id


# --- the publisher --------------------------------------------------------------------------
class _Stream:
    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []

    async def publish(self, subject: str, payload: bytes, **options: Any) -> PubAck:
        self.headers.append(dict(options["headers"]))
        return PubAck(stream=options["stream"], seq=len(self.headers))


class _Connection:
    def __init__(self) -> None:
        self.stream = _Stream()

    def jetstream(self) -> _Stream:
        return self.stream


async def test_the_publisher_sends_the_trace_only_when_tracing() -> None:
    connection = _Connection()
    publisher = EventPublisher(connection, Topology("reelvault"))  # type: ignore[arg-type]
    event = requested()
    await publisher.publish(event)
    with recorded_spans() as spans:
        await publisher.publish(event)
    plain, traced = connection.stream.headers
    assert set(plain) == {"Nats-Msg-Id", "content-type", "correlation_id"}
    assert set(traced) == set(plain) | {"traceparent"}
    publish = spans.named("publish video.requested")
    assert publish.context is not None and publish.parent is None
    assert traced["traceparent"].startswith(
        f"00-{publish.context.trace_id:032x}-{publish.context.span_id:016x}-")
    assert (publish.attributes or {})["messaging.destination.name"] == (
        f"reelvault.events.acme.{event.type}")
