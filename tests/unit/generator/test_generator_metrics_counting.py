"""The generator's provider metrics against an in-memory Videos API: each call counted by route
and answer, the estimated cost counted once per created job, from the price table."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx2
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr
from reelvault_common.providers.openai_videos import ProviderError
from reelvault_generator.metrics import MeteredVideosClient, job_cost
from reelvault_generator.settings import GeneratorSettings

PROVIDER = "t-unit-provider"
PRICES = {"sora-2": Decimal("0.10"), "sora-2-pro": Decimal("0.30")}
JOB = {"id": "video_1", "object": "video", "model": "sora-2-pro", "status": "queued",
       "progress": 0, "created_at": 1767323045, "size": "1280x720", "seconds": "8"}


def calls(route: str, code: str) -> float:
    return REGISTRY.get_sample_value("reelvault_provider_requests_total",
                                     {"provider": PROVIDER, "route": route, "code": code}) or 0.0


def cost() -> float:
    return REGISTRY.get_sample_value("reelvault_provider_cost_usd_total",
                                     {"provider": PROVIDER}) or 0.0


def answer(request: httpx2.Request) -> httpx2.Response:
    path = request.url.path
    if request.method == "POST" and path == "/v1/videos":
        if b"refuse me" in request.content:
            return httpx2.Response(429, json={"error": {"message": "slow down"}})
        return httpx2.Response(200, json=JOB)
    if path == "/v1/videos/video_1":
        return httpx2.Response(200, json={**JOB, "status": "in_progress"})
    if path == "/v1/videos":
        return httpx2.Response(200, json={"object": "list", "data": [JOB]})
    if path == "/v1/videos/video_broken":
        raise httpx2.ConnectError("refused")
    return httpx2.Response(404, json={"error": {"message": "no such video"}})


def client() -> MeteredVideosClient:
    return MeteredVideosClient("http://provider.test/v1", SecretStr("sk-test"),
                               provider=PROVIDER, prices=PRICES,
                               transport=httpx2.MockTransport(answer))


def test_the_cost_of_a_job_is_its_price_per_second_times_its_seconds() -> None:
    assert job_cost("sora-2", "4", PRICES) == Decimal("0.40")
    assert job_cost("sora-2-pro", "12", PRICES) == Decimal("3.60")
    assert job_cost("veo-9", "4", PRICES) is None
    assert job_cost("sora-2", "four", PRICES) is None


def test_the_default_prices_are_the_catalogs(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = GeneratorSettings().prices_usd_per_second
    assert {model: defaults[model] for model in PRICES} == PRICES
    # Every built-in model has its list price.
    assert defaults["veo-3.1-fast-generate-preview"] == Decimal("0.10")
    monkeypatch.setenv("REELVAULT_PRICES_USD_PER_SECOND", json.dumps({"sora-2": "0.25"}))
    assert GeneratorSettings().prices_usd_per_second == {"sora-2": Decimal("0.25")}
    monkeypatch.setenv("REELVAULT_PRICES_USD_PER_SECOND", json.dumps({"sora-2": "-1"}))
    with pytest.raises(ValueError, match="finite amount"):
        GeneratorSettings()


async def test_calls_are_counted_by_route_and_answer_and_jobs_by_cost() -> None:
    before = {key: calls(*key) for key in [
        ("create", "200"), ("create", "429"), ("retrieve", "200"), ("retrieve", "404"),
        ("retrieve", "error"), ("list", "200")]}
    cost_before = cost()
    videos = client()
    try:
        await videos.create(prompt="a fox", model="sora-2-pro", seconds="8", size="1280x720")
        with pytest.raises(ProviderError):
            await videos.create(prompt="refuse me", model="sora-2", seconds="4", size="720x1280")
        await videos.retrieve("video_1")
        with pytest.raises(ProviderError):
            await videos.retrieve("video_missing")
        with pytest.raises(ProviderError):
            await videos.retrieve("video_broken")
        await videos.list(limit=5)
        # A model the price table does not know is created but costs nothing here.
        await videos.create(prompt="a fox", model="veo-9", seconds="8", size="1280x720")
    finally:
        await videos.aclose()
    grown = {key: calls(*key) - count for key, count in before.items()}
    assert grown == {("create", "200"): 2, ("create", "429"): 1, ("retrieve", "200"): 1,
                     ("retrieve", "404"): 1, ("retrieve", "error"): 1, ("list", "200"): 1}
    # 8 s of sora-2-pro at 0.30 USD; the refused create and the unpriced model add nothing.
    assert cost() - cost_before == pytest.approx(2.4)
