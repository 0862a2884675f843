"""The OpenRouter and Gemini (Veo) clients against the simulator's faults: rate limits with the
wait each protocol states, server errors, downloads cut mid-body, redirected downloads and
content that has expired, each surfacing as the ``ProviderError`` the callers decide on."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import httpx2
import pytest
from conftest import RunningSim, SimFactory
from providersim_helpers import API_KEY
from pydantic import SecretStr
from reelvault_common.providers.errors import ProviderError
from reelvault_common.providers.gemini_veo import GeminiVeoClient
from reelvault_common.providers.openrouter_videos import (
    OpenRouterCreateRequest,
    OpenRouterVideosClient,
)

pytestmark = pytest.mark.integration

PROTOCOLS = ("openrouter", "gemini")


class Side(Protocol):
    """One protocol's client, reduced to what these tests do with it."""

    protocol: str

    async def create(self, prompt: str) -> str:
        """Start a job; its reference (OpenRouter id, Gemini operation name)."""
        ...

    async def look(self, ref: str) -> str | None:
        """The finished job's content reference, or None while it runs."""
        ...

    async def download(self, content: str) -> bytes:
        ...

    def sim_id(self, ref: str) -> str:
        """The simulator's id of the job."""
        ...


@dataclass
class OpenRouterSide:
    client: OpenRouterVideosClient
    protocol: str = "openrouter"

    async def create(self, prompt: str) -> str:
        job = await self.client.create(OpenRouterCreateRequest(
            model="google/veo-3.1-fast", prompt=prompt, duration=4, resolution="720p",
            aspect_ratio="16:9"))
        assert job.status == "pending"
        return job.id

    async def look(self, ref: str) -> str | None:
        job, _ = await self.client.retrieve(ref)
        assert job.status not in ("failed", "cancelled", "expired"), job
        return job.id if job.status == "completed" else None

    async def download(self, content: str) -> bytes:
        async with self.client.stream_content(content) as (_, chunks):
            return b"".join([chunk async for chunk in chunks])

    def sim_id(self, ref: str) -> str:
        return ref


@dataclass
class GeminiSide:
    client: GeminiVeoClient
    protocol: str = "gemini"

    async def create(self, prompt: str) -> str:
        operation = await self.client.create(
            "veo-3.1-fast-generate-preview", prompt, aspect_ratio="16:9", resolution="720p",
            duration_seconds=4)
        assert not operation.done
        return operation.name

    async def look(self, ref: str) -> str | None:
        operation = await self.client.get_operation(ref)
        assert operation.outcome in ("running", "completed"), operation
        return operation.video_uris[0] if operation.outcome == "completed" else None

    async def download(self, content: str) -> bytes:
        async with self.client.stream_file(content) as (_, chunks):
            return b"".join([chunk async for chunk in chunks])

    def sim_id(self, ref: str) -> str:
        return ref.rsplit("/", 1)[-1]


class RecordingTransport(httpx2.AsyncBaseTransport):
    """Passes every request on and remembers (path, status, whether it carried a key)."""

    def __init__(self) -> None:
        self._inner = httpx2.AsyncHTTPTransport()
        self.seen: list[tuple[str, int, bool]] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        keyed = "authorization" in request.headers or "x-goog-api-key" in request.headers
        self.seen.append((request.url.path, response.status_code, keyed))
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


@asynccontextmanager
async def client_for(protocol: str, sim: RunningSim,
                     transport: httpx2.AsyncBaseTransport | None = None) -> AsyncIterator[Side]:
    side: OpenRouterSide | GeminiSide
    if protocol == "openrouter":
        side = OpenRouterSide(OpenRouterVideosClient(
            f"{sim.root_url}/api/v1", api_key=SecretStr(API_KEY), timeout_s=10,
            transport=transport))
    else:
        side = GeminiSide(GeminiVeoClient(sim.root_url, api_key=SecretStr(API_KEY),
                                          timeout_s=10, transport=transport))
    try:
        yield side
    finally:
        await side.client.aclose()


async def push_faults(sim: RunningSim, *rules: dict[str, Any]) -> None:
    async with sim.admin() as admin:
        (await admin.post("/_sim/faults", json={"rules": list(rules)})).raise_for_status()


async def counts(sim: RunningSim, protocol: str) -> dict[str, Any]:
    async with sim.admin() as admin:
        reply = await admin.get("/_sim/jobs")
        reply.raise_for_status()
        return dict(reply.json()["by_protocol"][protocol])


async def served_sha256(sim: RunningSim, job_id: str) -> str:
    async with sim.admin() as admin:
        reply = await admin.get(f"/_sim/jobs/{job_id}/sha256")
        reply.raise_for_status()
        return str(reply.json()["sha256"])


