"""Keys, organizations, sessions, flags and quotas at the HTTP level, with in-memory adapters
(the gateway's own catalog client and authenticator over a catalog double): every route's
scope, 401/403/404 per route, isolation between organizations, the session cookie, the
flags and the 429 of a quota."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from reelvault_common.contracts.events import VideoRequested
from reelvault_common.contracts.flags import Flags
from reelvault_common.contracts.tenancy import Scope
from reelvault_gateway.app import create_app
from reelvault_gateway.context import GatewayContext
from reelvault_gateway.deps import get_context
from reelvault_gateway.flags import FixedFlags
from reelvault_gateway.routes.webhook_endpoints import get_webhook_endpoints

from tests.support.gateway_fakes import (
    SCOPED_ROUTES,
    CatalogDouble,
    FakeCatalog,
    FakeEvents,
    declared_scopes,
    fake_context,
    fake_settings,
    fake_webhook_endpoints,
    org_things,
    shown_things,
    upload_files,
)

READ = Scope.VIDEOS_READ


@dataclass
class World:
    app: FastAPI
    context: GatewayContext
    double: CatalogDouble
    acme: str  # read + write key of acme
    globex: str  # read + write key of another organization
    reader: str  # acme, videos:read only

    def client(self, key: str | None = None, **options: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        transport = httpx.ASGITransport(self.app, raise_app_exceptions=False)
        return httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                 headers=headers, **options)

    @property
    def events(self) -> FakeEvents:
        assert isinstance(self.context.events, FakeEvents)
        return self.context.events

    def set_flags(self, **flags: Any) -> None:
        self.context.flags = FixedFlags(Flags(**flags))


async def build_world(tmp_path: Path, **settings: Any) -> World:
    context = await fake_context(fake_settings(tmp_path, **settings))
    assert isinstance(context.catalog, FakeCatalog)
    double = context.catalog.double
    app = create_app(context.settings)
    app.dependency_overrides[get_context] = lambda: context
    endpoints = fake_webhook_endpoints(double)
    app.dependency_overrides[get_webhook_endpoints] = lambda: endpoints
    return World(app, context, double, double.add_key("acme"), double.add_key("globex"),
                 double.add_key("acme", [READ]))


@pytest.fixture
async def world(tmp_path: Path) -> World:
    return await build_world(tmp_path)


async def acme_things(world: World) -> dict[str, str]:
    async with world.client(world.acme) as client:
        return await org_things(client, world.context.storage, world.double, "acme")


def test_the_openapi_document_declares_each_operations_scope(world: World) -> None:
    spec = world.app.openapi()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer",
                                 "description": schemes["bearer"]["description"]}
    assert schemes["session"]["in"] == "cookie"
    operations = {(method, path.replace("{key:path}", "{key}")): operation
                  for path, methods in spec["paths"].items()
                  for method, operation in methods.items()}
    # A new operation fails here until the table says how it is scoped.
    assert set(operations) == set(SCOPED_ROUTES)
    for route, scoped in SCOPED_ROUTES.items():
        operation, scope = operations[route], scoped.scope
        assert declared_scopes(operation) == ({scope} if scope else set()), route
        if scope:  # the key or the session cookie, each with the scope
            assert operation["security"] == [{"bearer": [scope]}, {"session": [scope]}]
            assert {"401", "403"} <= set(operation["responses"]), route


async def test_every_route_401_403_and_isolation(world: World) -> None:
    things = {**await acme_things(world), "key": world.acme}
    async with (world.client() as anonymous, world.client(world.reader) as reader,
                world.client(world.globex) as other, world.client(world.acme) as owner):
        for route, scoped in SCOPED_ROUTES.items():
            scope, call = scoped.scope, scoped.call
            if scope is None:
                assert (await call(anonymous, things)).status_code < 400, route
                continue
            missing = await call(anonymous, things)
            assert missing.status_code == 401, (route, missing.text)
            assert missing.json()["error"]["code"] == "missing_credentials"
            assert missing.headers["www-authenticate"].startswith("Bearer"), route
            if scope == "videos:write":
                denied = await call(reader, things)
                assert denied.status_code == 403, (route, denied.text)
                assert denied.json()["error"]["code"] == "insufficient_scope"
            if scoped.other_org == "stream":
                continue
            answer = await call(other, things)
            if scoped.other_org == "404":
                assert answer.status_code == 404, (route, answer.text)
                assert answer.json()["error"]["code"] == "not_found"
                assert shown_things(things, answer.text) == [], route  # no hint it exists
            elif scoped.other_org == "422":
                assert answer.status_code == 422, (route, answer.text)
                assert answer.json()["error"]["code"] == "unknown_upload"
            elif scoped.other_org == "list":
                assert answer.status_code == 200, (route, answer.text)
                assert shown_things(things, answer.text) == [], route
            else:
                assert answer.status_code < 400, (route, answer.text)
            assert (await call(owner, things)).status_code < 400, route
    # Nothing globex did touched acme: its creates were all refused.
    assert {e.org for e in world.events.published if isinstance(e, VideoRequested)} <= {"acme"}


async def test_uploads_and_events_carry_the_callers_organization(world: World) -> None:
    async with world.client(world.globex) as client:
        upload = (await client.post("/v1/uploads", files=upload_files())).json()
        assert upload["key"].startswith("globex/uploads/")
        created = await client.post("/v1/videos", json={"prompt": "p",
                                                        "reference_images": [upload["key"]]})
        assert created.status_code == 202, created.text
        assert created.json()["org"] == "globex"
        seed = await client.post("/api/create-video", json={"prompt": "q",
                                                            "image1_url": upload["url"]})
        assert seed.status_code == 200, seed.text
    orgs = [event.org for event in world.events.published]
    assert orgs == ["globex", "globex"]
    assert world.double.reserved["globex"] == {uuid.UUID(created.json()["id"]),
                                               uuid.UUID(seed.json()["id"])}


@pytest.mark.parametrize(
    "header",
    [
        b"Basic dXNlcjpwYXNz",
        b"Bearer",
        b"Bearer " + b"a" * 10_000,
        b"Bearer rvk_" + "é".encode() * 8 + b"_" + b"A" * 43,
        b"Bearer rvk_0123456789abcdef_" + b"\xff" * 43,
        b"Bearer rvk_0123456789abcdef_" + b"A" * 43,  # well-formed, unknown
    ],
)
async def test_bad_headers_are_401_never_500(world: World, header: bytes) -> None:
    async with world.client() as client:
        answer = await client.get("/v1/videos", headers={"Authorization": header})
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert answer.json()["error"]["code"] == "invalid_key"


async def test_revoked_and_expired_keys_are_401(world: World) -> None:
    expired = world.double.add_key("acme", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    revoked = world.double.add_key("acme")
    world.double.revoke(revoked)
    async with world.client() as client:
        for key, code in ((expired, "key_expired"), (revoked, "key_revoked")):
            answer = await client.get("/v1/videos", headers={"Authorization": f"Bearer {key}"})
            assert answer.status_code == 401
            assert answer.json()["error"]["code"] == code


async def test_checking_a_key_costs_one_lookup_then_none(world: World) -> None:
    async with world.client(world.acme) as client:
        for _ in range(20):
            assert (await client.get("/v1/videos")).status_code == 200
    assert world.double.lookups == 1


async def test_the_catalog_unreachable_on_a_miss_is_503(world: World) -> None:
    world.double.down = True
    async with world.client(world.acme) as client:
        answer = await client.get("/v1/videos")
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "catalog_unavailable"


# --- sessions -------------------------------------------------------------------------------------
async def test_a_session_cookie_signs_the_gallery_in(world: World) -> None:
    await acme_things(world)
    async with world.client() as browser:
        wrong = await browser.post("/v1/session", json={"key": world.acme[:-1] + "x"})
        assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
        signed_in = await browser.post("/v1/session", json={"key": world.acme})
        assert signed_in.status_code == 204, signed_in.text
        cookie = signed_in.headers["set-cookie"]
        attributes = cookie.split("; ")
        assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= set(attributes)
        assert "Secure" not in attributes  # served over http here
        secret = world.acme.split("_", 2)[2]
        everything = str(signed_in.headers) + signed_in.text
        assert world.acme not in everything and secret not in everything
        who = await browser.get("/v1/session")
        assert who.status_code == 200, who.text
        assert who.json()["org"] == "acme" and who.json()["via"] == "session"
        assert set(who.json()["scopes"]) == {"videos:read", "videos:write"}
        assert world.acme not in who.text and secret not in who.text
        listed = await browser.get("/v1/videos")
        # Done, generating and the spare (failed) one.
        assert listed.status_code == 200 and len(listed.json()["data"]) == 3
        signed_out = await browser.delete("/v1/session")
        assert signed_out.status_code == 204
        assert "Max-Age=0" in signed_out.headers["set-cookie"]
        assert (await browser.get("/v1/videos")).status_code == 401


async def test_revoking_the_key_ends_its_sessions(world: World) -> None:
    async with world.client() as browser:
        assert (await browser.post("/v1/session", json={"key": world.acme})).status_code == 204
        assert (await browser.get("/v1/videos")).status_code == 200
        public_id = world.double.revoke(world.acme)
        world.context.auth.keys.on_message(public_id.encode())  # the catalog's word
        answer = await browser.get("/v1/videos")
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "key_revoked"


async def test_a_tampered_cookie_is_401_and_a_header_wins_over_a_cookie(world: World) -> None:
    async with world.client() as browser:
        await browser.post("/v1/session", json={"key": world.reader})
        value = browser.cookies["reelvault_session"]
        browser.cookies.set("reelvault_session", value[:-2] + ("AA" if value[-2:] != "AA"
                                                               else "BB"))
        answer = await browser.get("/v1/videos")
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "invalid_session"
        browser.cookies.set("reelvault_session", value)
        # The reader's session, but the request names the writer's key: the key decides.
        created = await browser.post("/v1/videos", json={"prompt": "p"},
                                     headers={"Authorization": f"Bearer {world.acme}"})
        assert created.status_code == 202
        from_gallery = {"Origin": "http://testserver"}
        denied = await browser.post("/v1/videos", json={"prompt": "p"}, headers=from_gallery)
        assert denied.status_code == 403  # the reader's session has no videos:write


async def test_a_session_makes_changes_only_from_the_gallerys_origin(world: World) -> None:
    async with world.client() as browser:
        assert (await browser.post("/v1/session", json={"key": world.acme})).status_code == 204
        assert (await browser.get("/v1/videos")).status_code == 200  # reads need no Origin
        for origin in (None, "https://evil.example", "null"):
            headers = {"Origin": origin} if origin else {}
            answer = await browser.post("/v1/uploads", files=upload_files(), headers=headers)
            assert answer.status_code == 401, (origin, answer.text)
            assert answer.json()["error"]["code"] == "invalid_session"
            assert answer.headers["www-authenticate"].startswith("Bearer")
        same = await browser.post("/v1/uploads", files=upload_files(),
                                  headers={"Origin": "http://testserver"})
        assert same.status_code == 201, same.text
    assert world.events.published == []


async def test_cookies_are_secure_behind_https(tmp_path: Path) -> None:
    world = await build_world(tmp_path, public_base_url="https://videos.example")
    async with world.client() as browser:
        answer = await browser.post("/v1/session", json={"key": world.acme})
    assert "Secure" in answer.headers["set-cookie"].split("; ")


# --- flags ----------------------------------------------------------------------------------------
async def test_maintenance_refuses_writes_only(world: World) -> None:
    things = await acme_things(world)
    world.set_flags(maintenance=True)
    async with world.client(world.acme) as client:
        for route, scoped in SCOPED_ROUTES.items():
            if scoped.other_org == "stream":
                continue  # a read: maintenance leaves it alone
            answer = await scoped.call(client, {**things, "key": world.acme})
            if scoped.scope == "videos:write":
                assert answer.status_code == 503, (route, answer.text)
                assert answer.json()["error"]["code"] == "maintenance"
                assert int(answer.headers["retry-after"]) > 0
            else:
                assert answer.status_code < 400, (route, answer.text)
    assert world.events.published == []


async def test_a_whitelist_refuses_creates_of_other_organizations(world: World) -> None:
    world.set_flags(whitelist=("globex",))
    async with world.client(world.acme) as acme, world.client(world.globex) as globex:
        for path in ("/v1/videos", "/api/create-video"):
            refused = await acme.post(path, json={"prompt": "p"})
            assert refused.status_code == 403, refused.text
            assert refused.json()["error"]["code"] == "not_whitelisted"
            assert (await globex.post(path, json={"prompt": "p"})).status_code < 400
        assert (await acme.post("/v1/uploads", files=upload_files())).status_code == 201
    assert [event.org for event in world.events.published] == ["globex", "globex"]


async def test_coming_soon_changes_the_gallery_page_only(world: World) -> None:
    async with world.client(world.acme) as client:
        gallery = (await client.get("/")).text
        world.set_flags(coming_soon=True)
        holding = await client.get("/")
        assert holding.status_code == 200 and holding.text != gallery
        assert "Coming soon" in holding.text
        assert (await client.post("/v1/videos", json={"prompt": "p"})).status_code == 202


# --- quotas ---------------------------------------------------------------------------------------
async def test_a_used_up_quota_is_a_429_and_nothing_is_requested(world: World) -> None:
    world.double.limits["acme"] = 1
    async with world.client(world.acme) as client:
        assert (await client.post("/v1/videos", json={"prompt": "one"})).status_code == 202
        refused = await client.post("/v1/videos", json={"prompt": "two"})
        usage = await client.get("/v1/usage")
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert error["code"] == "quota_exceeded" and error["message"]
    assert error["details"]["quota"] == "videos_per_month"
    assert (error["details"]["used"], error["details"]["limit"]) == (1, 1)
    resets_at = datetime.fromisoformat(error["details"]["resets_at"])
    retry_after = int(refused.headers["retry-after"])
    assert abs((datetime.now(UTC) + timedelta(seconds=retry_after) - resets_at).total_seconds()) < 5
    assert len(world.events.published) == 1
    assert usage.status_code == 200, usage.text
    assert usage.json()["org"] == "acme"
    assert usage.json()["quotas"] == [{"quota": "videos_per_month", "used": 1, "limit": 1,
                                       "resets_at": error["details"]["resets_at"]
                                       .replace("+00:00", "Z")}]


async def test_a_failed_publish_gives_the_reservation_back_unless_it_will_be_retried(
    world: World,
) -> None:
    world.events.down = True
    async with world.client(world.acme) as client:
        failed = await client.post("/v1/videos", json={"prompt": "p"})
        assert failed.status_code == 503
        assert len(world.double.released) == 1
        assert world.double.reserved["acme"] == set()
        keyed = await client.post("/v1/videos", json={"prompt": "p"},
                                  headers={"Idempotency-Key": "retry-me"})
        assert keyed.status_code == 503
        assert len(world.double.released) == 1  # kept: the retry republishes this video
        world.events.down = False
        retried = await client.post("/v1/videos", json={"prompt": "p"},
                                    headers={"Idempotency-Key": "retry-me"})
    assert retried.status_code == 202, retried.text
    assert world.double.reserved["acme"] == {uuid.UUID(retried.json()["id"])}


async def test_idempotency_keys_are_scoped_per_organization(world: World) -> None:
    headers = {"Idempotency-Key": "order-1"}
    async with world.client(world.acme) as acme, world.client(world.globex) as globex:
        first = await acme.post("/v1/videos", json={"prompt": "p"}, headers=headers)
        other = await globex.post("/v1/videos", json={"prompt": "p"}, headers=headers)
        again = await acme.post("/v1/videos", json={"prompt": "p"}, headers=headers)
    assert first.status_code == other.status_code == again.status_code == 202
    assert other.json()["id"] != first.json()["id"]
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in other.headers
