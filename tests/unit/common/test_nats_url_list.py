"""``NATS_URL``: one server or a comma-separated list, parsed once by the settings base, shown
only without credentials."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from reelvault_common.runtime.nats_servers import parse_nats_servers, redact_url, servers_for_logs
from reelvault_common.runtime.settings import ServiceSettings

PASSWORD = "s3cr3t-pw"


def test_a_single_url_is_a_list_of_one() -> None:
    settings = ServiceSettings(NATS_URL="nats://127.0.0.1:4222")
    [server] = settings.nats_servers
    assert (server.scheme, server.host, server.port) == ("nats", "127.0.0.1", 4222)
    assert settings.nats_server_urls == ["nats://127.0.0.1:4222"]
    assert settings.nats_url == "nats://127.0.0.1:4222"


def test_a_comma_separated_list_keeps_every_server_in_order() -> None:
    settings = ServiceSettings(
        NATS_URL=" nats://127.0.0.1:4222 ,tls://127.0.0.2:4223,nats://localhost"
    )
    assert [(s.scheme, s.host, s.port) for s in settings.nats_servers] == [
        ("nats", "127.0.0.1", 4222),
        ("tls", "127.0.0.2", 4223),
        ("nats", "localhost", None),
    ]
    assert settings.nats_server_urls == [
        "nats://127.0.0.1:4222", "tls://127.0.0.2:4223", "nats://localhost"]


def test_the_environment_variable_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:4999,nats://127.0.0.1:4998")
    monkeypatch.setenv("REELVAULT_STARTUP_TIMEOUT_S", "7.5")
    settings = ServiceSettings()
    assert [s.port for s in settings.nats_servers] == [4999, 4998]
    assert settings.startup_timeout_s == 7.5


def test_a_list_given_in_code_is_accepted() -> None:
    settings = ServiceSettings(NATS_URL=["nats://127.0.0.1:1", "nats://127.0.0.1:2"])
    assert settings.nats_server_urls == ["nats://127.0.0.1:1", "nats://127.0.0.1:2"]


def test_websocket_servers_are_accepted() -> None:
    servers = parse_nats_servers("ws://127.0.0.1:8080,wss://127.0.0.1:8443")
    assert [s.scheme for s in servers] == ["ws", "wss"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "NATS_URL entry 1 is empty"),
        ("nats://127.0.0.1:4222,", "NATS_URL entry 2 is empty"),
        ("nats://127.0.0.1:4222,,nats://127.0.0.1:4223", "NATS_URL entry 2 is empty"),
        ("http://127.0.0.1:4222", "must start with nats://, tls://, ws:// or wss://"),
        ("127.0.0.1:4222", "must start with nats://"),
        ("nats://:4222", "has no host"),
        ("nats://", "has no host"),
        ("nats://127.0.0.1:notaport", "has an invalid port"),
        ("nats://127.0.0.1:70000", "has an invalid port"),
        ("nats://127.0.0.1:4222,ws://127.0.0.1:8080", "mixes websocket"),
    ],
)
def test_an_unusable_entry_is_a_clear_error(value: str, message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        ServiceSettings(NATS_URL=value)
    assert message in str(raised.value)


def test_errors_say_which_entry_and_never_show_the_password() -> None:
    value = f"nats://127.0.0.1:4222,http://admin:{PASSWORD}@127.0.0.1:4223"
    with pytest.raises(ValidationError) as raised:
        ServiceSettings(NATS_URL=value)
    text = str(raised.value)
    assert "NATS_URL entry 2" in text
    assert "http://***@127.0.0.1:4223" in text
    assert PASSWORD not in text  # neither in our message nor in pydantic's input echo


def test_credentials_reach_the_client_but_never_the_logs() -> None:
    settings = ServiceSettings(
        NATS_URL=f"nats://admin:{PASSWORD}@127.0.0.1:4222,nats://tok3n@127.0.0.1:4223"
    )
    assert settings.nats_server_urls[0] == f"nats://admin:{PASSWORD}@127.0.0.1:4222"
    assert settings.nats_url_for_logs == "nats://***@127.0.0.1:4222,nats://***@127.0.0.1:4223"
    shown = [str(s) for s in settings.nats_servers] + [repr(s) for s in settings.nats_servers]
    for text in [*shown, repr(settings), str(settings), settings.nats_url_for_logs]:
        assert PASSWORD not in text and "tok3n" not in text, text


def test_redaction_covers_urls_inside_any_text() -> None:
    assert redact_url(f"failed: nats://a:{PASSWORD}@h:1, tls://x@y:2") == (
        "failed: nats://***@h:1, tls://***@y:2")
    # A raw "@" inside the password: everything up to the host's "@" is hidden.
    assert redact_url("nats://u:p@ss@h:4222") == "nats://***@h:4222"
    assert redact_url("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"
    assert servers_for_logs(parse_nats_servers("nats://u:p@h:1,nats://h:2")) == (
        "nats://***@h:1,nats://h:2")


def test_a_copy_with_another_url_parses_it_again() -> None:
    settings = ServiceSettings(NATS_URL="nats://127.0.0.1:1")
    copy = settings.model_copy(update={"nats_url": "nats://127.0.0.1:2,nats://127.0.0.1:3"})
    assert [s.port for s in copy.nats_servers] == [2, 3]
