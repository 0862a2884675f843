"""An empty or whitespace-only prompt is refused with a 422 naming the prompt, on the /v1 API
and the seed app's route alike, and nothing is requested."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from reelvault_gateway.app import create_app
from reelvault_gateway.context import GatewayContext
from reelvault_gateway.deps import get_context

from tests.support.gateway_fakes import FakeCatalog, FakeEvents, fake_context, fake_settings


@pytest.fixture
async def context(tmp_path: Path) -> GatewayContext:
    return await fake_context(fake_settings(tmp_path))


@pytest.fixture
async def client(context: GatewayContext) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(context.settings)
    app.dependency_overrides[get_context] = lambda: context
    assert isinstance(context.catalog, FakeCatalog)
    key = context.catalog.double.add_key()
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        yield client


@pytest.mark.parametrize("prompt", ["", " ", "   \t\n ", "\u00a0\u2003", "\r\n"])
@pytest.mark.parametrize("path", ["/v1/videos", "/api/create-video"])
async def test_a_blank_prompt_is_a_422_and_requests_nothing(
    client: httpx.AsyncClient, context: GatewayContext, path: str, prompt: str
) -> None:
    answer = await client.post(path, json={"prompt": prompt})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "validation_error"
    assert ["body", "prompt"] in [item["loc"] for item in error["details"]]
    assert isinstance(context.events, FakeEvents) and context.events.published == []


async def test_a_prompt_with_words_and_spaces_around_them_is_taken(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.post("/v1/videos", json={"prompt": "  a hug  "})
    assert answer.status_code == 202, answer.text
