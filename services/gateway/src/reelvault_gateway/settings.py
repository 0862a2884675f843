"""Gateway configuration, from the environment (``REELVAULT_*`` plus the well-known names)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
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
