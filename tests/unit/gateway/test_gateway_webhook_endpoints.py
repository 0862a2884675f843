"""``/v1/webhook-endpoints`` at the HTTP level, with the gateway's own client over the catalog
double: the secret shown once, refused URLs and event types as 422s, the delivery log, a
replay, deletion, and a catalog that does not answer."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from reelvault_gateway.app import create_app
from reelvault_gateway.deps import get_context
from reelvault_gateway.routes.webhook_endpoints import get_webhook_endpoints

from tests.support.gateway_fakes import (
    NEW_ENDPOINT,
    CatalogDouble,
    FakeCatalog,
    fake_context,
    fake_settings,
    fake_webhook_endpoints,
)


@pytest.fixture
async def double_and_client(tmp_path: Path
                            ) -> AsyncIterator[tuple[CatalogDouble, httpx.AsyncClient]]:
    context = await fake_context(fake_settings(tmp_path))
    assert isinstance(context.catalog, FakeCatalog)
    double = context.catalog.double
    app = create_app(context.settings)
    app.dependency_overrides[get_context] = lambda: context
    endpoints = fake_webhook_endpoints(double)
    app.dependency_overrides[get_webhook_endpoints] = lambda: endpoints
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    headers = {"Authorization": f"Bearer {double.add_key('acme')}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                 headers=headers) as client:
        yield double, client


async def test_the_secret_is_shown_once_and_never_listed(
    double_and_client: tuple[CatalogDouble, httpx.AsyncClient],
) -> None:
    double, client = double_and_client
    created = await client.post("/v1/webhook-endpoints", json={
        **NEW_ENDPOINT, "event_types": ["video.failed", "video.completed", "video.failed"],
        "description": "ops"})
    assert created.status_code == 201, created.text
    body = created.json()
    endpoint_id = body["id"]
    assert body["secret"].startswith("whsec_")
    assert body["secret"] == double.webhook_secrets[uuid.UUID(endpoint_id)]
    assert body["event_types"] == ["video.failed", "video.completed"]
    assert (body["object"], body["enabled"], body["description"]) == (
        "webhook_endpoint", True, "ops")
    assert "org" not in body
    listed = await client.get("/v1/webhook-endpoints")
    one = await client.get(f"/v1/webhook-endpoints/{endpoint_id}")
    for answer in (listed, one):
        assert answer.status_code == 200, answer.text
        assert "secret" not in answer.text and body["secret"] not in answer.text
    assert [e["id"] for e in listed.json()["data"]] == [endpoint_id]
    assert one.json()["url"] == NEW_ENDPOINT["url"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"url": "http://hooks.example.com/in", "event_types": ["video.completed"]}, "url"),
        ({"url": "https://u:p@hooks.example.com/in", "event_types": ["video.completed"]},
         "url"),
        ({"url": "https://hooks.example.com/in", "event_types": ["video.started"]},
         "event_types"),
        ({"url": "https://hooks.example.com/in", "event_types": []}, "event_types"),
        ({"url": "", "event_types": ["video.completed"]}, "url"),
    ],
)
async def test_refused_urls_and_event_types_are_422_naming_the_field(
    double_and_client: tuple[CatalogDouble, httpx.AsyncClient], payload: dict[str, object],
    field: str,
) -> None:
    double, client = double_and_client
    answer = await client.post("/v1/webhook-endpoints", json=payload)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "validation_error"
    assert any(detail["loc"][-1] == field or field in detail["loc"]
               for detail in error["details"]), error
    assert "u:p@" not in answer.text  # credentials are never echoed
    assert double.webhook_endpoints == {}


async def test_the_delivery_log_a_replay_and_deletion(
    double_and_client: tuple[CatalogDouble, httpx.AsyncClient],
) -> None:
    double, client = double_and_client
    endpoint_id = (await client.post("/v1/webhook-endpoints", json=NEW_ENDPOINT)).json()["id"]
    failed = double.record_delivery(uuid.UUID(endpoint_id))
    log = await client.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries", params={"limit": 5})
    assert log.status_code == 200, log.text
    [entry] = log.json()["data"]
    assert (entry["id"], entry["status"], entry["last_response_code"]) == (
        str(failed.id), "failed", 500)
    replayed = await client.post(
        f"/v1/webhook-endpoints/{endpoint_id}/deliveries/{failed.id}/replay")
    assert replayed.status_code == 202, replayed.text
    assert (replayed.json()["id"], replayed.json()["status"]) == (str(failed.id), "pending")
    unknown = await client.post(
        f"/v1/webhook-endpoints/{endpoint_id}/deliveries/{uuid.uuid4()}/replay")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    too_many = await client.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries",
                                params={"limit": 201})
    assert too_many.status_code == 422

    deleted = await client.delete(f"/v1/webhook-endpoints/{endpoint_id}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"object": "webhook_endpoint", "id": endpoint_id, "deleted": True}
    assert double.webhook_deliveries == {}  # its log went with it
    for path in (f"/v1/webhook-endpoints/{endpoint_id}",
                 f"/v1/webhook-endpoints/{endpoint_id}/deliveries"):
        gone = await client.get(path)
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
    again = await client.delete(f"/v1/webhook-endpoints/{endpoint_id}")
    assert again.status_code == 404


async def test_a_catalog_that_does_not_answer_is_503(
    double_and_client: tuple[CatalogDouble, httpx.AsyncClient],
) -> None:
    double, client = double_and_client
    assert (await client.get("/v1/webhook-endpoints")).status_code == 200  # key now cached
    double.down = True
    for answer in (await client.get("/v1/webhook-endpoints"),
                   await client.post("/v1/webhook-endpoints", json=NEW_ENDPOINT)):
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "catalog_unavailable"
