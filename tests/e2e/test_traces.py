"""One video, one trace: every service its own process (``reelvault up``), exporting over
OTLP/HTTP to a receiver in this test process. The gateway's request, the generator's work, the
archiver's copy and the catalog's writes all land in the trace of that request, linked parent
to child through every event; and the services' JSON log lines about the video name it."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.support.system import (
    RunningSystem,
    reelvault_up,
    stop_cleanly,
    system_env,
    wait_for_status,
)

pytestmark = pytest.mark.e2e

SERVICES = {"gateway", "generator", "archiver", "catalog"}
# Variables of the shell that would change what this test sees.
OTEL_UNSET = (
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_TRACES_EXPORTER",
    "OTEL_SDK_DISABLED",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_PROPAGATORS",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
)


@dataclass(frozen=True)
class Received:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root
    attributes: dict[str, Any]


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class OtlpReceiver:
    """An OTLP/HTTP traces endpoint (``POST /v1/traces``, protobuf) on a free loopback port."""

    def __init__(self) -> None:
        self.spans: list[Received] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/traces":
                    receiver.take(ExportTraceServiceRequest.FromString(body))
                    status, answer = 200, ExportTraceServiceResponse().SerializeToString()
                else:
                    status, answer = 404, b""
                self.send_response(status)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def take(self, request: ExportTraceServiceRequest) -> None:
        found = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append(Received(
                        service=str(resource.get("service.name")),
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        attributes={a.key: _value(a.value) for a in span.attributes},
                    ))
        with self.lock:
            self.spans.extend(found)

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.spans)

    def first(self, name: str, timeout_s: float = 10) -> Received:
        """The first span called ``name`` received, waiting for it up to ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not (found := [span for span in self.snapshot() if span.name == name]):
            assert time.monotonic() < deadline, f"no span {name!r} received"
            time.sleep(0.1)
        return found[0]


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    otlp = OtlpReceiver()
    otlp.thread.start()
    try:
        yield otlp
    finally:
        otlp.server.shutdown()
        otlp.server.server_close()


@pytest.fixture
def system(
    tmp_path: Path, nats_url: str, database_url: str, namespace: str, receiver: OtlpReceiver
) -> Iterator[RunningSystem]:
    env = system_env(
        nats_url, database_url, namespace, REELVAULT_LOG_FORMAT="json",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, OTEL_BSP_SCHEDULE_DELAY="100",
    )
    with reelvault_up(tmp_path / "data", env, unset=OTEL_UNSET) as running:
        yield running
        stop_cleanly(running)


class Trace:
    def __init__(self, spans: list[Received]) -> None:
        self.spans = spans
        self.by_id = {span.span_id: span for span in spans}

    def named(self, service: str, name: str) -> list[Received]:
        return [s for s in self.spans if (s.service, s.name) == (service, name)]

    def path_up(self, span: Received) -> list[tuple[str, str]]:
        """(service, name) of ``span`` and of each ancestor up to the root."""
        path = [(span.service, span.name)]
        while span.parent_id:
            parent = self.by_id.get(span.parent_id)
            if parent is None:
                return [*path, ("?", "missing parent")]
            path.append((parent.service, parent.name))
            span = parent
        return path

    def connected(self) -> bool:
        """Every span's parent is in the trace (one root)."""
        roots = [s for s in self.spans if not s.parent_id]
        return len(roots) == 1 and all(s.parent_id in self.by_id for s in self.spans
                                       if s.parent_id)


# From the catalog's record of the stored video back to the client's request. The completion
# was published by whichever found the job finished first: the poll consumer's look (a
# delivery of video.generation.started) or the provider's webhook (which continues the trace
# of the request that created the job).
STORED_PATH_HEAD = [
    ("catalog", "apply video.stored"),
    ("catalog", "process video.stored"),
    ("archiver", "publish video.stored"),
    ("archiver", "process video.completed"),
    ("generator", "publish video.completed"),
]
POLLED = ("generator", "process video.generation.started")
WEBHOOK = ("generator", "webhook video.completed")
STORED_PATH_TAIL = [
    ("generator", "publish video.generation.started"),
    ("generator", "process video.requested"),
    ("gateway", "publish video.requested"),
    ("gateway", "POST /v1/videos"),
]


