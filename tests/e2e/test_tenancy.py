"""Organizations, keys, quotas and flags on the whole system (``reelvault up``), driven as an
operator (the ``reelvault`` commands, from the folder the system runs in, with no settings)
and as clients of two organizations.

The route table covers every operation of the OpenAPI document: a new route fails here until
it says how it is scoped."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from tests.support.media import png_bytes
from tests.support.service_process import service_process
from tests.support.sse import stream_opens
from tests.support.system import (
    RunningSystem,
    reelvault_up,
    stop_cleanly,
    system_env,
    wait_for_status,
)

pytestmark = pytest.mark.e2e

# Settings the operator commands must not need: they find the system through its data folder.
SYSTEM_VARIABLES = ("NATS_URL", "REELVAULT_NAMESPACE", "DATABASE_URL")


@pytest.fixture
def system(
    tmp_path: Path, nats_url: str, database_url: str, namespace: str
) -> Iterator[RunningSystem]:
    env = system_env(nats_url, database_url, namespace, PROVIDER_SIM_GENERATION_S="1")
    # The default data folder (.reelvault) of a "project folder", as `make run` uses it.
    with reelvault_up(tmp_path / ".reelvault", env, cwd=tmp_path) as running:
        yield running
        stop_cleanly(running)


def cli(system: RunningSystem, *args: str) -> subprocess.CompletedProcess[str]:
    """``reelvault ARGS`` in the system's project folder, without any system setting."""
    env = {k: v for k, v in os.environ.items() if k not in SYSTEM_VARIABLES}
    return subprocess.run(
        [str(Path(sys.executable).parent / "reelvault"), *args],
        cwd=system.data_dir.parent, env=env, capture_output=True, text=True, timeout=60,
    )


