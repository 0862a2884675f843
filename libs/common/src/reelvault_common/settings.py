"""Settings base: every service reads its configuration from the environment.

Well-known variables keep their usual names (``NATS_URL``, ``DATABASE_URL``, ``OPENAI_API_KEY``,
``OPENAI_BASE_URL``, ``SUPABASE_*``); everything else is prefixed ``REELVAULT_``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

NAMESPACE_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,39}$")


class ServiceSettings(BaseSettings):
    """What every service needs: where the broker is and which namespace it lives in."""

    model_config = SettingsConfigDict(env_prefix="REELVAULT_", extra="ignore", frozen=True)

    nats_url: str = Field(default="nats://127.0.0.1:4222", validation_alias="NATS_URL")
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

    @field_validator("namespace")
    @classmethod
    def _namespace_shape(cls, value: str) -> str:
        if not NAMESPACE_PATTERN.fullmatch(value):
            raise ValueError("namespace must match [a-z][a-z0-9-]{0,39}")
        return value


class StorageSettings(BaseSettings):
    """Which object storage backend holds images, videos and thumbnails."""

    model_config = SettingsConfigDict(env_prefix="REELVAULT_", extra="ignore", frozen=True)

    storage_backend: Literal["filesystem", "supabase"] = "filesystem"
    storage_dir: Path = Path(".reelvault/storage")
    # Base URL under which the gateway serves filesystem objects (``/files/...``).
    public_base_url: str = "http://127.0.0.1:8000"
    # Signs filesystem download links; required for private buckets on the filesystem backend.
    storage_signing_key: SecretStr | None = None
    signed_url_ttl_s: int = Field(default=600, ge=1, le=7 * 24 * 3600)
    org: str = "default"

    bucket_videos: str = "videos"
    bucket_thumbnails: str = "thumbnails"
    bucket_images: str = "hug-images"
    bucket_brand_kits: str = "brand-kits"

    supabase_url: str | None = Field(default=None, validation_alias="SUPABASE_URL")
    supabase_storage_url: str | None = Field(default=None, validation_alias="SUPABASE_STORAGE_URL")
    supabase_service_role_key: SecretStr | None = Field(
        default=None, validation_alias="SUPABASE_SERVICE_ROLE_KEY"
    )
    # Supabase backend tuning: objects above this size go through TUS resumable upload.
    supabase_tus_threshold_bytes: int = Field(default=6 * 1024 * 1024, ge=0)
    supabase_timeout_s: float = Field(default=60.0, gt=0)


class ProviderSettings(BaseSettings):
    """How to reach the OpenAI-compatible Videos API (the simulator by default)."""

    model_config = SettingsConfigDict(env_prefix="REELVAULT_", extra="ignore", frozen=True)

    openai_base_url: str = Field(
        default="http://127.0.0.1:8100/v1", validation_alias="OPENAI_BASE_URL"
    )
    openai_api_key: SecretStr = Field(default=SecretStr(""), validation_alias="OPENAI_API_KEY")
    provider_timeout_s: float = Field(default=30.0, gt=0)
