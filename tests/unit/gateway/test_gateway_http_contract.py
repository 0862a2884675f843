"""The HTTP contract with in-memory adapters (no broker): one error envelope for every failure,
status codes, headers and the OpenAPI document."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from reelvault_common.contracts.events import VideoArchiveRequested, VideoRequested
from reelvault_gateway.app import create_app
from reelvault_gateway.context import GatewayContext
from reelvault_gateway.deps import get_context

from tests.support.gateway_fakes import (
    CatalogDouble,
    FakeBroker,
    FakeCatalog,
    FakeEvents,
    fake_context,
    fake_settings,
    image_bytes,
    make_record,
)


@pytest.fixture
async def context(tmp_path: Path) -> GatewayContext:
    return await fake_context(fake_settings(tmp_path))


@pytest.fixture
def app(context: GatewayContext) -> FastAPI:
    app = create_app(context.settings)
    app.dependency_overrides[get_context] = lambda: context
    return app


@pytest.fixture
def key(context: GatewayContext) -> str:
    return catalog(context).add_key()


@pytest.fixture
async def client(app: FastAPI, key: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        yield client


def catalog(context: GatewayContext) -> CatalogDouble:
    assert isinstance(context.catalog, FakeCatalog)
    return context.catalog.double


def events(context: GatewayContext) -> FakeEvents:
    assert isinstance(context.events, FakeEvents)
    return context.events


def assert_envelope(
    response: httpx.Response, status: int, code: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    return dict(body["error"])


# --- the envelope for framework errors ------------------------------------------------------------
async def test_unknown_route_is_404_in_the_envelope(client: httpx.AsyncClient) -> None:
    assert_envelope(await client.get("/no/such/route"), 404, "not_found")


async def test_wrong_method_is_405_in_the_envelope(client: httpx.AsyncClient) -> None:
    assert_envelope(await client.delete("/v1/videos"), 405, "method_not_allowed")


async def test_request_validation_is_422_with_field_details(client: httpx.AsyncClient) -> None:
    error = assert_envelope(
        await client.post("/v1/videos", json={"model": "sora-2"}), 422, "validation_error"
    )
    assert ["body", "prompt"] in [detail["loc"] for detail in error["details"]]
    assert "prompt" in error["message"]


async def test_validation_details_do_not_echo_the_input(client: httpx.AsyncClient) -> None:
    secret = "sk-do-not-echo-" + "x" * 20
    response = await client.post("/v1/videos", json={"prompt": "p", "model": secret * 10})
    error = assert_envelope(response, 422)
    assert secret not in response.text
    assert error["details"][0]["loc"] == ["body", "model"]


async def test_malformed_uuid_is_422(client: httpx.AsyncClient) -> None:
    error = assert_envelope(await client.get("/v1/videos/not-a-uuid"), 422, "validation_error")
    assert error["details"][0]["loc"] == ["path", "video_id"]


async def test_invalid_json_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/videos", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_envelope(response, 422, "validation_error")


async def test_oversized_json_body_is_413(
    client: httpx.AsyncClient, context: GatewayContext
) -> None:
    big = "x" * (context.settings.max_json_bytes + 10)
    assert_envelope(await client.post("/v1/videos", json={"prompt": big}), 413, "payload_too_large")
    assert events(context).published == []


async def test_unexpected_error_is_500_without_details(
    client: httpx.AsyncClient, context: GatewayContext
) -> None:
    assert (await client.get("/v1/videos")).status_code == 200  # the key is cached now
    catalog(context).failure = RuntimeError("secret connection string postgres://u:pw@h/db")
    response = await client.get(f"/v1/videos/{uuid.uuid4()}")
    error = assert_envelope(response, 500, "internal_error")
    assert "pw@" not in response.text
    assert "Traceback" not in response.text
    assert error["details"] is None


async def test_catalog_down_is_503_catalog_unavailable(
    client: httpx.AsyncClient, context: GatewayContext
) -> None:
    assert (await client.get("/v1/videos")).status_code == 200  # the key is cached now
    catalog(context).down = True
    response = await client.get(f"/v1/videos/{uuid.uuid4()}")
    assert_envelope(response, 503, "catalog_unavailable")
    assert response.headers["retry-after"]


async def test_request_id_is_echoed_or_assigned(client: httpx.AsyncClient) -> None:
    given = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    assigned = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert assigned.headers["x-request-id"] not in ("", "bad id\twith spaces")


# --- videos ---------------------------------------------------------------------------------------
async def test_create_publishes_then_answers_202_with_location(
    client: httpx.AsyncClient, context: GatewayContext
) -> None:
    response = await client.post(
        "/v1/videos",
        json={"prompt": "a cat", "seconds": 8, "size": "1280x720"},
        headers={"X-Request-ID": "req-1"},
    )
    assert response.status_code == 202, response.text
    video = response.json()
    assert video["status"] == "queued"
    assert response.headers["location"] == f"/v1/videos/{video['id']}"
    [event] = events(context).published
    assert isinstance(event, VideoRequested)
    assert str(event.video_id) == video["id"]
    assert (event.seconds, event.size, event.model) == ("8", "1280x720", "sora-2")
    assert event.correlation_id == "req-1"


async def test_create_with_broker_down_is_503_and_publishes_nothing(
    client: httpx.AsyncClient, context: GatewayContext
) -> None:
    events(context).down = True
    assert_envelope(
        await client.post("/v1/videos", json={"prompt": "p"}), 503, "broker_unavailable"
    )
    assert events(context).published == []


async def test_create_with_unknown_upload_is_422_and_publishes_nothing(
    client: httpx.AsyncClient, context: GatewayContext
) -> None:
    for key in ("default/uploads/no/such.png", "../../etc/passwd", "/abs"):
        response = await client.post("/v1/videos", json={"prompt": "p", "reference_images": [key]})
        error = assert_envelope(response, 422, "unknown_upload")
        assert error["details"][0]["loc"] == ["body", "reference_images", 0]
    assert events(context).published == []


async def test_get_list_and_cursor(client: httpx.AsyncClient, context: GatewayContext) -> None:
    base = datetime.now(UTC)
    records = [make_record(created_at=base + timedelta(seconds=i)) for i in range(3)]
    catalog(context).records = {r.id: r for r in records}
    first = (await client.get("/v1/videos", params={"limit": 2})).json()
    assert [v["id"] for v in first["data"]] == [str(records[2].id), str(records[1].id)]
    second = await client.get("/v1/videos", params={"limit": 2, "cursor": first["next_cursor"]})
    assert [v["id"] for v in second.json()["data"]] == [str(records[0].id)]
    assert second.json()["next_cursor"] is None
    assert_envelope(
        await client.get("/v1/videos", params={"cursor": "bogus"}), 400, "invalid_cursor"
    )
    assert_envelope(await client.get("/v1/videos", params={"status": "done"}), 422)
    assert_envelope(await client.get("/v1/videos", params={"limit": 0}), 422)
    assert_envelope(await client.get(f"/v1/videos/{uuid.uuid4()}"), 404, "not_found")


async def test_video_url_only_once_stored(
    client: httpx.AsyncClient, context: GatewayContext
) -> None:
    queued = make_record()
    done = make_record(status="completed", video_bucket="videos", video_key="k/video.mp4")
    catalog(context).records = {queued.id: queued, done.id: done}
    assert (await client.get(f"/v1/videos/{queued.id}")).json()["video_url"] is None
    assert (await client.get(f"/v1/videos/{done.id}")).json()["video_url"] == (
        f"http://testserver/v1/videos/{done.id}/content"
    )


async def test_content_of_unfinished_video_is_409(
    client: httpx.AsyncClient, context: GatewayContext
) -> None:
    record = make_record(status="processing", progress=40)
    catalog(context).records = {record.id: record}
    error = assert_envelope(
        await client.get(f"/v1/videos/{record.id}/content"), 409, "video_not_ready"
    )
    assert error["details"] == {"status": "processing", "progress": 40}
    assert_envelope(await client.get(f"/v1/videos/{uuid.uuid4()}/content"), 404, "not_found")


# --- uploads --------------------------------------------------------------------------------------
async def test_upload_contract(client: httpx.AsyncClient, context: GatewayContext) -> None:
    png = image_bytes("PNG", 20, 10)
    ok = await client.post("/v1/uploads", files={"file": ("x.bin", png, "application/pdf")})
    assert ok.status_code == 201, ok.text
    assert ok.json()["content_type"] == "image/png"  # from the bytes, not the client's claim
    assert (ok.json()["width"], ok.json()["height"]) == (20, 10)
    assert_envelope(
        await client.post("/v1/uploads", files={"file": ("a.txt", b"hello")}),
        415,
        "unsupported_media_type",
    )
    assert_envelope(
        await client.post("/v1/uploads", files={"file": ("a.png", b"")}), 400, "empty_file"
    )
    too_big = b"\x89PNG\r\n\x1a\n" + b"0" * context.settings.max_upload_bytes
    assert_envelope(
        await client.post("/v1/uploads", files={"file": ("a.png", too_big)}),
        413,
        "payload_too_large",
    )
    assert_envelope(await client.post("/v1/uploads", files={"other": ("a.png", png)}), 422)


# --- seed routes ----------------------------------------------------------------------------------
async def test_seed_download_and_store_decisions(
    client: httpx.AsyncClient, context: GatewayContext
) -> None:
    now = datetime.now(UTC)
    stored = make_record(
        status="completed",
        video_bucket="videos",
        video_key="k/video.mp4",
        provider_job_id="video_1",
        openai_url="http://sim/v1/videos/video_1/content",
    )
    finished = make_record(
        status="processing",
        provider="openai",
        provider_job_id="video_2",
        openai_url="http://sim/v1/videos/video_2/content",
        expires_at=now + timedelta(hours=1),
    )
    expired = make_record(
        status="failed",
        provider_job_id="video_3",
        openai_url="http://sim/v1/videos/video_3/content",
        expires_at=now - timedelta(minutes=1),
    )
    generating = make_record(status="processing", provider_job_id="video_4")
    catalog(context).records = {r.id: r for r in (stored, finished, expired, generating)}

    async def post(record_id: uuid.UUID) -> httpx.Response:
        return await client.post("/api/download-and-store-video", json={"id": str(record_id)})

    already = await post(stored.id)
    assert already.status_code == 200, already.text
    assert already.json()["video_url"] == f"http://testserver/v1/videos/{stored.id}/content"
    assert events(context).published == []

    queued = await post(finished.id)
    assert queued.status_code == 202, queued.text
    [event] = events(context).published
    assert isinstance(event, VideoArchiveRequested)
    assert (event.video_id, event.provider_job_id, event.provider) == (
        finished.id,
        "video_2",
        "openai",
    )
    assert event.expires_at == finished.expires_at

    assert_envelope(await post(expired.id), 410, "source_expired")
    assert_envelope(await post(generating.id), 409, "video_not_ready")
    assert_envelope(await post(uuid.uuid4()), 404, "not_found")
    assert len(events(context).published) == 1


async def test_seed_check_video(client: httpx.AsyncClient, context: GatewayContext) -> None:
    failed = make_record(
        status="failed",
        error_code="moderation_blocked",
        error_message="no",
        error_stage="generation",
    )
    catalog(context).records = {failed.id: failed}
    body = (await client.post("/api/check-video", json={"id": str(failed.id)})).json()
    assert body["status"] == "failed"
    assert body["error"] == {"code": "moderation_blocked", "message": "no", "stage": "generation"}
    assert body["video_url"] is None
    assert_envelope(await client.post("/api/check-video", json={"id": "nope"}), 422)


async def test_seed_list_follows_cursors_up_to_the_cap(
    tmp_path: Path, context: GatewayContext, key: str
) -> None:
    settings = fake_settings(tmp_path, list_all_max=150)
    context.settings = settings
    base = datetime.now(UTC)
    records = [make_record(created_at=base + timedelta(seconds=i)) for i in range(160)]
    catalog(context).records = {r.id: r for r in records}
    app = create_app(settings)
    app.dependency_overrides[get_context] = lambda: context
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t",
                                 headers=auth) as c:
        body = (await c.get("/api/list-videos")).json()
    assert len(body["videos"]) == 150
    assert body["truncated"] is True
    assert body["videos"][0]["id"] == str(records[-1].id)


# --- health ---------------------------------------------------------------------------------------
async def test_readyz_reports_what_failed(
    client: httpx.AsyncClient, context: GatewayContext
) -> None:
    assert (await client.get("/readyz")).json()["checks"] == {"broker": "ok", "catalog": "ok"}
    catalog(context).down = True
    error = assert_envelope(await client.get("/readyz"), 503, "not_ready")
    assert error["details"]["checks"] == {"broker": "ok", "catalog": "unavailable"}
    assert isinstance(context.broker, FakeBroker)
    context.broker.connected = False
    error = assert_envelope(await client.get("/readyz"), 503, "not_ready")
    assert error["details"]["checks"]["broker"] == "disconnected"
    assert (await client.get("/healthz")).status_code == 200


# --- gallery and OpenAPI --------------------------------------------------------------------------
async def test_gallery_page_and_assets(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<form id="create-form"' in page.text
    assert '<form id="signin-form"' in page.text
    script = await client.get("/static/gallery.js")
    assert script.status_code == 200
    assert "/v1/videos/${video.id}/content" in script.text
    assert ".innerHTML" not in script.text
    # The key is sent once to sign in and never kept by the page.
    for keeper in ("localStorage", "sessionStorage", "document.cookie", "?key=", "Bearer"):
        assert keeper not in script.text
    assert_envelope(await client.get("/static/missing.js"), 404)


def test_openapi_documents_the_error_envelope_for_every_error_status(app: FastAPI) -> None:
    spec = app.openapi()
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas  # replaced by our envelope
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorResponse"), (method, path, status)
    assert "202" in spec["paths"]["/v1/videos"]["post"]["responses"]
    assert "307" in spec["paths"]["/v1/videos/{video_id}/content"]["get"]["responses"]
    assert "410" in spec["paths"]["/api/download-and-store-video"]["post"]["responses"]


# --- found by schemathesis ------------------------------------------------------------------------
async def test_405_lists_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    response = await client.options("/v1/videos")
    assert_envelope(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET, POST"


async def test_keys_no_storage_could_hold_are_unknown_not_500(
    client: httpx.AsyncClient, context: GatewayContext
) -> None:
    long_key = "default/uploads/" + "0" * 300 + ".png"  # a file name no filesystem allows
    response = await client.post("/v1/videos", json={"prompt": "p", "reference_images": [long_key]})
    assert_envelope(response, 422, "unknown_upload")
    seed = await client.post("/api/create-video", json={"prompt": "p", "image2_url": long_key})
    assert_envelope(seed, 422, "unknown_upload")
    assert_envelope(await client.get(f"/files/hug-images/{'a' * 300}.png"), 404, "not_found")
    assert events(context).published == []


async def test_undecodable_body_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/check-video", content=b"\xff\xfe", headers={"content-type": "application/json"}
    )
    assert response.status_code in (400, 422)
    assert_envelope(response, response.status_code)
