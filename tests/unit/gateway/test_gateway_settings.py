"""Gateway settings: the documented defaults, and the environment names the launcher uses."""

from __future__ import annotations

import pytest
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
