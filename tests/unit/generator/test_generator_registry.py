"""The provider registry: each model to its provider, and the deployment's model catalog from
the routes, the providers' own capability data and the built-in tables."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from generator_fakes import FakeProvider
from reelvault_common.providers.errors import ProviderError
from reelvault_common.providers.models import ModelSpec, built_in
from reelvault_generator.registry import ModelSource, ProviderRegistry


@dataclass
class PublishingProvider(FakeProvider):
    """A provider that publishes its models' capabilities (as OpenRouter does)."""

    answers: list[list[ModelSpec] | Exception] = field(default_factory=list)
    model_calls: int = 0

    async def models(self) -> list[ModelSpec]:
        self.model_calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def published(model_id: str, *sizes: str, price: str = "0.20") -> ModelSpec:
    return ModelSpec(id=model_id, provider="openrouter", sizes=sizes, seconds=("5", "10"),
                     image_inputs=("first_frame",), max_images=1,
                     usd_per_second=Decimal(price))


def three_providers() -> tuple[ProviderRegistry, FakeProvider, PublishingProvider, FakeProvider]:
    openai = FakeProvider(name="openai")
    openrouter = PublishingProvider(name="openrouter", lists_jobs=False, adopts_by_webhook=True)
    gemini = FakeProvider(name="gemini", lists_jobs=False)
    registry = ProviderRegistry(
        {"openai": openai, "openrouter": openrouter, "gemini": gemini},
        routes={"sora-2": "openai", "google/veo-3.1": "openrouter",
                "kwaivgi/kling-v2.6": "openrouter", "veo-3.1-generate-preview": "gemini"},
        default_model="google/veo-3.1",
    )
    return registry, openai, openrouter, gemini


def test_each_model_goes_to_its_provider() -> None:
    registry, openai, openrouter, gemini = three_providers()
    assert registry.for_model("sora-2") is openai
    assert registry.for_model("google/veo-3.1") is openrouter
    assert registry.for_model("veo-3.1-generate-preview") is gemini
    assert registry.for_model("google/veo-3.1-fast") is None  # not routed
    assert registry.for_model("sora-2-pro") is None


def test_a_dated_slug_goes_to_its_familys_provider() -> None:
    registry, openai, _, _ = three_providers()
    assert registry.for_model("sora-2-2025-10-06") is openai
    assert registry.spec("sora-2-2025-10-06") == registry.spec("sora-2")


def test_a_routed_model_without_capability_data_still_has_its_provider() -> None:
    # Not offered in the catalog (the gateway refuses it), but an old request still routes.
    registry, _, openrouter, _ = three_providers()
    assert registry.spec("kwaivgi/kling-v2.6") is None
    assert registry.for_model("kwaivgi/kling-v2.6") is openrouter


def test_providers_by_name() -> None:
    registry, openai, openrouter, gemini = three_providers()
    assert registry.named("openai") is openai
    assert registry.named("gemini") is gemini
    assert registry.named("elsewhere") is None
    assert registry.named("") is None  # with routes, no guessing
    assert registry.providers == (openai, openrouter, gemini)


def test_a_single_provider_makes_every_model_and_answers_to_any_name() -> None:
    provider = FakeProvider(name="sim")
    registry = ProviderRegistry.single(provider)
    assert registry.for_model("sora-2") is provider
    assert registry.for_model("anything") is provider
    assert registry.named("sim") is provider
    # Entries and events from before providers were named.
    assert registry.named("") is provider
    assert registry.named("openai") is provider
    assert len(registry.catalog) == 0  # no routes: the gateway keeps its own default


def test_no_provider_at_all() -> None:
    registry = ProviderRegistry({})
    assert registry.for_model("sora-2") is None
    assert registry.named("openai") is None


