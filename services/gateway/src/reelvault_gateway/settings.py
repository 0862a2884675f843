"""Gateway configuration, from the environment (``REELVAULT_*`` plus the well-known names)."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr, field_validator
from reelvault_common.runtime.settings import REELVAULT_SETTINGS, ServiceSettings, StorageSettings
from reelvault_common.storage.layout import MB


class GatewaySettings(ServiceSettings, StorageSettings):
    model_config = REELVAULT_SETTINGS

    # REELVAULT_GATEWAY_HOST/PORT (what the launcher and compose set) or REELVAULT_HOST/PORT.
    host: str = Field(
        default="127.0.0.1",
        validation_alias=AliasChoices("REELVAULT_GATEWAY_HOST", "REELVAULT_HOST"),
    )
    port: int = Field(
        default=8000,
        ge=0,
        le=65535,
        validation_alias=AliasChoices("REELVAULT_GATEWAY_PORT", "REELVAULT_PORT"),
    )
    # After the request is durable in JetStream, how long to wait for the catalog to show it,
    # so a GET right after the 202 finds the video. A slow catalog never fails the request.
    create_visibility_timeout_s: float = Field(default=2.0, ge=0)
    # Same as the images bucket's limit (seed: 10 MB).
    max_upload_bytes: int = Field(default=10 * MB, gt=0)
    # JSON bodies are small (a prompt is at most 32000 characters).
    max_json_bytes: int = Field(default=1 * MB, gt=0)
    # How long a publish waits for the stream's ack before the request fails with 503.
    publish_timeout_s: float = Field(default=5.0, gt=0)
    # At start-up, how long to wait for the broker before serving anyway (not ready, 503s).
    broker_connect_wait_s: float = Field(default=5.0, ge=0)
    # /readyz asks the catalog with this timeout.
    readiness_timeout_s: float = Field(default=1.0, gt=0)
    # /api/list-videos follows cursors up to this many videos.
    list_all_max: int = Field(default=1000, ge=1)
    # Graceful shutdown: how long in-flight requests may run after SIGTERM.
    shutdown_grace_s: float = Field(default=10.0, gt=0)
    # How long an Idempotency-Key is remembered after its last use (at least 24 h).
    idempotency_ttl_s: float = Field(default=24 * 3600.0, ge=24 * 3600.0)
    # How long a key checked with the catalog is trusted without asking again. A revocation
    # reaches every gateway at once through the catalog's announcement; this bounds how long
    # one that missed the announcement still accepts the key (the promise is 5 s).
    key_cache_ttl_s: float = Field(default=3.0, gt=0, le=4.0)
    # Signs the gallery's session cookies (REELVAULT_SESSION_SECRET). Unset: a random secret
    # per process, so sessions end with the process and do not span replicas.
    session_secret: SecretStr | None = None
    # How long a gallery sign-in lasts (never past the key's own expiry).
    session_ttl_s: int = Field(default=12 * 3600, ge=60, le=30 * 86400)
    # Retry-After of the 503 that writes get while the maintenance flag is on.
    maintenance_retry_after_s: int = Field(default=30, ge=1)

    @property
    def secure_cookies(self) -> bool:
        """Cookies only over https when the gateway is served over https."""
        return self.public_base_url.lower().startswith("https://")

    @field_validator("session_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        # A short secret could be guessed offline from one cookie.
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("REELVAULT_SESSION_SECRET must have at least 16 characters")
        return value
