"""Traces kept in memory: ``telemetry`` traces to an SDK provider whose spans a test reads."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from reelvault_common.runtime import telemetry


class RecordedSpans:
    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self._exporter = exporter

    def all(self) -> list[ReadableSpan]:
        """Every ended span so far, in the order they ended."""
        return list(self._exporter.get_finished_spans())

    def named(self, name: str) -> ReadableSpan:
        """The one ended span called ``name``."""
        found = [span for span in self.all() if span.name == name]
        assert len(found) == 1, [span.name for span in self.all()]
        return found[0]


@contextlib.contextmanager
def recorded_spans(service: str = "test") -> Iterator[RecordedSpans]:
    """Trace (``telemetry.tracer()``) to memory for a while; the process-wide OpenTelemetry
    provider is left alone."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        with telemetry.tracing_with(provider):
            yield RecordedSpans(exporter)
    finally:
        provider.shutdown()
