"""Keys over the real broker: the gateway checks them with a catalog double answering the
catalog's subjects on NATS (lookups, reads, quota reservations). Every route's 401/403/404, a
revocation announced on ``key_changes``, the 429 of a quota and the session cookie."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from gateway_harness import RunningGateway, StreamProbe, bearer, storage_of
from reelvault_common.contracts.tenancy import Scope

from tests.support.gateway_fakes import (
    SCOPED_ROUTES,
    CatalogDouble,
    ServedDouble,
    org_things,
    shown_things,
)

pytestmark = pytest.mark.integration


async def test_every_route_answers_401_403_404_per_key(
    gateway: RunningGateway, double: CatalogDouble, tmp_path: Path
) -> None:
    acme, globex = double.add_key("acme"), double.add_key("globex")
    reader = double.add_key("acme", [Scope.VIDEOS_READ])
    async with gateway.client_for(acme) as owner:
        things = await org_things(owner, storage_of(gateway.settings), double, "acme")
    things["key"] = acme
    async with (gateway.client_for(None) as anonymous, gateway.client_for(reader) as read_only,
                gateway.client_for(globex) as other, gateway.client_for(acme) as owner):
        for route, scoped in SCOPED_ROUTES.items():
            if scoped.scope is None:
                assert (await scoped.call(anonymous, things)).status_code < 400, route
                continue
            missing = await scoped.call(anonymous, things)
            assert missing.status_code == 401, (route, missing.text)
            assert missing.headers["www-authenticate"].startswith("Bearer"), route
            if scoped.scope == "videos:write":
                denied = await scoped.call(read_only, things)
                assert denied.status_code == 403, (route, denied.text)
                assert denied.json()["error"]["code"] == "insufficient_scope"
            if scoped.other_org == "stream":
                continue
            answer = await scoped.call(other, things)
            expected = {"404": 404, "422": 422}.get(scoped.other_org)
            if expected is not None:
                assert answer.status_code == expected, (route, answer.text)
                assert shown_things(things, answer.text) == [], route
            elif scoped.other_org == "list":
                assert answer.status_code == 200, (route, answer.text)
                assert shown_things(things, answer.text) == [], route
            else:
                assert answer.status_code < 400, (route, answer.text)
            assert (await scoped.call(owner, things)).status_code < 400, (route, scoped)


async def test_an_announced_revocation_is_refused_at_once(
    gateway: RunningGateway, served: ServedDouble
) -> None:
    client = gateway.client
    assert (await client.get("/v1/videos")).status_code == 200  # now cached
    assert gateway.key is not None
    await served.revoke(gateway.key)
    started = time.monotonic()
    while (answer := await client.get("/v1/videos")).status_code != 401:
        assert time.monotonic() - started < 1.0, "the announcement did not reach the cache"
        await asyncio.sleep(0.01)
    assert answer.json()["error"]["code"] == "key_revoked"


async def test_a_used_up_quota_is_a_429_with_its_details(
    gateway: RunningGateway, double: CatalogDouble, stream: StreamProbe
) -> None:
    double.limits["default"] = 2
    client = gateway.client
    for prompt in ("one", "two"):
        assert (await client.post("/v1/videos", json={"prompt": prompt})).status_code == 202
    refused = await client.post("/v1/videos", json={"prompt": "three"})
    assert refused.status_code == 429, refused.text
    body = refused.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == "quota_exceeded"
    details = body["error"]["details"]
    assert set(details) == {"quota", "used", "limit", "resets_at"}
    assert (details["quota"], details["used"], details["limit"]) == ("videos_per_month", 2, 2)
    assert int(refused.headers["retry-after"]) >= 1
    assert await stream.count() == 2  # nothing published for the refused one
    seed = await client.post("/api/create-video", json={"prompt": "four"})
    assert seed.status_code == 429
    usage = (await client.get("/v1/usage")).json()
    assert usage["quotas"][0]["used"] == 2 and usage["quotas"][0]["limit"] == 2


async def test_the_session_cookie_holds_no_key(gateway: RunningGateway) -> None:
    assert gateway.key is not None
    secret = gateway.key.split("_", 2)[2]  # the secret itself may hold "_"
    async with gateway.client_for(None) as browser:
        signed_in = await browser.post("/v1/session", json={"key": gateway.key})
        assert signed_in.status_code == 204, signed_in.text
        cookie = signed_in.headers["set-cookie"]
        assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= set(cookie.split("; "))
        for leaked in (gateway.key, secret):
            assert leaked not in cookie and leaked not in str(signed_in.headers)
        who = await browser.get("/v1/session")
        assert who.status_code == 200 and who.json()["org"] == "default"
        assert secret not in who.text
        assert (await browser.get("/v1/videos")).status_code == 200
        # The key itself, sent as a header by the browser, is not needed any more.
        assert "authorization" not in {name.lower() for name in browser.headers}


async def test_bearer_header_shapes_over_the_wire(gateway: RunningGateway) -> None:
    assert gateway.key is not None
    async with gateway.client_for(None) as client:
        for header in (f"bearer   {gateway.key}", f"BEARER {gateway.key}"):
            answer = await client.get("/v1/videos", headers={"Authorization": header})
            assert answer.status_code == 200, header
        for header in (f"Basic {gateway.key}", f"Bearer {gateway.key}x", "Bearer " + "a" * 7000):
            answer = await client.get("/v1/videos", headers={"Authorization": header})
            assert answer.status_code == 401, header
        doubled = await client.get("/v1/videos", headers=[
            ("Authorization", f"Bearer {gateway.key}"), ("Authorization", "Bearer x")])
        assert doubled.status_code == 401
        assert (await client.get("/v1/videos", headers=bearer(gateway.key))).status_code == 200
