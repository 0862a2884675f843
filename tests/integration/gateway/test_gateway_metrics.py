"""The gateway's ``/metrics``: no key needed, not in the OpenAPI document; request durations
labelled by route template (never the raw path), and the bytes ``/files`` serves."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from gateway_harness import RunningGateway, storage_of
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration

VIDEO = bytes(range(256)) * 64
KEY = "default/2026/01/abc/video.mp4"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def scrape(client: httpx.AsyncClient) -> Samples:
    reply = await client.get("/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests(samples: Samples, route: str, status: str, method: str = "GET") -> float:
    return value(samples, "reelvault_http_request_duration_seconds_count",
                 route=route, method=method, status=status)


async def test_metrics_need_no_key_and_stay_out_of_the_openapi_document(
    gateway: RunningGateway,
) -> None:
    anonymous = gateway.client_for(None)
    async with anonymous:
        first = await scrape(anonymous)
        schema = (await anonymous.get("/openapi.json")).json()
        second = await scrape(anonymous)
    assert "/metrics" not in schema["paths"]
    assert requests(second, "/metrics", "200") == requests(first, "/metrics", "200") + 1
    assert requests(second, "/openapi.json", "200") == requests(first, "/openapi.json", "200") + 1


async def test_requests_are_timed_by_route_template_and_files_count_egress(
    gateway: RunningGateway,
) -> None:
    storage = storage_of(gateway.settings)
    await storage.put("videos", KEY, _once(VIDEO), "video/mp4")
    url = await storage.signed_url("videos", KEY, 60)
    missing = uuid.uuid4()
    before = await scrape(gateway.client)

    assert (await gateway.client.get("/v1/videos")).status_code == 200
    assert (await gateway.client.get(f"/v1/videos/{missing}")).status_code == 404
    assert (await gateway.client.get(f"/no/such/route/{missing}")).status_code == 404
    whole = await gateway.client.get(url)
    assert whole.status_code == 200
    part = await gateway.client.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    # Refused downloads send nothing that counts.
    assert (await gateway.client.get(f"/files/videos/{KEY}")).status_code == 403
    after = await scrape(gateway.client)

    def grew(route: str, status: str) -> float:
        return requests(after, route, status) - requests(before, route, status)

    assert grew("/v1/videos", "200") == 1
    assert grew("/v1/videos/{video_id}", "404") == 1
    assert grew("unmatched", "404") == 1
    assert grew("/files/{bucket}/{key:path}", "200") == 1
    assert grew("/files/{bucket}/{key:path}", "206") == 1
    assert grew("/files/{bucket}/{key:path}", "403") == 1
    egress = (value(after, "reelvault_egress_bytes_total", bucket="videos")
              - value(before, "reelvault_egress_bytes_total", bucket="videos"))
    assert egress == len(VIDEO) + 100
    # Only templates and known values in the labels: no ids, no keys, no query strings.
    routes = {dict(labels).get("route") for name, labels in after
              if name.startswith("reelvault_http_request_duration_seconds")}
    assert not any(str(missing) in (route or "") or KEY in (route or "") for route in routes)
    buckets = {dict(labels)["bucket"] for name, labels in after
               if name == "reelvault_egress_bytes_total"}
    assert buckets <= {"videos", "thumbnails", "hug-images", "brand-kits"}
