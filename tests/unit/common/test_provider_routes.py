"""Which provider makes which model (``REELVAULT_MODEL_ROUTES``, else the providers with a key)
and the model of a request that names none (``REELVAULT_DEFAULT_MODEL``)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError
from reelvault_common.providers.models import GEMINI_MODELS, OPENAI_MODELS, OPENROUTER_MODELS
from reelvault_common.runtime.settings import ProviderSettings

ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENROUTER_API_KEY", "OPENROUTER_BASE_URL",
       "GEMINI_API_KEY", "GEMINI_BASE_URL", "REELVAULT_MODEL_ROUTES", "REELVAULT_DEFAULT_MODEL")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def ids(specs: tuple[object, ...]) -> list[str]:
    return [spec.id for spec in specs]  # type: ignore[attr-defined]


def test_without_any_key_the_sora_protocol_alone_is_offered() -> None:
    settings = ProviderSettings()
    assert settings.routes() == {model: "openai" for model in ids(OPENAI_MODELS)}
    assert settings.chosen_default_model() == "sora-2"
    assert settings.openrouter_base_url == "https://openrouter.ai/api/v1"
    assert settings.gemini_base_url == "https://generativelanguage.googleapis.com"


def test_an_openrouter_key_alone_offers_its_built_in_models(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-secret")
    settings = ProviderSettings()
    assert settings.routes() == {model: "openrouter" for model in ids(OPENROUTER_MODELS)}
    # No sora-2 here: the first model offered is the default.
    assert settings.chosen_default_model() == "google/veo-3.1"
    assert "sk-or-v1-secret" not in repr(settings)


def test_every_provider_with_a_key_is_offered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-secret")
    settings = ProviderSettings()
    routes = settings.routes()
    assert routes == {**{m: "openai" for m in ids(OPENAI_MODELS)},
                      **{m: "gemini" for m in ids(GEMINI_MODELS)}}
    assert settings.chosen_default_model() == "sora-2"
    assert settings.provider_key("gemini").get_secret_value() == "AIza-secret"
    assert settings.provider_key("openrouter").get_secret_value() == ""
    assert settings.provider_key("elsewhere").get_secret_value() == ""


def test_an_empty_key_is_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "")
    assert set(ProviderSettings().routes().values()) == {"openai"}


def test_configured_routes_replace_the_key_based_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or")
    monkeypatch.setenv("REELVAULT_MODEL_ROUTES", '{"sora-2": "openai", "google/veo-3.1": '
                       '"openrouter", "veo-3.1-generate-preview": "gemini"}')
    settings = ProviderSettings()
    assert settings.routes() == {"sora-2": "openai", "google/veo-3.1": "openrouter",
                                 "veo-3.1-generate-preview": "gemini"}
    assert settings.chosen_default_model() == "sora-2"
    # A copy: changing it changes nothing.
    settings.routes()["sora-2"] = "gemini"
    assert settings.routes()["sora-2"] == "openai"


def test_a_route_to_an_unknown_provider_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REELVAULT_MODEL_ROUTES", '{"sora-2": "elsewhere"}')
    with pytest.raises(ValidationError, match="model_routes"):
        ProviderSettings()


def test_routes_that_are_not_json_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REELVAULT_MODEL_ROUTES", "sora-2=openai")
    with pytest.raises(SettingsError, match="model_routes"):
        ProviderSettings()


def test_the_default_model_may_be_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REELVAULT_DEFAULT_MODEL", "sora-2-pro")
    assert ProviderSettings().chosen_default_model() == "sora-2-pro"


def test_routes_without_sora_2_default_to_their_first_model(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REELVAULT_MODEL_ROUTES",
                       '{"veo-3.1-fast-generate-preview": "gemini", "google/veo-3.1": '
                       '"openrouter"}')
    assert ProviderSettings().chosen_default_model() == "veo-3.1-fast-generate-preview"


def test_a_default_model_not_offered_is_refused_naming_the_models_offered(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REELVAULT_MODEL_ROUTES", '{"google/veo-3.1": "openrouter", '
                       '"google/veo-3.1-fast": "openrouter"}')
    monkeypatch.setenv("REELVAULT_DEFAULT_MODEL", "sora-2")
    with pytest.raises(ValidationError) as refused:
        ProviderSettings()
    message = str(refused.value)
    assert "REELVAULT_DEFAULT_MODEL='sora-2'" in message
    assert "google/veo-3.1, google/veo-3.1-fast" in message


def test_a_default_model_of_a_provider_without_a_key_is_refused(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REELVAULT_DEFAULT_MODEL", "veo-3.1-generate-preview")
    with pytest.raises(ValidationError, match="not among the models offered"):
        ProviderSettings()
    monkeypatch.setenv("GEMINI_API_KEY", "AIza")
    assert ProviderSettings().chosen_default_model() == "veo-3.1-generate-preview"


def test_keys_do_not_appear_in_validation_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-very-secret")
    monkeypatch.setenv("REELVAULT_MODEL_ROUTES", '{"m": "nowhere"}')
    with pytest.raises(ValidationError) as refused:
        ProviderSettings()
    assert "AIza-very-secret" not in str(refused.value)
