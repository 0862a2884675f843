"""Gateway settings: the documented defaults, and the environment names the launcher uses."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from reelvault_gateway.settings import GatewaySettings


def test_defaults() -> None:
    settings = GatewaySettings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.create_visibility_timeout_s == 2.0
    assert settings.max_upload_bytes == 10 * 1024 * 1024  # the images bucket's limit


@pytest.mark.parametrize("prefix", ["REELVAULT_GATEWAY_", "REELVAULT_"])
def test_host_and_port_from_the_environment(monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    monkeypatch.setenv(f"{prefix}HOST", "0.0.0.0")
    monkeypatch.setenv(f"{prefix}PORT", "9123")
    monkeypatch.setenv("HOST", "not-this")  # generic names are never read
    monkeypatch.setenv("PORT", "1")
    settings = GatewaySettings()
    assert (settings.host, settings.port) == ("0.0.0.0", 9123)


def test_shared_settings_still_come_from_their_usual_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:4999")
    monkeypatch.setenv("REELVAULT_NAMESPACE", "gw-test")
    monkeypatch.setenv("REELVAULT_MAX_UPLOAD_BYTES", "1234")
    settings = GatewaySettings()
    assert settings.nats_url == "nats://127.0.0.1:4999"
    assert settings.namespace == "gw-test"
    assert settings.max_upload_bytes == 1234


def test_key_and_session_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REELVAULT_SESSION_SECRET", raising=False)
    settings = GatewaySettings()
    # A revocation must reach a gateway that missed its announcement within 5 s.
    assert settings.key_cache_ttl_s == 3.0
    assert settings.session_secret is None  # a random secret per process, with a warning
    assert settings.secure_cookies is False  # the default base URL is http


def test_session_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REELVAULT_SESSION_SECRET", "s" * 32)
    monkeypatch.setenv("REELVAULT_PUBLIC_BASE_URL", "https://videos.example")
    settings = GatewaySettings()
    assert settings.session_secret is not None
    assert settings.session_secret.get_secret_value() == "s" * 32
    assert settings.secure_cookies is True


@pytest.mark.parametrize(("name", "value", "field"), [
    ("REELVAULT_SESSION_SECRET", "short-secret", "session_secret"),
    ("REELVAULT_KEY_CACHE_TTL_S", "10", "key_cache_ttl_s"),  # breaks the 5 s revocation promise
])
def test_unsafe_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str,
                                   field: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=field) as refused:
        GatewaySettings()
    assert "short-secret" not in str(refused.value)  # a secret is never echoed