async def finished(side: Side, ref: str, timeout_s: float = 20) -> str:
    deadline = time.monotonic() + timeout_s
    while (content := await side.look(ref)) is None:
        assert time.monotonic() < deadline, f"{ref} did not finish in {timeout_s}s"
        await asyncio.sleep(0.05)
    return content


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_rate_limited_create_states_its_wait(protocol: str, sim: RunningSim) -> None:
    # OpenRouter states it in Retry-After, Gemini in RetryInfo.retryDelay (no header): both
    # round 2.4 s up to whole seconds.
    await push_faults(sim, {"kind": "rate_limit", "route": "create", "protocol": protocol,
                            "retry_after_s": 2.4})
    async with client_for(protocol, sim) as side:
        with pytest.raises(ProviderError) as refused:
            await side.create("too soon")
        error = refused.value
        assert (error.status, error.retry_after_s, error.transient) == (429, 3.0, True)
        assert error.code == ("rate_limit_exceeded" if protocol == "openrouter"
                              else "RESOURCE_EXHAUSTED")

        ref = await side.create("in good time")  # the rule was one-shot

    assert ref
    seen = await counts(sim, protocol)
    assert (seen["create_calls"], seen["jobs_created"]) == (2, 1)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_rate_limited_poll_states_its_wait(protocol: str, sim: RunningSim) -> None:
    async with client_for(protocol, sim) as side:
        ref = await side.create("polled too often")
        await push_faults(sim, {"kind": "rate_limit", "route": "retrieve", "protocol": protocol,
                                "retry_after_s": 1.0})
        with pytest.raises(ProviderError) as refused:
            await side.look(ref)
        assert (refused.value.status, refused.value.retry_after_s) == (429, 1.0)
        await finished(side, ref)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_server_errors_are_transient_and_make_no_job(
    protocol: str, sim: RunningSim
) -> None:
    await push_faults(
        sim,
        {"kind": "server_error", "route": "create", "protocol": protocol, "status": 500},
        {"kind": "server_error", "route": "retrieve", "protocol": protocol, "status": 500},
    )
    async with client_for(protocol, sim) as side:
        with pytest.raises(ProviderError) as on_create:
            await side.create("refused by a 500")
        assert (on_create.value.status, on_create.value.transient) == (500, True)
        assert on_create.value.code == ("server" if protocol == "openrouter" else "INTERNAL")
        assert (await counts(sim, protocol))["jobs_created"] == 0

        ref = await side.create("created after the 500")
        with pytest.raises(ProviderError) as on_poll:
            await side.look(ref)
        assert (on_poll.value.status, on_poll.value.transient) == (500, True)
        await finished(side, ref)

    seen = await counts(sim, protocol)
    assert (seen["create_calls"], seen["jobs_created"]) == (2, 1)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_download_cut_mid_body_is_a_transient_error(
    protocol: str, sim: RunningSim
) -> None:
    async with client_for(protocol, sim) as side:
        ref = await side.create("cut short")
        content = await finished(side, ref)
        await push_faults(sim, {"kind": "content_cut", "protocol": protocol,
                                "cut_fraction": 0.5})
        with pytest.raises(ProviderError) as cut:
            await side.download(content)
        assert cut.value.status is None and cut.value.transient
        assert "broke off" in cut.value.message

        whole = await side.download(content)  # the next attempt gets every byte

    assert hashlib.sha256(whole).hexdigest() == await served_sha256(sim, side.sim_id(ref))


async def test_gemini_download_follows_the_storage_redirect(sim_factory: SimFactory) -> None:
    transport = RecordingTransport()
    async with sim_factory(content_redirect=True) as sim, client_for(
        "gemini", sim, transport
    ) as side:
        ref = await side.create("served from storage")
        data = await side.download(await finished(side, ref))
        expected = await served_sha256(sim, side.sim_id(ref))

    assert hashlib.sha256(data).hexdigest() == expected
    downloads = [(path, status) for path, status, _ in transport.seen
                 if "/files/" in path or "/gemini-storage/" in path]
    assert [status for _, status in downloads] == [302, 200]
    assert downloads[1][0].startswith("/gemini-storage/")


async def test_openrouter_content_is_not_redirected(sim_factory: SimFactory) -> None:
    # OpenRouter documents no redirect for its content route (it proxies the bytes): the
    # simulator serves them directly even with CONTENT_REDIRECT, and the key goes along.
    transport = RecordingTransport()
    async with sim_factory(content_redirect=True) as sim, client_for(
        "openrouter", sim, transport
    ) as side:
        ref = await side.create("proxied")
        data = await side.download(await finished(side, ref))
        expected = await served_sha256(sim, ref)

    assert hashlib.sha256(data).hexdigest() == expected
    [download] = [entry for entry in transport.seen if entry[0].endswith("/content")]
    assert download == (f"/api/v1/videos/{ref}/content", 200, True)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_expired_content_is_a_definite_404(protocol: str, sim_factory: SimFactory) -> None:
    ttl = {f"{protocol}_content_ttl_s": 0.5}
    async with sim_factory(**ttl) as sim, client_for(protocol, sim) as side:
        ref = await side.create("gone after half a second")
        content = await finished(side, ref)
        deadline = time.monotonic() + 10
        while True:
            try:
                await side.download(content)
            except ProviderError as error:
                gone = error
                break
            assert time.monotonic() < deadline, "content still served 10 s after its TTL"
            await asyncio.sleep(0.1)

    assert (gone.status, gone.transient) == (404, False)
    assert gone.code == ("not_found" if protocol == "openrouter" else "NOT_FOUND")
