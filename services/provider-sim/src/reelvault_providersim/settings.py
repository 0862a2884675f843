"""Simulator configuration, read from ``PROVIDER_SIM_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from reelvault_providersim.faults import FaultSettings


class SimSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PROVIDER_SIM_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8100, ge=0, le=65535)
    # Required: a simulator that accepts any key would hide auth bugs in its clients.
    api_key: SecretStr
    content_ttl_s: float = Field(default=3600, gt=0)
    # Create -> completed; queued for the first 10 %, then progress rises linearly.
    generation_s: float = Field(default=3.0, ge=0)
    fps: int = Field(default=8, ge=1, le=60)
    # None: a temporary directory made at start-up and removed at shutdown.
    data_dir: Path | None = None
    seed: int = 0
    # Load tests: 1 fps real MP4s, no generation delay, small previews.
    fast_mode: bool = False
    # Load tests of the pipeline (not of the provider): render one clip per (size, seconds)
    # and give every later job of that shape a copy of it (a hard link), so the provider's
    # encode time -- a real provider's GPUs, 80-140 ms of CPU here per fast-mode clip -- does
    # not dominate the machine. Prompts and reference images then do not change the pixels.
    reuse_renders: bool = False
    poll_after_ms: int | None = Field(default=None, ge=0)
    # Serve /content as a 302 to an unauthenticated tokenised URL, as real CDNs do.
    content_redirect: bool = False
    content_url_ttl_s: float = Field(default=300, gt=0)
    # Grow each MP4 (trailing top-level ``free`` box) to at least this many bytes.
    pad_video_to_bytes: int | None = Field(default=None, ge=0)
    # Renders running at once; more jobs wait for a worker (and complete later).
    render_workers: int = Field(default=2, ge=1, le=64)
    # Test-only /_sim routes (job listing, sha256, fault control). On by default: a dev tool.
    admin_enabled: bool = True
    # Loopback http(s) image_url references are fetched; other hosts are refused (no SSRF).
    fetch_loopback_image_urls: bool = True
    log_level: str = "INFO"
    # SIGTERM: requests in flight get this long to finish before the process exits 0.
    shutdown_grace_s: float = Field(default=10.0, gt=0)

    # Standard Webhooks deliveries of video.completed / video.failed.
    webhook_urls: list[str] = Field(default_factory=list)
    webhook_secret: SecretStr | None = None
    webhook_max_attempts: int = Field(default=8, ge=1)
    webhook_backoff_s: float = Field(default=0.5, gt=0)
    webhook_backoff_max_s: float = Field(default=30.0, gt=0)
    webhook_timeout_s: float = Field(default=5.0, gt=0)

    faults: FaultSettings = Field(default_factory=FaultSettings)

    # OpenRouter (/api/v1) and Gemini (/v1beta): their own keys if set, else ``api_key``.
    openrouter_api_key: SecretStr | None = None
    gemini_api_key: SecretStr | None = None
    # OpenRouter does not document how long outputs stay; Gemini keeps them 2 days.
    openrouter_content_ttl_s: float = Field(default=3600, gt=0)
    gemini_content_ttl_s: float = Field(default=2 * 24 * 3600, gt=0)
    # OpenRouter's workspace settings: default callback URL and the signing secret.
    openrouter_callback_url: str | None = None
    openrouter_webhook_secret: SecretStr | None = None
    # Signs deliveries to a Gemini request's webhookConfig.uris (see the README).
    gemini_webhook_secret: SecretStr | None = None
    # Per-request callback URLs must be https; plain http is accepted for loopback hosts
    # only, and only while this is on (local runs serve http).
    allow_http_loopback_callbacks: bool = True
    # Callbacks to hosts other than loopback are accepted but not sent (recorded as
    # skipped), so the simulator never reaches out to the network unless told to.
    deliver_non_loopback_callbacks: bool = False
    # Models that answer 404 as retired, on top of each protocol's built-in list.
    retired_models: list[str] = Field(default_factory=list)

    def protocol_api_key(self, protocol: str) -> str:
        override = {"openrouter": self.openrouter_api_key, "gemini": self.gemini_api_key}.get(
            protocol
        )
        return (override or self.api_key).get_secret_value()

    @field_validator("api_key")
    @classmethod
    def _api_key_present(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("PROVIDER_SIM_API_KEY must be set to a non-empty key")
        return value

    @property
    def effective_fps(self) -> int:
        return 1 if self.fast_mode else self.fps

    @property
    def effective_generation_s(self) -> float:
        return 0.0 if self.fast_mode else self.generation_s
