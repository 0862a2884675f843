"""One provider job per video, ever, at the providers that cannot list their jobs (OpenRouter,
Gemini): duplicate deliveries, refused and lost creates, a generator stopped mid-create and a
retired model, each counted on the simulator for its protocol.

A lost create is never sent again. With OpenRouter and webhooks, the job's callback URL names
its video and the webhook adopts it; otherwise the video fails ``create_outcome_unknown``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from generator_harness import API_KEY, RunningSim, StreamWatch, run_sim, video_request
from pydantic import SecretStr
from reelvault_common.contracts.events import (
    VideoCompleted,
    VideoFailed,
    VideoGenerationStarted,
    VideoRequested,
)
from reelvault_common.runtime.settings import ServiceSettings
from reelvault_generator.app import GeneratorService
from reelvault_generator.settings import GeneratorSettings
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from tests.support.asgi_server import serve_app

pytestmark = pytest.mark.integration

MODELS = {"openrouter": "google/veo-3.1-fast", "gemini": "veo-3.1-fast-generate-preview"}
PROTOCOLS = tuple(MODELS)
WEBHOOK_SECRET = "or-workspace-secret-for-tests-0123456789"
# A create whose claim is this old belongs to an owner that died mid-create (2 s + 0.5 s).
CREATE_TIMEOUT_S = 2.0
CLAIM_MARGIN_S = 0.5

RoutedFactory = Callable[..., Awaitable[GeneratorService]]


def routed_request(protocol: str, prompt: str) -> VideoRequested:
    request: VideoRequested = video_request(prompt, model=MODELS[protocol], size="1280x720",
                                            seconds="4")
    return request


def job_ref(protocol: str, job: dict[str, Any]) -> str:
    """The provider job id the generator records for a simulator job."""
    if protocol == "gemini":
        return f"models/{job['model']}/operations/{job['id']}"
    return str(job["id"])


async def counts(sim: RunningSim, protocol: str) -> dict[str, Any]:
    """create_calls, jobs_created and calls per route, of one protocol."""
    return dict((await sim.jobs())["by_protocol"][protocol])


async def protocol_jobs(sim: RunningSim, protocol: str, prompt: str) -> list[dict[str, Any]]:
    jobs = (await sim.admin("GET", "/jobs", params={"protocol": protocol}))["jobs"]
    return [job for job in jobs if job["prompt"] == prompt]


def is_create(request: httpx2.Request) -> bool:
    path = request.url.path
    return request.method == "POST" and (
        path.endswith("/api/v1/videos") or path.endswith(":predictLongRunning"))


class WebhookRelay:
    """The generator's public webhook address (``REELVAULT_WEBHOOK_PUBLIC_URL``), as a load
    balancer in front of the replicas: forwards each delivery, query string and signature
    untouched, to the replica it points at; 503 while it points at none (the provider
    retries)."""

    def __init__(self) -> None:
        self.target: str | None = None
        self.forwarded: list[tuple[str, int]] = []  # (path?query, the replica's status)
        self._http = httpx.AsyncClient(timeout=10)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        body = await request.body()
        target = self.target
        status, content = 503, b'{"error": "no replica"}'
        if target is not None:
            where = f"{request.url.path}?{request.url.query}"
            headers = {k: v for k, v in request.headers.items()
                       if k not in ("host", "content-length")}
            try:
                reply = await self._http.post(f"{target}{where}", content=body, headers=headers)
                status, content = reply.status_code, reply.content
            except httpx.TransportError:
                pass
            self.forwarded.append((where, status))
        await Response(content, status_code=status, media_type="application/json")(
            scope, receive, send)

    async def aclose(self) -> None:
        await self._http.aclose()


class LoseCreateResponse(httpx2.AsyncBaseTransport):
    """The first create reaches the simulator (its job exists) and its answer is lost: a read
    timeout (``read_timeout``), or a gateway's 504 in place of the provider's answer
    (``gateway_504``). Everything else passes."""

    def __init__(self, mode: str) -> None:
        self._inner = httpx2.AsyncHTTPTransport()
        self._mode = mode
        self.lost = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        if not is_create(request) or self.lost:
            return response
        await response.aread()
        await response.aclose()
        self.lost += 1
        if self._mode == "gateway_504":
            return httpx2.Response(504, content=b"<html>504 Gateway Time-out</html>",
                                   request=request)
        raise httpx2.ReadTimeout("response lost on purpose", request=request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class HoldCreateResponse(httpx2.AsyncBaseTransport):
    """Creates reach the simulator, then their answer is held until the caller is stopped
    (cancelled): a generator that dies between sending a create and hearing back."""

    def __init__(self) -> None:
        self._inner = httpx2.AsyncHTTPTransport()
        self.reached = asyncio.Event()
        self.cancelled = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        if not is_create(request):
            return response
        try:
            await response.aread()
            self.reached.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            await response.aclose()
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        await self._inner.aclose()


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[RunningSim]:
    # OpenRouter signs callbacks with the workspace secret the generator verifies with.
    async with run_sim(tmp_path / "sim",
                       openrouter_webhook_secret=SecretStr(WEBHOOK_SECRET)) as running:
        yield running


@pytest.fixture
async def relay() -> AsyncIterator[tuple[WebhookRelay, str]]:
    forwarder = WebhookRelay()
    async with serve_app(forwarder, lifespan="off") as url:
        yield forwarder, url
    await forwarder.aclose()


@pytest.fixture
async def make_routed(
    service_settings: ServiceSettings, sim: RunningSim, tmp_path: Path,
    relay: tuple[WebhookRelay, str],
) -> AsyncIterator[RoutedFactory]:
    """A generator whose one model is routed to ``protocol`` at the simulator; with
    ``webhooks=True`` its endpoint (ephemeral port) is reached through the relay, which the
    factory points at the newest generator."""
    running: list[GeneratorService] = []
    forwarder, public_url = relay

    async def factory(protocol: str, *, webhooks: bool = False,
                      transport: httpx2.AsyncBaseTransport | None = None,
                      **overrides: Any) -> GeneratorService:
        values: dict[str, Any] = {
            "NATS_URL": service_settings.nats_url,
            "namespace": service_settings.namespace,
            "stream_duplicate_window_s": service_settings.stream_duplicate_window_s,
            "OPENAI_BASE_URL": sim.base_url,
            "OPENAI_API_KEY": API_KEY,
            "OPENROUTER_BASE_URL": f"{sim.root_url}/api/v1",
            "OPENROUTER_API_KEY": API_KEY,
            "GEMINI_BASE_URL": sim.root_url,
            "GEMINI_API_KEY": API_KEY,
            "model_routes": {MODELS[protocol]: protocol},
            "storage_dir": tmp_path / "storage",
            "poll_interval_s": 0.2,
            "poll_max_interval_s": 0.5,
            "poll": {"retry_base_s": 0.2},
            "requests": {"retry_base_s": 0.2, "retry_max_s": 1.0},
            "create_timeout_s": CREATE_TIMEOUT_S,
            "claim_margin_s": CLAIM_MARGIN_S,
            "adoption_window_s": 20.0,
            "shutdown_grace_s": 0.5,
        }
        if webhooks:
            values |= {"webhook_port": 0, "webhook_secret": SecretStr(WEBHOOK_SECRET),
                       "webhook_public_url": public_url}
        values |= overrides
        service = GeneratorService(GeneratorSettings(**values), http_transport=transport)
        running.append(service)
        await service.start()
        if webhooks:
            forwarder.target = service.webhook_base
        return service

    yield factory
    for service in running:
        if service.started:
            await service.stop()


async def assert_one_job(sim: RunningSim, protocol: str, request: VideoRequested,
                         outcome: VideoCompleted) -> dict[str, Any]:
    [job] = await protocol_jobs(sim, protocol, request.prompt)
    assert outcome.provider_job_id == job_ref(protocol, job)
    assert outcome.provider == protocol
    return job


# --- 1. duplicate deliveries ----------------------------------------------------------------
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_duplicate_deliveries_on_two_replicas_create_one_job_each(
    protocol: str, make_routed: RoutedFactory, watch: StreamWatch, sim: RunningSim
) -> None:
    await make_routed(protocol, requests={"workers": 4})
    await make_routed(protocol, requests={"workers": 4})
    requests = [routed_request(protocol, f"{protocol} twice delivered #{i}") for i in range(5)]
    for request in requests:
        # The same event under two message ids: JetStream keeps both, both replicas pull.
        await watch.publish(request, msg_id=f"{request.event_id}-a")
        await watch.publish(request, msg_id=f"{request.event_id}-b")

    outcomes = await asyncio.gather(*(watch.outcome(r.video_id, timeout_s=40) for r in requests))

    assert all(isinstance(o, VideoCompleted) for o in outcomes), outcomes
    seen = await counts(sim, protocol)
    assert seen["create_calls"] == seen["jobs_created"] == len(requests)
    for request, outcome in zip(requests, outcomes, strict=True):
        job = await assert_one_job(sim, protocol, request, outcome)
        started = watch.of(request.video_id, VideoGenerationStarted)
        assert {e.provider_job_id for e in started} == {job_ref(protocol, job)}


# --- 2. refused creates -----------------------------------------------------------------------
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_unavailable_on_create_is_retried_without_duplicates(
    protocol: str, make_routed: RoutedFactory, watch: StreamWatch, sim: RunningSim
) -> None:
    # A 503 from the API itself is a definite "no job for now": the create is sent again.
    await sim.push_faults({"kind": "server_error", "route": "create", "protocol": protocol,
                           "status": 503, "times": 2})
    await make_routed(protocol)
    request = routed_request(protocol, f"{protocol} after two 503s")
    await watch.publish(request)

    outcome = await watch.outcome(request.video_id, timeout_s=30)

    assert isinstance(outcome, VideoCompleted), outcome
    await assert_one_job(sim, protocol, request, outcome)
    seen = await counts(sim, protocol)
    assert (seen["create_calls"], seen["jobs_created"]) == (3, 1)
    assert (await sim.admin("GET", "/faults"))["injected"].get("server_error") == 2


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_rate_limited_create_waits_and_creates_once(
    protocol: str, make_routed: RoutedFactory, watch: StreamWatch, sim: RunningSim
) -> None:
    # OpenRouter says how long in Retry-After (whole seconds: 1), Gemini in RetryInfo ("1s").
    await sim.push_faults({"kind": "rate_limit", "route": "create", "protocol": protocol,
                           "times": 2, "retry_after_s": 0.5})
    await make_routed(protocol)
    request = routed_request(protocol, f"{protocol} patience")
    began = time.monotonic()
    await watch.publish(request)

    outcome = await watch.outcome(request.video_id, timeout_s=30)
    elapsed = time.monotonic() - began

    assert isinstance(outcome, VideoCompleted), outcome
    await assert_one_job(sim, protocol, request, outcome)
    seen = await counts(sim, protocol)
    assert (seen["create_calls"], seen["jobs_created"]) == (3, 1)
    assert (await sim.admin("GET", "/faults"))["injected"].get("rate_limit") == 2
    # Each 429 was waited out as told (1 s) rather than at the 0.2 s retry base.
    assert elapsed >= 2.0, elapsed


# --- 3. lost create responses -----------------------------------------------------------------
@pytest.mark.parametrize("mode", ["read_timeout", "gateway_504"])
async def test_lost_openrouter_create_is_adopted_by_its_webhook(
    mode: str, make_routed: RoutedFactory, watch: StreamWatch, sim: RunningSim,
    relay: tuple[WebhookRelay, str],
) -> None:
    transport = LoseCreateResponse(mode)
    await make_routed("openrouter", webhooks=True, transport=transport)
    request = routed_request("openrouter", f"lost create answer, {mode}")
    await watch.publish(request)

    outcome = await watch.outcome(request.video_id, timeout_s=30)

    assert transport.lost == 1
    assert isinstance(outcome, VideoCompleted), outcome
    job = await assert_one_job(sim, "openrouter", request, outcome)
    seen = await counts(sim, "openrouter")
    assert (seen["create_calls"], seen["jobs_created"]) == (1, 1)
    # The job carried a callback naming its video, and that delivery is what adopted it.
    [callback] = job["callback_urls"]
    assert f"video={request.video_id}" in callback
    forwarded, _ = relay
    assert any(str(request.video_id) in where and status == 200
               for where, status in forwarded.forwarded)
    assert {e.provider_job_id for e in watch.of(request.video_id, VideoGenerationStarted)} == {
        job["id"]}


@pytest.mark.parametrize(("protocol", "webhooks", "mode"), [
    ("openrouter", False, "read_timeout"),
    ("openrouter", False, "gateway_504"),
    ("gemini", False, "read_timeout"),
    ("gemini", False, "gateway_504"),
    # Gemini jobs cannot name their video: the generator's webhook endpoint changes nothing.
    ("gemini", True, "read_timeout"),
])
async def test_lost_create_without_adoption_fails_outcome_unknown_and_never_creates_again(
    protocol: str, webhooks: bool, mode: str, make_routed: RoutedFactory, watch: StreamWatch,
    sim: RunningSim,
) -> None:
    transport = LoseCreateResponse(mode)
    await make_routed(protocol, webhooks=webhooks, transport=transport, adoption_window_s=3.0)
    request = routed_request(protocol, f"{protocol} lost create answer, {mode}")
    began = time.monotonic()
    await watch.publish(request)

    outcome = await watch.outcome(request.video_id, timeout_s=30)
    elapsed = time.monotonic() - began

    assert transport.lost == 1
    assert isinstance(outcome, VideoFailed), outcome
    assert outcome.code == "create_outcome_unknown"
    # Failed only once the claim went stale (its create may still have been running).
    assert elapsed >= CREATE_TIMEOUT_S + CLAIM_MARGIN_S, elapsed
    # The job exists and is paid for, but nothing was sent twice.
    assert len(await protocol_jobs(sim, protocol, request.prompt)) == 1
    seen = await counts(sim, protocol)
    assert (seen["create_calls"], seen["jobs_created"]) == (1, 1)
    assert not watch.of(request.video_id, VideoGenerationStarted)


@pytest.mark.parametrize(("protocol", "webhooks", "status"), [
    ("openrouter", True, 502), ("openrouter", False, 500), ("gemini", False, 502),
    ("gemini", False, 500)])
async def test_ambiguous_server_error_on_create_is_never_sent_again(
    protocol: str, webhooks: bool, status: int, make_routed: RoutedFactory,
    watch: StreamWatch, sim: RunningSim,
) -> None:
    # A 502 (a gateway's: its upstream may have made the job) or, where jobs cannot be
    # listed, a 500 is never repeated. Here no job was made, so no webhook ever comes: the
    # adoption window runs out.
    window = 4.0
    await sim.push_faults({"kind": "server_error", "route": "create", "protocol": protocol,
                           "status": status})
    await make_routed(protocol, webhooks=webhooks, adoption_window_s=window)
    request = routed_request(protocol, f"{protocol} {status} on create, webhooks {webhooks}")
    began = time.monotonic()
    await watch.publish(request)

    outcome = await watch.outcome(request.video_id, timeout_s=30)
    elapsed = time.monotonic() - began

    assert isinstance(outcome, VideoFailed), outcome
    assert outcome.code == "create_outcome_unknown"
    assert elapsed >= (window if webhooks else CREATE_TIMEOUT_S + CLAIM_MARGIN_S), elapsed
    seen = await counts(sim, protocol)
    assert (seen["create_calls"], seen["jobs_created"]) == (1, 0)


# --- 4. a generator stopped mid-create --------------------------------------------------------
@pytest.mark.parametrize(("protocol", "webhooks"), [
    ("openrouter", True), ("openrouter", False), ("gemini", False)])
async def test_generator_stopped_mid_create_leaves_one_job(
    protocol: str, webhooks: bool, make_routed: RoutedFactory, watch: StreamWatch,
    sim: RunningSim, relay: tuple[WebhookRelay, str],
) -> None:
    forwarder, _ = relay
    # The job outlives the first generator: its webhook finds only the second one.
    await sim.push_faults({"kind": "slow_job", "protocol": protocol, "generation_s": 3.0})
    hold = HoldCreateResponse()
    first = await make_routed(protocol, webhooks=webhooks, transport=hold)
    request = routed_request(protocol, f"{protocol} stopped mid-create, webhooks {webhooks}")
    await watch.publish(request)
    await asyncio.wait_for(hold.reached.wait(), timeout=20)

    await first.stop()
    forwarder.target = None
    assert hold.cancelled == 1
    assert not watch.of(request.video_id, VideoGenerationStarted)
    assert not watch.of(request.video_id, VideoFailed)
    assert len(await protocol_jobs(sim, protocol, request.prompt)) == 1

    await make_routed(protocol, webhooks=webhooks)
    outcome = await watch.outcome(request.video_id, timeout_s=40)

    [job] = await protocol_jobs(sim, protocol, request.prompt)
    seen = await counts(sim, protocol)
    assert (seen["create_calls"], seen["jobs_created"]) == (1, 1)
    if webhooks:
        # Adopted by the second generator, from the webhook naming the video.
        assert isinstance(outcome, VideoCompleted), outcome
        assert outcome.provider_job_id == job_ref(protocol, job)
        assert any(str(request.video_id) in where and status == 200
                   for where, status in forwarder.forwarded)
    else:
        assert isinstance(outcome, VideoFailed), outcome
        assert outcome.code == "create_outcome_unknown"


# --- 5. a retired model -----------------------------------------------------------------------
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_retired_model_fails_model_unavailable_without_a_job(
    protocol: str, make_routed: RoutedFactory, watch: StreamWatch, sim: RunningSim
) -> None:
    await make_routed(protocol)
    # Retired while the deployment still offers it.
    await sim.admin("PUT", "/models/retired", json={"models": [MODELS[protocol]]})
    request = routed_request(protocol, f"{protocol} retired model")
    await watch.publish(request)

    outcome = await watch.outcome(request.video_id, timeout_s=30)

    assert isinstance(outcome, VideoFailed), outcome
    assert outcome.code == "model_unavailable"
    assert MODELS[protocol] in outcome.message
    seen = await counts(sim, protocol)
    assert (seen["create_calls"], seen["jobs_created"]) == (1, 0)
