"""Archiver configuration, from the environment (``REELVAULT_*`` plus the well-known names
``NATS_URL``, ``OPENAI_BASE_URL``, ``OPENAI_API_KEY``, ``SUPABASE_*``)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator
from reelvault_common.runtime.settings import ProviderSettings, ServiceSettings, StorageSettings

MIB = 1024 * 1024


class ArchiverSettings(ServiceSettings, StorageSettings, ProviderSettings):
    """Broker + storage + provider settings, and how the archiver paces its work."""

    # Copies running at once (each holds one download and one upload).
    max_workers: int = Field(default=4, ge=1, le=64)
    # Messages each consumer holds in process (copying + waiting for a copy slot). Waiting ones
    # get slots earliest ``expires_at`` first and are heartbeated meanwhile. At least
    # ``max_workers`` (raised to it if lower). Larger orders more work by deadline; smaller
    # leaves more for other archiver replicas to pull.
    max_pending: int = Field(default=8, ge=1, le=256)
    # An idle archiver waits this long before starting the first copy of a pulled batch, so
    # the whole batch is ordered by deadline.
    schedule_gather_s: float = Field(default=0.02, ge=0, le=1)
    # Bytes per read from the provider; also the unit handed to storage (memory per copy).
    download_chunk_bytes: int = Field(default=MIB, ge=16 * 1024, le=16 * MIB)
    # JetStream redelivers an unacked message after this long...
    ack_wait_s: float = Field(default=60.0, gt=0)
    # ...so a running copy tells it "still working" this often.
    heartbeat_interval_s: float = Field(default=15.0, gt=0)

    # Retries of downloads (never of generations), always before the source's expires_at.
    retry_base_delay_s: float = Field(default=1.0, gt=0)
    retry_max_delay_s: float = Field(default=30.0, gt=0)
    # A 404 before expires_at may be the provider catching up; believe it after this many tries.
    not_found_attempts: int = Field(default=3, ge=1)
    # A copy whose stored bytes do not match what was streamed is retried this many times.
    verification_attempts: int = Field(default=3, ge=1)
    # Without an expires_at there is no deadline to stop at: give up after this many tries.
    max_attempts_without_deadline: int = Field(default=20, ge=1)
    # No new download attempt is scheduled closer than this to expires_at.
    min_time_left_s: float = Field(default=2.0, ge=0)
    # Provider thumbnail downloads tried in process before falling back to extracting a frame
    # from the stored video (a message-level retry would download the whole video again).
    thumbnail_attempts: int = Field(default=3, ge=1, le=10)
    # Extracted thumbnails: WebP, at most this many pixels on the longer side.
    thumbnail_max_side: int = Field(default=640, ge=64, le=4096)
    # Safety net only: the rules above end every archive long before this many deliveries
    # (within an hour of backoff capped at 30 s). A message that still fails on its last
    # delivery (a handler that keeps crashing) goes to the dead-letter stream.
    max_deliveries: int = Field(default=500, ge=2)

    @property
    def intake_per_consumer(self) -> int:
        return max(self.max_pending, self.max_workers)

    @model_validator(mode="after")
    def _heartbeat_inside_ack_wait(self) -> Self:
        if self.heartbeat_interval_s >= self.ack_wait_s:
            raise ValueError("heartbeat_interval_s must be shorter than ack_wait_s")
        if self.retry_max_delay_s < self.retry_base_delay_s:
            raise ValueError("retry_max_delay_s must be at least retry_base_delay_s")
        return self