def test_the_static_catalog_comes_from_the_routes_and_the_built_in_tables(
    caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        registry, _, _, _ = three_providers()
    catalog = registry.catalog
    assert [s.id for s in catalog.specs] == [
        "google/veo-3.1", "sora-2", "veo-3.1-generate-preview"]
    assert catalog.default_model == "google/veo-3.1"
    assert [s.default for s in catalog.specs] == [True, False, False]
    assert {s.id: s.provider for s in catalog.specs} == {
        "google/veo-3.1": "openrouter", "sora-2": "openai",
        "veo-3.1-generate-preview": "gemini"}
    veo = built_in("veo-3.1-generate-preview")
    assert veo is not None
    assert catalog.get("veo-3.1-generate-preview") == veo.model_copy(update={"default": False})
    assert "kwaivgi/kling-v2.6" in caplog.text and "not offered" in caplog.text


def test_a_route_decides_the_provider_of_a_built_in_model() -> None:
    # sora-2 through a compatible gateway configured as another provider name.
    registry = ProviderRegistry({"gateway": FakeProvider(name="gateway")},
                                routes={"sora-2": "gateway"}, default_model="sora-2")
    spec = registry.spec("sora-2")
    assert spec is not None and spec.provider == "gateway" and spec.default


async def test_refreshing_takes_the_providers_own_capability_data() -> None:
    registry, _, openrouter, _ = three_providers()
    openrouter.answers.append([
        published("google/veo-3.1", "1280x720", "1920x1080", price="0.50"),
        published("kwaivgi/kling-v2.6", "1920x1080", price="0.07"),
        published("not/routed", "1280x720"),  # published but not offered here
    ])
    catalog = await registry.refresh_catalog()

    assert catalog is registry.catalog
    assert [s.id for s in catalog.specs] == [
        "google/veo-3.1", "kwaivgi/kling-v2.6", "sora-2", "veo-3.1-generate-preview"]
    veo = catalog.get("google/veo-3.1")
    assert veo is not None
    assert (veo.sizes, veo.seconds, veo.usd_per_second, veo.default) == (
        ("1280x720", "1920x1080"), ("5", "10"), Decimal("0.50"), True)
    kling = catalog.get("kwaivgi/kling-v2.6")
    assert kling is not None and kling.provider == "openrouter" and not kling.default
    assert registry.for_model("kwaivgi/kling-v2.6") is openrouter
    # Providers that publish nothing keep their built-in data.
    assert catalog.get("sora-2") == registry.spec("sora-2")
    assert openrouter.model_calls == 1


@pytest.mark.parametrize("failure", [ProviderError("down", status=503),
                                     ProviderError("timeout", status=None),
                                     # What an answer that does not decode raises.
                                     ValueError("the models list did not decode")])
async def test_a_provider_that_fails_keeps_its_last_good_data(failure: Exception) -> None:
    registry, _, openrouter, _ = three_providers()
    openrouter.answers += [
        [published("google/veo-3.1", "1280x720", price="0.45"),
         published("kwaivgi/kling-v2.6", "1920x1080")],
        failure,
    ]
    first = await registry.refresh_catalog()
    second = await registry.refresh_catalog()

    assert second.specs == first.specs
    veo = second.get("google/veo-3.1")
    assert veo is not None and veo.usd_per_second == Decimal("0.45") and veo.default
    assert second.get("kwaivgi/kling-v2.6") is not None
    assert openrouter.model_calls == 2


async def test_a_provider_failing_from_the_start_keeps_the_built_in_data() -> None:
    registry, _, openrouter, _ = three_providers()
    before = registry.catalog.specs
    openrouter.answers.append(ProviderError("unauthorized", status=401))
    after = await registry.refresh_catalog()
    assert after.specs == before
    assert after.get("kwaivgi/kling-v2.6") is None


async def test_a_refresh_that_works_again_replaces_the_kept_data() -> None:
    registry, _, openrouter, _ = three_providers()
    openrouter.answers += [
        [published("google/veo-3.1", "1280x720", price="0.45")],
        ProviderError("down", status=503),
        [published("google/veo-3.1", "1280x720", price="0.40")],
    ]
    for _ in range(3):
        catalog = await registry.refresh_catalog()
    veo = catalog.get("google/veo-3.1")
    assert veo is not None and veo.usd_per_second == Decimal("0.40")


def test_which_providers_publish_capabilities() -> None:
    assert isinstance(PublishingProvider(), ModelSource)
    assert not isinstance(FakeProvider(), ModelSource)


async def test_closing_closes_every_provider() -> None:
    closed: list[str] = []

    @dataclass
    class Closing(FakeProvider):
        async def aclose(self) -> None:
            closed.append(self.name)

    registry = ProviderRegistry({"a": Closing(name="a"), "b": Closing(name="b")},
                                routes={"sora-2": "a"})
    await registry.aclose()
    assert closed == ["a", "b"]
