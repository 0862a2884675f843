"""The gateway's server span per request (named after the route template, never the query
string; continuing a caller's ``traceparent``) and the request's log lines naming the
organization and the video."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.trace import SpanKind, StatusCode
from reelvault_common.runtime.logs import configure_logging
from reelvault_gateway.app import create_app
from reelvault_gateway.context import GatewayContext
from reelvault_gateway.deps import get_context

from tests.support.gateway_fakes import FakeCatalog, fake_context, fake_settings, make_record
from tests.support.logging_state import preserved_logging
from tests.support.tracing import RecordedSpans, recorded_spans


@pytest.fixture
async def context(tmp_path: Path) -> GatewayContext:
    return await fake_context(fake_settings(tmp_path))


@pytest.fixture
def spans() -> Iterator[RecordedSpans]:
    with recorded_spans("gateway") as recorded:
        yield recorded


@pytest.fixture
async def client(context: GatewayContext) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(context.settings)
    app.dependency_overrides[get_context] = lambda: context
    assert isinstance(context.catalog, FakeCatalog)
    key = context.catalog.double.add_key()
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        yield client


async def test_a_request_is_a_server_span_named_after_its_route(
    client: httpx.AsyncClient, context: GatewayContext, spans: RecordedSpans
) -> None:
    record = make_record()
    assert isinstance(context.catalog, FakeCatalog)
    context.catalog.double.records = {record.id: record}
    response = await client.get(f"/v1/videos/{record.id}", params={"token": "s3cret"})
    assert response.status_code == 200, response.text

    span = spans.named("GET /v1/videos/{video_id}")
    assert span.kind is SpanKind.SERVER and span.parent is None
    attributes = dict(span.attributes or {})
    assert attributes["http.route"] == "/v1/videos/{video_id}"
    assert attributes["http.response.status_code"] == 200
    assert attributes["url.path"] == f"/v1/videos/{record.id}"
    assert attributes["reelvault.video.id"] == str(record.id)
    assert attributes["reelvault.org"] == record.org
    assert attributes["reelvault.request_id"] == response.headers["x-request-id"]
    assert not any("s3cret" in str(value) for value in attributes.values())


async def test_a_callers_trace_is_continued(
    client: httpx.AsyncClient, spans: RecordedSpans
) -> None:
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    response = await client.post(
        "/v1/videos", json={"prompt": "a hug"},
        headers={"traceparent": f"00-{trace_id}-{parent_id}-01"},
    )
    assert response.status_code == 202, response.text
    span = spans.named("POST /v1/videos")
    assert span.context is not None and format(span.context.trace_id, "032x") == trace_id
    assert span.parent is not None and format(span.parent.span_id, "016x") == parent_id
    assert (span.attributes or {})["reelvault.video.id"] == response.json()["id"]


async def test_failures_and_unknown_routes(
    client: httpx.AsyncClient, context: GatewayContext, spans: RecordedSpans
) -> None:
    assert (await client.get("/no/such/route")).status_code == 404
    context.events.down = True  # type: ignore[attr-defined]
    assert (await client.post("/v1/videos", json={"prompt": "p"})).status_code == 503
    assert (await client.get("/healthz")).status_code == 200
    unknown = spans.named("GET")  # no route matched: the method alone
    assert (unknown.attributes or {})["http.response.status_code"] == 404
    failed = spans.named("POST /v1/videos")
    assert failed.status.status_code is StatusCode.ERROR
    assert [s.name for s in spans.all()] == ["GET", "POST /v1/videos"]  # probes: no span


async def test_request_log_lines_name_the_org_the_video_and_the_trace(
    client: httpx.AsyncClient, spans: RecordedSpans, capsys: pytest.CaptureFixture[str]
) -> None:
    with preserved_logging():
        configure_logging("gateway", "INFO", "json")
        logging.getLogger("reelvault_gateway").setLevel(logging.INFO)
        response = await client.post("/v1/videos", json={"prompt": "a hug"})
    assert response.status_code == 202, response.text
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    span = spans.named("POST /v1/videos")
    assert span.context is not None
    access = [line for line in lines if line["logger"] == "reelvault_gateway.access"]
    requested = [line for line in lines if line["msg"].startswith("video ")]
    assert access and requested, lines
    for line in (*access, *requested):
        assert line["trace_id"] == format(span.context.trace_id, "032x")
        assert line["video_id"] == response.json()["id"]
        assert line["org"] == "default"
