"""Settings base: every service reads its configuration from the environment.

Well-known variables keep their usual names (``NATS_URL``, ``DATABASE_URL``, ``OPENAI_API_KEY``,
``OPENAI_BASE_URL``, ``SUPABASE_*``); everything else is prefixed ``REELVAULT_``.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from reelvault_common.providers.models import BUILT_IN_MODELS, PROVIDER_KINDS, ProviderKind
from reelvault_common.runtime.nats_servers import NatsServer, parse_nats_servers, servers_for_logs

NAMESPACE_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,39}$")


# Every settings class reads the same way (a class with several bases keeps the last one's
# config, so each base carries all of it): ``REELVAULT_<FIELD>``, nested fields as
# ``REELVAULT_<FIELD>__<SUBFIELD>``, and setting one nested field keeps the others' defaults.
REELVAULT_SETTINGS = SettingsConfigDict(
    env_prefix="REELVAULT_",
    env_nested_delimiter="__",
    nested_model_default_partial_update=True,
    extra="ignore",
    frozen=True,
    # Validation errors must not echo the input: NATS_URL and keys may carry secrets.
    hide_input_in_errors=True,
)


class ConsumerSettings(BaseModel):
    """The delivery rules of one durable consumer, the same shape in every service.

    Set per consumer with ``REELVAULT_<CONSUMER>__<FIELD>``, e.g.
    ``REELVAULT_PROJECTION__MAX_DELIVER=30`` or ``REELVAULT_REQUESTS__WORKERS=32``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # A delivery neither acked nor nak'd (a crashed or stuck handler) comes back after this.
    ack_wait_s: float = Field(default=60.0, gt=0)
    # The delivery on which a message still failing goes to the dead-letter stream.
    max_deliver: int = Field(default=20, ge=2)
    max_ack_pending: int = Field(default=1000, ge=1)
    # Messages handled at once per replica.
    workers: int = Field(default=1, ge=1, le=1024)
    # Failed deliveries wait exponentially longer (with jitter), from retry_base_s up to
    # retry_max_s.
    retry_base_s: float = Field(default=1.0, gt=0)
    retry_max_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _retry_bounds(self) -> ConsumerSettings:
        if self.retry_max_s < self.retry_base_s:
            raise ValueError("retry_max_s must be at least retry_base_s")
        return self


class ServiceSettings(BaseSettings):
    """What every service needs: where the broker is and which namespace it lives in."""

    model_config = REELVAULT_SETTINGS

    # One server or a comma-separated list (cluster seeds; the client fails over between
    # them). Use ``nats_servers`` / ``nats_server_urls`` to connect, ``nats_url_for_logs`` to
    # show it; repr=False: it may carry credentials.
    nats_url: str = Field(
        default="nats://127.0.0.1:4222", validation_alias="NATS_URL", repr=False
    )
    # Start-up: how long a service waits for NATS (and the catalog for PostgreSQL) before it
    # gives up and exits non-zero (``REELVAULT_STARTUP_TIMEOUT_S``).
    startup_timeout_s: float = Field(default=120.0, gt=0)
    # Namespaces isolate stream, subjects, consumers and KV buckets (tests run side by side).
    namespace: str = "reelvault"
    stream_replicas: int = Field(default=1, ge=1, le=5)
    stream_max_age_days: float = Field(default=30, gt=0)
    stream_duplicate_window_s: float = Field(default=600, gt=0)
    rpc_timeout_s: float = Field(default=5.0, gt=0)
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    # Graceful shutdown (SIGTERM): how long in-flight work may run before it is handed back
    # (``REELVAULT_SHUTDOWN_GRACE_S``). Keep it below the supervisor's kill timeout.
    shutdown_grace_s: float = Field(default=10.0, gt=0)

    @field_validator("nats_url", mode="before")
    @classmethod
    def _nats_url_list(cls, value: object) -> object:
        # Also accept a list of URLs (settings built in code).
        if isinstance(value, (list, tuple)):
            return ",".join(str(item) for item in value)
        return value

    @field_validator("nats_url")
    @classmethod
    def _nats_url_shape(cls, value: str) -> str:
        return ",".join(server.url for server in parse_nats_servers(value))

    @property
    def nats_servers(self) -> tuple[NatsServer, ...]:
        """``NATS_URL`` parsed: every server, in the order given (validated at load; parsed
        again when asked, which is only when connecting or logging)."""
        return parse_nats_servers(self.nats_url)

    @property
    def nats_server_urls(self) -> list[str]:
        """What a NATS client connects to (``nats.connect(servers=...)``, ``NatsBroker``)."""
        return [server.url for server in self.nats_servers]

    @property
    def nats_url_for_logs(self) -> str:
        return servers_for_logs(self.nats_servers)

    @field_validator("namespace")
    @classmethod
    def _namespace_shape(cls, value: str) -> str:
        if not NAMESPACE_PATTERN.fullmatch(value):
            raise ValueError("namespace must match [a-z][a-z0-9-]{0,39}")
        return value