def cli_ok(system: RunningSystem, *args: str) -> str:
    done = cli(system, *args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def cli_refuses(system: RunningSystem, *args: str) -> str:
    """The command fails with exactly one line on standard error."""
    done = cli(system, *args)
    assert done.returncode != 0, (args, done.stdout)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("reelvault: "), (args, done.stderr)
    return lines[0]


def new_key(system: RunningSystem, org: str, *scopes: str) -> str:
    args = ["keys", "create", "--org", org, "--name", f"{org} test"]
    for scope in scopes:
        args += ["--scope", scope]
    key = cli_ok(system, *args).strip().splitlines()[-1]
    assert key.startswith("rvk_"), key
    return key


# --- the route table -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Route:
    """How to call one operation against organization A's things, and what it needs."""

    scope: str | None  # None: public (no credentials)
    call: Callable[[httpx.Client, dict[str, str]], httpx.Response]
    # Asked with another organization's key: "404" (names A's thing), "list" (must not show
    # A's things), "422" (references A's upload) or "own" (acts on the caller's own things).
    other_org: str = "own"


def _image() -> dict[str, Any]:
    return {"file": ("a.png", png_bytes(32, 32, (9, 9, 9)), "image/png")}


def _acme_webhook(client: httpx.Client, a: dict[str, str]) -> str:
    """Organization A's webhook endpoint (made once, with A's key): the thing other callers
    must not reach. The system is a dev deployment, so a loopback URL is accepted."""
    if "webhook_endpoint_id" not in a:
        made = httpx.post(client.base_url.join("/v1/webhook-endpoints"), timeout=30,
                          headers={"Authorization": f"Bearer {a['key']}"},
                          json={"url": "http://127.0.0.1:9/acme", "event_types": ["video.failed"]})
        assert made.status_code == 201, made.text
        a["webhook_endpoint_id"] = made.json()["id"]
    return a["webhook_endpoint_id"]


ROUTES: dict[tuple[str, str], Route] = {
    ("post", "/v1/videos"): Route("videos:write", lambda c, a: c.post(
        "/v1/videos", json={"prompt": "p", "reference_images": [a["upload_key"]]}), "422"),
    ("get", "/v1/videos"): Route("videos:read", lambda c, a: c.get("/v1/videos"), "list"),
    ("get", "/v1/videos/{video_id}"): Route(
        "videos:read", lambda c, a: c.get(f"/v1/videos/{a['video_id']}"), "404"),
    ("delete", "/v1/videos/{video_id}"): Route(
        "videos:write", lambda c, a: c.delete(f"/v1/videos/{a['video_id']}"), "404"),
    ("get", "/v1/videos/{video_id}/content"): Route(
        "videos:read", lambda c, a: c.get(f"/v1/videos/{a['video_id']}/content"), "404"),
    ("post", "/v1/uploads"): Route("videos:write", lambda c, a: c.post(
        "/v1/uploads", files=_image())),
    ("get", "/v1/usage"): Route("videos:read", lambda c, a: c.get("/v1/usage")),
    ("get", "/v1/models"): Route("videos:read", lambda c, a: c.get("/v1/models")),
    ("post", "/v1/videos/{video_id}/cancel"): Route(
        "videos:write", lambda c, a: c.post(f"/v1/videos/{a['video_id']}/cancel"), "404"),
    ("get", "/v1/events"): Route("videos:read", lambda c, a: stream_opens(c, "/v1/events")),
    ("post", "/api/upload"): Route("videos:write", lambda c, a: c.post(
        "/api/upload", files=_image())),
    ("post", "/api/create-video"): Route("videos:write", lambda c, a: c.post(
        "/api/create-video", json={"prompt": "p", "image1_url": a["upload_url"]}), "422"),
    ("post", "/api/check-video"): Route("videos:read", lambda c, a: c.post(
        "/api/check-video", json={"id": a["video_id"]}), "404"),
    ("post", "/api/download-and-store-video"): Route("videos:write", lambda c, a: c.post(
        "/api/download-and-store-video", json={"id": a["video_id"]}), "404"),
    ("get", "/api/list-videos"): Route("videos:read", lambda c, a: c.get("/api/list-videos"),
                                       "list"),
    ("get", "/healthz"): Route(None, lambda c, a: c.get("/healthz")),
    ("get", "/readyz"): Route(None, lambda c, a: c.get("/readyz")),
    ("get", "/"): Route(None, lambda c, a: c.get("/")),
    ("get", "/files/{bucket}/{key}"): Route(None, lambda c, a: c.get(a["thumbnail_path"])),
    ("post", "/v1/session"): Route(None, lambda c, a: c.post("/v1/session",
                                                            json={"key": a["key"]})),
    ("get", "/v1/session"): Route("videos:read", lambda c, a: c.get("/v1/session")),
    ("delete", "/v1/session"): Route(None, lambda c, a: c.delete("/v1/session")),
    ("post", "/v1/webhook-endpoints"): Route("videos:write", lambda c, a: c.post(
        "/v1/webhook-endpoints", json={"url": "http://127.0.0.1:9/hook",
                                       "event_types": ["video.completed"]})),
    ("get", "/v1/webhook-endpoints"): Route("videos:read", lambda c, a: c.get(
        "/v1/webhook-endpoints"), "list"),
    ("get", "/v1/webhook-endpoints/{endpoint_id}"): Route("videos:read", lambda c, a: c.get(
        f"/v1/webhook-endpoints/{_acme_webhook(c, a)}"), "404"),
    ("delete", "/v1/webhook-endpoints/{endpoint_id}"): Route("videos:write", lambda c, a: c.delete(
        f"/v1/webhook-endpoints/{_acme_webhook(c, a)}"), "404"),
    ("get", "/v1/webhook-endpoints/{endpoint_id}/deliveries"): Route(
        "videos:read", lambda c, a: c.get(
            f"/v1/webhook-endpoints/{_acme_webhook(c, a)}/deliveries"), "404"),
    ("post", "/v1/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/replay"): Route(
        "videos:write", lambda c, a: c.post(
            f"/v1/webhook-endpoints/{_acme_webhook(c, a)}/deliveries/{a['video_id']}/replay"),
        "404"),
}


def operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            if method in ("get", "post", "put", "patch", "delete"):
                found[(method, path.replace("{key:path}", "{key}"))] = operation
    return found


def declared_scope(spec: dict[str, Any], operation: dict[str, Any]) -> str | None:
    requirements = operation.get("security", spec.get("security", []))
    scopes = {scope for requirement in requirements for held in requirement.values()
              for scope in held}
    if not requirements:
        return None
    assert len(scopes) == 1, operation
    return scopes.pop()


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, (response.request.url, response.text)
    body = response.json()
    assert body["error"]["message"], body
    if code is not None:
        assert body["error"]["code"] == code, body


def _org_a_things(client: httpx.Client) -> dict[str, str]:
    upload = client.post("/v1/uploads", files=_image())
    assert upload.status_code == 201, upload.text
    created = client.post("/v1/videos", json={"prompt": "acme's secret launch film",
                                              "reference_images": [upload.json()["key"]]})
    assert created.status_code == 202, created.text
    video = wait_for_status(client, created.json()["id"], {"completed"})
    thumbnail = client.get(f"/v1/videos/{video['id']}/content",
                           params={"variant": "thumbnail"})
    assert thumbnail.status_code == 307, thumbnail.text
    return {
        "upload_key": upload.json()["key"],
        "upload_url": upload.json()["url"],
        "video_id": video["id"],
        "thumbnail_path": httpx.URL(thumbnail.headers["location"]).raw_path.decode(),
    }


def test_every_route_is_scoped_to_the_callers_organization(system: RunningSystem) -> None:
    for slug in ("acme", "globex"):
        assert cli_ok(system, "orgs", "create", slug).startswith(f"created organization {slug}")
    acme, globex = new_key(system, "acme"), new_key(system, "globex")
    acme_reader = new_key(system, "acme", "videos:read")

    with system.client(acme) as a_client:
        a = {**_org_a_things(a_client), "key": acme}
        spec = a_client.get("/openapi.json").json()
    assert "bearer" in json.dumps(spec["components"]["securitySchemes"]).lower()

    ops = operations(spec)
    assert set(ops) == set(ROUTES), (
        "routes without a row in the table (add one saying how they are scoped): "
        f"{sorted(set(ops) - set(ROUTES))}; rows without a route: {sorted(set(ROUTES) - set(ops))}")
    anonymous = httpx.Client(base_url=system.gateway, timeout=30)
    with anonymous, system.client(globex) as other, system.client(acme_reader) as reader:
        for (method, path), route in sorted(ROUTES.items()):
            assert declared_scope(spec, ops[(method, path)]) == route.scope, (method, path)
            if route.scope is None:
                assert route.call(anonymous, a).status_code < 400, (method, path)
                continue
            missing = route.call(anonymous, a)
            assert_error(missing, 401)
            assert missing.headers["www-authenticate"].lower().startswith("bearer"), path
            if route.scope == "videos:write":
                assert_error(route.call(reader, a), 403, "insufficient_scope")
            answer = route.call(other, a)
            if route.other_org == "404":
                assert_error(answer, 404, "not_found")
                assert a["video_id"] not in answer.text
            elif route.other_org == "422":
                assert_error(answer, 422, "unknown_upload")
            elif route.other_org == "list":
                assert answer.status_code == 200 and a["video_id"] not in answer.text
            else:
                assert answer.status_code < 400, (method, path, answer.text)


def test_bad_credentials_get_a_401_and_never_a_500(system: RunningSystem) -> None:
    key = system.api_key
    public_id = key.split("_")[1]
    cases = {
        "none": {},
        "basic": {"Authorization": "Basic dXNlcjpwYXNz"},
        "scheme alone": {"Authorization": "Bearer"},
        "wrong prefix": {"Authorization": "Bearer " + key.replace("rvk_", "sk_", 1)},
        "truncated": {"Authorization": f"Bearer {key[:-1]}"},
        "unknown key": {"Authorization": f"Bearer rvk_{public_id}_{'A' * 43}"},
        "unknown id": {"Authorization": f"Bearer rvk_{'0' * 16}_{'A' * 43}"},
        "lowercase scheme, extra spaces": {"Authorization": f"bearer   {key}x"},
        "huge": {"Authorization": "Bearer " + "a" * 7000},
    }
    with httpx.Client(base_url=system.gateway, timeout=30) as client:
        for name, headers in cases.items():
            answer = client.get("/v1/videos", headers=headers)
            assert answer.status_code == 401, (name, answer.status_code, answer.text)
            assert answer.headers["www-authenticate"].lower().startswith("bearer"), name
            assert answer.json()["error"]["code"], name
        assert client.get("/v1/videos", headers=system.auth).status_code == 200


def test_operator_commands_refuse_bad_input_with_one_line(system: RunningSystem) -> None:
    cli_ok(system, "orgs", "create", "initech", "--name", "Initech")
    assert "exists already" in cli_refuses(system, "orgs", "create", "initech")
    for slug in ("In", "UPPER", "with_underscore", "-leading", "a" * 41):
        assert "slug" in cli_refuses(system, "orgs", "create", slug)
    cli_refuses(system, "keys", "create", "--org", "no-such-org")
    cli_refuses(system, "keys", "create", "--org", "initech", "--scope", "root")
    cli_refuses(system, "flags", "set", "turbo", "on")
    cli_refuses(system, "quotas", "set", "--org", "initech", "--videos-per-month", "-3")
    cli_refuses(system, "keys", "revoke", "rvk_0000000000000000_" + "A" * 43)

    key = new_key(system, "initech")
    listing = cli_ok(system, "keys", "list", "--org", "initech")
    assert key.split("_")[1] in listing and key not in listing
    orgs = cli_ok(system, "orgs", "list")
    assert {"default", "initech"} <= {line.split()[0] for line in orgs.splitlines()[1:]}


async def _create(client: httpx.AsyncClient, gateway: str, index: int) -> httpx.Response:
    return await client.post(f"{gateway}/v1/videos", json={"prompt": f"quota race {index}"})


async def _quota_race(gateways: list[str], key: str) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60,
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        return await asyncio.gather(*(
            _create(client, gateways[i % len(gateways)], i) for i in range(50)))


async def _collect_quota_events(nats_url: str, namespace: str, seen: list[dict[str, Any]],
                                stop: asyncio.Event) -> None:
    connection = await nats.connect(nats_url)
    try:
        async def on_event(msg: Any) -> None:
            seen.append(json.loads(msg.data))

        await connection.subscribe(f"{namespace}.events.acme.org.quota.>", cb=on_event)
        await stop.wait()
    finally:
        await connection.close()


def _second_gateway_env(system: RunningSystem, nats_url: str, namespace: str,
                        port: int) -> dict[str, str]:
    return {
        "NATS_URL": nats_url,
        "REELVAULT_NAMESPACE": namespace,
        "REELVAULT_GATEWAY_PORT": str(port),
        "REELVAULT_STORAGE_DIR": str(system.data_dir / "storage"),
        "REELVAULT_PUBLIC_BASE_URL": system.gateway,
    }


async def test_quota_admits_exactly_the_limit_across_two_gateways_and_revocation_reaches_both(
    system: RunningSystem, nats_url: str, namespace: str, tmp_path: Path
) -> None:
    from reelvault.embedded import free_port

    cli_ok(system, "orgs", "create", "acme")
    key = new_key(system, "acme")
    cli_ok(system, "quotas", "set", "--org", "acme", "--videos-per-month", "10")
    port = free_port()
    env = _second_gateway_env(system, nats_url, namespace, port)
    async with service_process("gateway-2", "reelvault_gateway", env, tmp_path / "logs") as two:
        second = f"http://127.0.0.1:{port}"
        await two.wait_http(f"{second}/readyz")
        seen: list[dict[str, Any]] = []
        stop = asyncio.Event()
        listener = asyncio.create_task(_collect_quota_events(nats_url, namespace, seen, stop))
        await asyncio.sleep(0.5)
        answers = await _quota_race([system.gateway, second], key)
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [202] * 10 + [429] * 40, statuses
        refused = next(answer for answer in answers if answer.status_code == 429)
        assert refused.json()["error"]["code"] == "quota_exceeded"
        assert refused.json()["error"]["details"]["quota"] == "videos_per_month"
        async with httpx.AsyncClient(base_url=second, timeout=30,
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            usage = (await client.get("/v1/usage")).json()
        assert "10" in json.dumps(usage), usage
        await asyncio.sleep(1.0)
        stop.set()
        await listener
        kinds = sorted((event["type"], event["quota"]) for event in seen)
        assert kinds == [("org.quota.exceeded", "videos_per_month"),
                         ("org.quota.warning", "videos_per_month")], seen

        # Revoked on one side, refused by both gateways within 5 seconds.
        cli_ok(system, "keys", "revoke", key)
        deadline = time.monotonic() + 5
        async with httpx.AsyncClient(timeout=10,
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            for gateway in (system.gateway, second):
                while (await client.get(f"{gateway}/v1/videos")).status_code != 401:
                    assert time.monotonic() < deadline, gateway
                    await asyncio.sleep(0.1)


def test_flags_switch_the_system_within_a_second(system: RunningSystem) -> None:
    def within_a_second(check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 1.5
        while not check():
            assert time.monotonic() < deadline
            time.sleep(0.05)

    with system.client() as client:
        create = {"prompt": "flags"}
        cli_ok(system, "flags", "set", "maintenance", "on")
        within_a_second(lambda: client.post("/v1/videos", json=create).status_code == 503)
        refused = client.post("/v1/videos", json=create)
        assert_error(refused, 503, "maintenance")
        assert refused.headers["retry-after"]
        assert client.get("/v1/videos").status_code == 200
        assert client.get("/healthz").status_code == 200
        cli_ok(system, "flags", "set", "maintenance", "off")
        within_a_second(lambda: client.post("/v1/videos", json=create).status_code == 202)

        cli_ok(system, "orgs", "create", "vip-only")
        cli_ok(system, "flags", "set", "whitelist", "--orgs", "vip-only")
        within_a_second(lambda: client.post("/v1/videos", json=create).status_code == 403)
        assert_error(client.post("/v1/videos", json=create), 403, "not_whitelisted")
        assert "vip-only" in cli_ok(system, "flags", "list")
        cli_ok(system, "flags", "set", "whitelist", "--orgs", "")
        within_a_second(lambda: client.post("/v1/videos", json=create).status_code == 202)

        page = client.get("/").text
        cli_ok(system, "flags", "set", "coming_soon", "on")
        within_a_second(lambda: client.get("/").text != page)
        assert client.post("/v1/videos", json=create).status_code == 202  # API unaffected
        cli_ok(system, "flags", "set", "coming_soon", "off")


def test_the_printed_key_is_kept_across_restarts(
    tmp_path: Path, nats_url: str, database_url: str, namespace: str
) -> None:
    env = {"NATS_URL": nats_url, "DATABASE_URL": database_url,
           "REELVAULT_NAMESPACE": namespace}
    data = tmp_path / ".reelvault"
    keys = []
    for _run in range(2):
        with reelvault_up(data, env, cwd=tmp_path) as running:
            keys.append(running.api_key)
            with running.client() as client:
                assert client.get("/v1/videos").status_code == 200
            stop_cleanly(running)
    assert keys[0] == keys[1] and keys[0].startswith("rvk_")
    assert oct((data / "api-key").stat().st_mode & 0o777) == "0o600"