def trace_of_video(receiver: OtlpReceiver, video_id: str, timeout_s: float = 30) -> Trace:
    """The video's trace once it holds the whole way from the request to the stored record."""
    deadline = time.monotonic() + timeout_s
    while True:
        spans = receiver.snapshot()
        roots = [s for s in spans if s.name == "POST /v1/videos"
                 and s.attributes.get("reelvault.video.id") == video_id]
        if roots:
            trace = Trace([s for s in spans if s.trace_id == roots[0].trace_id])
            if trace.named("catalog", "apply video.stored") and trace.connected():
                return trace
        if time.monotonic() > deadline:
            mine = [s for s in spans if roots and s.trace_id == roots[0].trace_id]
            shown = "\n".join(f"{s.service} {s.name} {s.span_id} <- {s.parent_id}" for s in mine)
            names = sorted({(s.service, s.name) for s in spans})
            raise AssertionError(f"no complete trace of {video_id} after {timeout_s}s: {names}"
                                 f"\n{shown}")
        time.sleep(0.2)


def test_one_video_is_one_trace_across_every_service(
    system: RunningSystem, receiver: OtlpReceiver
) -> None:
    with system.client() as client:
        created = client.post("/v1/videos", json={"prompt": "two friends hug on a beach"})
        assert created.status_code == 202, created.text
        video_id = created.json()["id"]
        video = wait_for_status(client, video_id, {"completed", "failed"})
        assert video["status"] == "completed", video
        listed = client.get("/v1/videos", params={"limit": 5, "status": "completed"})
        assert listed.status_code == 200

    trace = trace_of_video(receiver, video_id)
    assert {span.service for span in trace.spans} >= SERVICES
    # One server span per request (FastAPI's own tracing is off), one producer span.
    assert sorted(s.name for s in trace.spans if s.service == "gateway") == [
        "POST /v1/videos", "publish video.requested"]

    [stored] = trace.named("catalog", "apply video.stored")
    path = trace.path_up(stored)
    assert path[:5] == STORED_PATH_HEAD, path
    assert path[5] in (POLLED, WEBHOOK), path
    assert path[6:] == (STORED_PATH_TAIL if path[5] == POLLED else STORED_PATH_TAIL[1:]), path

    # The archiver's copy is a child of its handling of video.completed.
    [copy] = trace.named("archiver", "copy video")
    assert trace.path_up(copy)[:3] == [
        ("archiver", "copy video"),
        ("archiver", "process video.completed"),
        ("generator", "publish video.completed"),
    ]
    # The catalog's first write, straight from the gateway's publish.
    [recorded] = trace.named("catalog", "apply video.requested")
    assert trace.path_up(recorded) == [
        ("catalog", "apply video.requested"),
        ("catalog", "process video.requested"),
        *STORED_PATH_TAIL[2:],
    ]
    process = trace.named("catalog", "process video.requested")[0].attributes
    assert process["messaging.system"] == "nats"
    assert process["reelvault.video.id"] == video_id
    assert process["reelvault.org"] == "default"
    assert process["reelvault.delivery.attempt"] >= 1

    # Route templates, never query strings; the list is a trace of its own.
    listing = receiver.first("GET /v1/videos")
    assert listing.trace_id != stored.trace_id
    assert not any("limit" in str(value) for value in listing.attributes.values())
    assert_log_lines_name_the_video(system, video_id, stored.trace_id)


def assert_log_lines_name_the_video(system: RunningSystem, video_id: str, trace_id: str) -> None:
    """The services' JSON log lines about the video carry its id, its organization and, in
    the pipeline, its trace (the gateway's own reads of it are requests, and traces, of their
    own)."""
    about: dict[str, list[dict[str, Any]]] = {}
    for log in (system.data_dir / "logs").glob("*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("{") and video_id in line:
                entry = json.loads(line)
                if entry.get("video_id") == video_id:
                    about.setdefault(entry["service"], []).append(entry)
    assert {"gateway", "generator", "archiver"} <= set(about), sorted(about)
    for service, entries in about.items():
        assert all(entry.get("org") == "default" for entry in entries), (service, entries)
        in_trace = [entry for entry in entries if entry.get("trace_id") == trace_id]
        assert in_trace, (service, entries)
        if service != "gateway":
            assert in_trace == entries, (service, entries)