class StorageSettings(BaseSettings):
    """Which object storage backend holds images, videos and thumbnails."""

    model_config = REELVAULT_SETTINGS

    storage_backend: Literal["filesystem", "supabase"] = "filesystem"
    storage_dir: Path = Path(".reelvault/storage")
    # Base URL under which the gateway serves filesystem objects (``/files/...``).
    public_base_url: str = "http://127.0.0.1:8000"
    # Signs filesystem download links; required for private buckets on the filesystem backend.
    storage_signing_key: SecretStr | None = None
    signed_url_ttl_s: int = Field(default=600, ge=1, le=7 * 24 * 3600)

    bucket_videos: str = "videos"
    bucket_thumbnails: str = "thumbnails"
    bucket_images: str = "hug-images"
    bucket_brand_kits: str = "brand-kits"

    supabase_url: str | None = Field(default=None, validation_alias="SUPABASE_URL")
    supabase_storage_url: str | None = Field(default=None, validation_alias="SUPABASE_STORAGE_URL")
    supabase_service_role_key: SecretStr | None = Field(
        default=None, validation_alias="SUPABASE_SERVICE_ROLE_KEY"
    )
    # Supabase backend tuning: objects above this size stream straight to their key (smaller
    # ones are spooled first, with their sha256 in the object's metadata) ...
    supabase_tus_threshold_bytes: int = Field(default=6 * 1024 * 1024, ge=0)
    # ... as one standard upload up to this size (Supabase's documented maximum), by TUS above.
    supabase_standard_upload_max_bytes: int = Field(default=5 * 1024**3, ge=0)
    supabase_timeout_s: float = Field(default=60.0, gt=0)


# USD per generated second of each model: what a video is estimated to cost.
# The built-in models' list prices (their smallest size); an operator's table replaces it.
DEFAULT_PRICES_USD_PER_SECOND: dict[str, Decimal] = {
    spec.id: spec.usd_per_second
    for specs in BUILT_IN_MODELS.values()
    for spec in specs
    if spec.usd_per_second is not None
}


class PriceSettings(BaseSettings):
    """The price table (``REELVAULT_PRICES_USD_PER_SECOND``, a JSON object of model -> USD per
    second): the catalog's cost quotas and the generator's cost metric read the same one. A
    model missing here is estimated at 0."""

    model_config = REELVAULT_SETTINGS

    prices_usd_per_second: dict[str, Decimal] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES_USD_PER_SECOND)
    )

    @field_validator("prices_usd_per_second")
    @classmethod
    def _prices_are_amounts(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for model, price in value.items():
            if not price.is_finite() or price < 0:
                raise ValueError(f"the price of {model!r} must be a finite amount >= 0")
        return value


class ProviderSettings(BaseSettings):
    """How to reach each video provider, and which provider makes which model.

    Each provider has a base URL and a key under its usual names (``OPENAI_*``,
    ``OPENROUTER_*``, ``GEMINI_*``). ``REELVAULT_MODEL_ROUTES`` (JSON, model -> provider) says
    which models this deployment offers; unset, every built-in model of each provider that has
    a key is offered (the OpenAI protocol's alone when no key is set: the local simulator).
    """

    model_config = REELVAULT_SETTINGS

    openai_base_url: str = Field(
        default="http://127.0.0.1:8100/v1", validation_alias="OPENAI_BASE_URL"
    )
    openai_api_key: SecretStr = Field(default=SecretStr(""), validation_alias="OPENAI_API_KEY")
    openrouter_base_url: str = Field(
        default="https://openrouter.ai/api/v1", validation_alias="OPENROUTER_BASE_URL"
    )
    openrouter_api_key: SecretStr = Field(
        default=SecretStr(""), validation_alias="OPENROUTER_API_KEY"
    )
    gemini_base_url: str = Field(
        default="https://generativelanguage.googleapis.com", validation_alias="GEMINI_BASE_URL"
    )
    gemini_api_key: SecretStr = Field(default=SecretStr(""), validation_alias="GEMINI_API_KEY")
    model_routes: dict[str, ProviderKind] = Field(default_factory=dict)
    # The model of a request that names none (else sora-2 when offered, else the first).
    default_model: str | None = None
    provider_timeout_s: float = Field(default=30.0, gt=0)

    def provider_key(self, provider: str) -> SecretStr:
        keys = {"openai": self.openai_api_key, "openrouter": self.openrouter_api_key,
                "gemini": self.gemini_api_key}
        return keys.get(provider, SecretStr(""))

    def routes(self) -> dict[str, ProviderKind]:
        """Model -> provider of this deployment."""
        if self.model_routes:
            return dict(self.model_routes)
        keyed = [p for p in PROVIDER_KINDS if self.provider_key(p).get_secret_value()]
        routes: dict[str, ProviderKind] = {}
        for provider in keyed or ["openai"]:
            routes |= {spec.id: provider for spec in BUILT_IN_MODELS[provider]}
        return routes

    def chosen_default_model(self) -> str | None:
        routes = self.routes()
        if self.default_model is not None:
            return self.default_model
        return "sora-2" if "sora-2" in routes else next(iter(routes), None)

    @model_validator(mode="after")
    def _default_model_is_offered(self) -> ProviderSettings:
        if self.default_model is not None and self.default_model not in self.routes():
            raise ValueError(
                f"REELVAULT_DEFAULT_MODEL={self.default_model!r} is not among the models "
                f"offered: {', '.join(self.routes())}"
            )
        return self
