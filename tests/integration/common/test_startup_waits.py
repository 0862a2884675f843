"""Services started while NATS or PostgreSQL is not there (yet) wait for it instead of crashing:
``NATS_URL`` lists several servers and a dead first one is skipped; a NATS or PostgreSQL that
comes up later is picked up without a restart; SIGTERM while waiting exits 0 at once; after
``REELVAULT_STARTUP_TIMEOUT_S`` the process exits non-zero with a clear message. Every service
runs as its own process (``python -m ...``); everything is on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import nats
import pytest
from reelvault_common.contracts.catalog import RpcReply
from reelvault_common.messaging.healthcheck import check
from reelvault_common.messaging.nats_client import NatsUnreachable, connect_nats
from reelvault_common.messaging.setup import prepare_topology
from reelvault_common.messaging.topology import Topology
from reelvault_common.runtime.settings import ServiceSettings
from sqlalchemy.engine import make_url

from reelvault.embedded import NatsServer, free_port
from tests.support.service_process import ServiceProcess, service_process
from tests.support.tcp_forwarder import TcpForwarder

pytestmark = pytest.mark.integration

MODULES = {
    "catalog": "reelvault_catalog",
    "generator": "reelvault_generator",
    "archiver": "reelvault_archiver",
    "gateway": "reelvault_gateway",
}
READY_LINE = {"catalog": "catalog ready", "generator": "generator ready",
              "archiver": "archiver ready"}
PASSWORD = "pw-never-logged-4711"


def dead_url() -> str:
    """A loopback port nothing listens on."""
    return f"nats://127.0.0.1:{free_port()}"


def service_env(name: str, nats_url: str, namespace: str, tmp_path: Path,
                **extra: str) -> dict[str, str]:
    env = {
        "NATS_URL": nats_url,
        "REELVAULT_NAMESPACE": namespace,
        "REELVAULT_STREAM_DUPLICATE_WINDOW_S": "60",
        "REELVAULT_STORAGE_DIR": str(tmp_path / "storage"),
        "REELVAULT_STORAGE_SIGNING_KEY": "startup-test-signing-key",
        # Never called at start-up; a closed loopback port.
        "OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",
        "OPENAI_API_KEY": "sk-startup-test",
        "REELVAULT_STARTUP_TIMEOUT_S": "60",
    }
    if name == "gateway":
        port = free_port()
        env |= {"REELVAULT_PORT": str(port), "REELVAULT_PUBLIC_BASE_URL":
                f"http://127.0.0.1:{port}"}
    if name == "catalog":
        env["DATABASE_URL"] = f"postgresql://reelvault:{PASSWORD}@127.0.0.1:{free_port()}/x"
    return env | extra


def gateway_base(env: dict[str, str]) -> str:
    return f"http://127.0.0.1:{env['REELVAULT_PORT']}"


async def readiness(base: str) -> tuple[int, dict[str, str]]:
    async with httpx.AsyncClient(timeout=5) as client:
        reply = await client.get(f"{base}/readyz")
    body = reply.json()
    checks = body["checks"] if reply.status_code == 200 else body["error"]["details"]["checks"]
    return reply.status_code, checks


async def wait_broker_ok(service: ServiceProcess, base: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        assert service.process.poll() is None, service.log()[-4000:]
        _, checks = await readiness(base)
        if checks["broker"] == "ok":
            return
        assert time.monotonic() < deadline, f"broker never ready:\n{service.log()[-4000:]}"
        await asyncio.sleep(0.1)


async def stop_cleanly(service: ServiceProcess, timeout_s: float = 20) -> float:
    sent = service.terminate()
    code = await service.exit_code(timeout_s)
    assert code == 0, f"exit {code}:\n{service.log()[-4000:]}"
    return time.monotonic() - sent


@pytest.fixture
async def later_nats(tmp_path: Path) -> AsyncIterator[NatsServer]:
    """A NATS server with a port picked now, started by the test when it wants."""
    server = NatsServer(tmp_path / "late-nats", port=free_port(), name="late")
    try:
        yield server
    finally:
        server.stop()


# --- the client itself ------------------------------------------------------------------------


async def test_one_connect_fails_over_past_dead_servers_and_is_bounded(nats_url: str) -> None:
    dead = dead_url()
    # dont_randomize: the dead seed is certainly tried first.
    client = await connect_nats([dead, nats_url], dont_randomize=True, connect_timeout=2)
    try:
        assert client.is_connected
        assert client.connected_url is not None
        assert f"{client.connected_url.hostname}:{client.connected_url.port}" in nats_url
    finally:
        await client.close()

    started = time.monotonic()
    with pytest.raises(NatsUnreachable, match="none of 2 servers answered: connection refused"):
        await connect_nats(f"{dead},{dead_url()}", connect_timeout=2)
    assert time.monotonic() - started < 3  # nats-py alone would retry forever


async def test_prepare_topology_accepts_a_server_list(nats_url: str, namespace: str) -> None:
    settings = ServiceSettings(NATS_URL=f"{dead_url()},{nats_url}", namespace=namespace)
    topology = Topology.from_settings(settings)
    await prepare_topology(settings, topology)
    client = await nats.connect(nats_url)
    try:
        assert (await client.jetstream().stream_info(topology.stream)).config.name
    finally:
        await client.close()


async def test_the_container_health_check_answers_fast_with_a_server_list(
    nats_url: str, namespace: str
) -> None:
    settings = ServiceSettings(NATS_URL=f"{dead_url()},{nats_url}", namespace=namespace)
    await prepare_topology(settings, Topology.from_settings(settings))
    assert await check("nats", settings) is None

    down = ServiceSettings(NATS_URL=f"nats://probe:{PASSWORD}@127.0.0.1:{free_port()}",
                           namespace=namespace)
    started = time.monotonic()
    problem = await asyncio.wait_for(check("nats", down), 10)  # it used to hang forever
    assert problem is not None and problem.startswith("nats unreachable at nats://***@127.0.0.1:")
    assert PASSWORD not in problem
    assert time.monotonic() - started < 5


# --- (a) a dead first seed --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["archiver", "gateway"])
async def test_a_dead_first_seed_is_skipped(
    name: str, nats_url: str, namespace: str, tmp_path: Path
) -> None:
    env = service_env(name, f"{dead_url()},{nats_url}", namespace, tmp_path)
    async with service_process(name, MODULES[name], env, tmp_path / "logs") as service:
        if name == "gateway":
            await service.wait_http(f"{gateway_base(env)}/healthz")
            await wait_broker_ok(service, gateway_base(env))
        else:
            await service.wait_for_log(READY_LINE[name])
        # The dead seed was passed over inside one attempt: no waiting at all.
        assert "waiting for NATS" not in service.log()
        await stop_cleanly(service)


async def test_the_catalog_with_a_dead_first_seed_answers_over_the_live_one(
    nats_url: str, namespace: str, database_url: str, tmp_path: Path
) -> None:
    env = service_env("catalog", f"{dead_url()},{nats_url}", namespace, tmp_path,
                      DATABASE_URL=database_url)
    async with service_process("catalog", MODULES["catalog"], env, tmp_path / "logs") as service:
        await service.wait_for_log("catalog ready")
        client = await nats.connect(nats_url)
        try:
            topology = Topology.from_settings(ServiceSettings(namespace=namespace))
            reply = await client.request(topology.rpc_ping, b"{}", timeout=5)
            assert RpcReply.model_validate_json(reply.data).ok
        finally:
            await client.close()
        await stop_cleanly(service)


# --- (b) NATS comes up after the service ------------------------------------------------------


async def test_the_generator_waits_for_nats_and_becomes_ready_without_a_restart(
    later_nats: NatsServer, namespace: str, tmp_path: Path
) -> None:
    env = service_env("generator", later_nats.url, namespace, tmp_path)
    async with service_process("generator", MODULES["generator"], env,
                               tmp_path / "logs") as service:
        # A few seconds of "not there": attempts 1..3 fail and say so.
        await service.wait_for_log(f"waiting for NATS at {later_nats.url} (attempt 3): "
                                   "connection refused; retrying in")
        pid = service.process.pid
        await asyncio.to_thread(later_nats.start)
        await service.wait_for_log("generator ready", timeout_s=60)
        assert service.process.pid == pid and service.process.poll() is None
        await stop_cleanly(service)


async def test_the_gateway_is_alive_but_not_ready_until_nats_comes(
    later_nats: NatsServer, namespace: str, tmp_path: Path
) -> None:
    user_url = later_nats.url.replace("nats://", f"nats://reelvault:{PASSWORD}@")
    # The server has no users: credentials in the URL are ignored by it, but must never be
    # printed by us.
    env = service_env("gateway", user_url, namespace, tmp_path)
    base = gateway_base(env)
    async with service_process("gateway", MODULES["gateway"], env, tmp_path / "logs") as service:
        await service.wait_http(f"{base}/healthz")
        await service.wait_for_log("(attempt 2): connection refused")
        status, checks = await readiness(base)
        assert status == 503 and checks["broker"] != "ok"
        await asyncio.to_thread(later_nats.start)
        await wait_broker_ok(service, base)
        await stop_cleanly(service)
    log = service.log()
    assert f"waiting for NATS at nats://***@127.0.0.1:{later_nats.port}" in log
    assert PASSWORD not in log


# --- SIGTERM while waiting; giving up ---------------------------------------------------------


@pytest.mark.parametrize("name", ["catalog", "generator", "archiver", "gateway"])
async def test_sigterm_during_the_imports_exits_0(
    name: str, namespace: str, tmp_path: Path
) -> None:
    env = service_env(name, dead_url(), namespace, tmp_path)
    async with service_process(name, MODULES[name], env, tmp_path / "logs") as service:
        # Well before the imports are done (seconds here), after the interpreter started.
        await asyncio.sleep(0.4)
        service.terminate()
        code = await service.exit_code(timeout_s=10)
    assert code == 0, f"{name} exited with {code}:\n{service.log()[-2000:]}"
    assert "Traceback" not in service.log()


@pytest.mark.parametrize("name", ["catalog", "generator", "archiver", "gateway"])
async def test_sigterm_while_waiting_exits_0_at_once(
    name: str, namespace: str, tmp_path: Path
) -> None:
    env = service_env(name, dead_url(), namespace, tmp_path)
    async with service_process(name, MODULES[name], env, tmp_path / "logs") as service:
        what = "PostgreSQL" if name == "catalog" else "NATS"
        await service.wait_for_log(f"waiting for {what} at ")
        took = await stop_cleanly(service, timeout_s=10)
    assert took < 5, f"{name} took {took:.1f}s to stop"
    log = service.log()
    assert "Traceback" not in log
    assert PASSWORD not in log


async def test_the_gateway_gives_up_after_the_startup_timeout(
    namespace: str, tmp_path: Path
) -> None:
    env = service_env("gateway", dead_url(), namespace, tmp_path,
                      REELVAULT_STARTUP_TIMEOUT_S="2")
    async with service_process("gateway", MODULES["gateway"], env, tmp_path / "logs") as service:
        code = await service.exit_code(timeout_s=60)
    assert code not in (0, None), service.log()[-4000:]
    assert "gateway cannot start: gave up waiting for NATS at nats://127.0.0.1:" in service.log()


# --- (c) the catalog and PostgreSQL -----------------------------------------------------------


async def test_the_catalog_gives_up_on_a_database_that_never_comes(
    nats_url: str, namespace: str, tmp_path: Path
) -> None:
    env = service_env("catalog", nats_url, namespace, tmp_path, REELVAULT_STARTUP_TIMEOUT_S="2")
    async with service_process("catalog", MODULES["catalog"], env, tmp_path / "logs") as service:
        code = await service.exit_code(timeout_s=60)
    log = service.log()
    assert code == 1, log[-4000:]
    assert "catalog cannot start: gave up waiting for PostgreSQL at " in log
    assert "REELVAULT_STARTUP_TIMEOUT_S=2" in log and "connection refused" in log
    assert "Traceback" not in log
    assert PASSWORD not in log and "reelvault:***@" in log


def forwarder_to(database_url: str) -> TcpForwarder:
    """A forwarder to the test database's server (TCP, or pgserver's unix socket)."""
    url = make_url(database_url)
    socket_dir = url.query.get("host")
    if isinstance(socket_dir, str) and socket_dir.startswith("/"):
        port = url.port or 5432
        return TcpForwarder(target_unix=Path(socket_dir) / f".s.PGSQL.{port}")
    return TcpForwarder(target_host=url.host or "127.0.0.1", target_port=url.port or 5432)


async def test_the_catalog_waits_for_a_database_that_comes_later(
    nats_url: str, namespace: str, database_url: str, tmp_path: Path
) -> None:
    postgres = forwarder_to(database_url)
    late_url = (make_url(database_url).difference_update_query(["host"])
                .set(host="127.0.0.1", port=postgres.port)
                .render_as_string(hide_password=False))
    env = service_env("catalog", nats_url, namespace, tmp_path, DATABASE_URL=late_url)
    try:
        async with service_process("catalog", MODULES["catalog"], env,
                                   tmp_path / "logs") as service:
            await service.wait_for_log("waiting for PostgreSQL at postgresql+asyncpg://")
            await service.wait_for_log("(attempt 3): connection refused")
            pid = service.process.pid
            await postgres.open()  # "PostgreSQL is up now"
            await service.wait_for_log("catalog ready", timeout_s=60)
            assert service.process.pid == pid and service.process.poll() is None
            client = await nats.connect(nats_url)
            try:
                topology = Topology.from_settings(ServiceSettings(namespace=namespace))
                reply = await client.request(topology.rpc_ping, b"{}", timeout=5)
                assert RpcReply.model_validate_json(reply.data).ok  # the ping asks the database
            finally:
                await client.close()
            await stop_cleanly(service)
    finally:
        await postgres.close()
