"""Catalog settings: every usual PostgreSQL URL form becomes the asyncpg one; no password leaks."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError
from reelvault_catalog.settings import CatalogSettings, normalise_database_url


@pytest.mark.parametrize(("given", "expected"), [
    ("postgres://u:pw@db.local:5432/reel", "postgresql+asyncpg://u:pw@db.local:5432/reel"),
    ("postgresql://u:pw@db.local/reel", "postgresql+asyncpg://u:pw@db.local/reel"),
    ("postgresql+asyncpg://u:pw@127.0.0.1/reel", "postgresql+asyncpg://u:pw@127.0.0.1/reel"),
    ("postgresql+asyncpg://postgres@/postgres?host=/some/dir",
     "postgresql+asyncpg://postgres@/postgres?host=/some/dir"),
    ("postgres://postgres@/postgres?host=/tmp/pg-dir",
     "postgresql+asyncpg://postgres@/postgres?host=/tmp/pg-dir"),
    ("  postgresql://u@localhost/reel  ", "postgresql+asyncpg://u@localhost/reel"),
])
def test_urls_are_normalised_to_asyncpg(given: str, expected: str) -> None:
    assert normalise_database_url(given) == expected


def test_libpq_sslmode_becomes_asyncpg_ssl() -> None:
    url = normalise_database_url("postgres://u:pw@db.example/reel?sslmode=require")
    assert url.startswith("postgresql+asyncpg://u:pw@db.example/reel?")
    assert "ssl=require" in url
    assert "sslmode" not in url


@pytest.mark.parametrize("bad", ["mysql://u:secret-pw@h/db", "sqlite:///x.db", "not a url at all"])
def test_non_postgres_urls_are_refused_without_echoing_the_password(bad: str) -> None:
    with pytest.raises(ValidationError) as info:
        CatalogSettings(DATABASE_URL=bad)
    assert "secret-pw" not in str(info.value)


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://svc:hunter2@127.0.0.1:5433/catalog")
    monkeypatch.setenv("REELVAULT_PUBLIC_BASE_URL", "https://videos.example/")
    monkeypatch.setenv("REELVAULT_PROJECTION__WORKERS", "3")
    monkeypatch.setenv("REELVAULT_NAMESPACE", "staging")
    settings = CatalogSettings()
    assert settings.database_url == "postgresql+asyncpg://svc:hunter2@127.0.0.1:5433/catalog"
    assert settings.public_base_url == "https://videos.example"
    assert settings.projection.workers == 3
    assert settings.namespace == "staging"


def test_one_projection_field_set_keeps_the_catalog_defaults_of_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REELVAULT_PROJECTION__MAX_DELIVER", "5")
    monkeypatch.setenv("REELVAULT_PROJECTION__RETRY_BASE_S", "0.5")
    projection = CatalogSettings().projection
    assert (projection.max_deliver, projection.retry_base_s) == (5, 0.5)
    # Not ConsumerSettings' own defaults (ack_wait 60 s, one worker, retries up to 60 s).
    assert (projection.ack_wait_s, projection.workers, projection.retry_max_s) == (30.0, 64, 30.0)
    assert projection.max_ack_pending == 1000
    in_code = CatalogSettings(projection={"max_deliver": 3}).projection  # type: ignore[arg-type]
    assert (in_code.max_deliver, in_code.workers, in_code.ack_wait_s) == (3, 64, 30.0)


def test_projection_settings_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REELVAULT_PROJECTION__MAX_DELIVER", "1")
    with pytest.raises(ValidationError):
        CatalogSettings()


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "REELVAULT_PUBLIC_BASE_URL", "REELVAULT_PROJECTION__WORKERS"):
        monkeypatch.delenv(name, raising=False)
    settings = CatalogSettings()
    assert settings.public_base_url == "http://127.0.0.1:8000"
    assert settings.projection.workers == 64  # handlers in flight: they share transactions
    assert settings.projection_batch_size == 64
    assert settings.projection.ack_wait_s == 30.0
    assert settings.projection.max_deliver == 20
    assert settings.projection.max_ack_pending == 1000
    assert (settings.projection.retry_base_s, settings.projection.retry_max_s) == (1.0, 30.0)
    assert settings.db_outage_poll_s == 5.0
    assert settings.rpc_workers == 16
    assert settings.database_url.startswith("postgresql+asyncpg://")


def test_the_password_never_shows_in_repr_or_logs() -> None:
    settings = CatalogSettings(DATABASE_URL="postgres://svc:hunter2@db.local/catalog")
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings)
    assert "hunter2" not in settings.database_url_for_logs
    assert settings.database_url_for_logs == "postgresql+asyncpg://svc:***@db.local/catalog"


def test_the_price_table_defaults_and_comes_from_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REELVAULT_PRICES_USD_PER_SECOND", raising=False)
    defaults = CatalogSettings().prices_usd_per_second
    assert (defaults["sora-2"], defaults["sora-2-pro"]) == (Decimal("0.10"), Decimal("0.30"))
    assert defaults["veo-3.1-generate-preview"] == Decimal("0.40")  # every built-in model
    monkeypatch.setenv("REELVAULT_PRICES_USD_PER_SECOND", '{"sora-2": "0.12", "other": 0.5}')
    # The table replaces the default one (a model left out costs nothing).
    assert CatalogSettings().prices_usd_per_second == {
        "sora-2": Decimal("0.12"), "other": Decimal("0.5")}


@pytest.mark.parametrize("table", ['{"sora-2": -0.1}', '{"sora-2": "NaN"}', '["sora-2"]',
                                   '{"sora-2": "ten cents"}'])
def test_a_bad_price_table_is_refused(monkeypatch: pytest.MonkeyPatch, table: str) -> None:
    monkeypatch.setenv("REELVAULT_PRICES_USD_PER_SECOND", table)
    with pytest.raises(ValidationError):
        CatalogSettings()
