"""Archiver configuration, from the environment (``REELVAULT_*`` plus the well-known names
``NATS_URL``, ``OPENAI_BASE_URL``, ``OPENAI_API_KEY``, ``SUPABASE_*``)."""

from __future__ import annotations

from pydantic import Field
from reelvault_common.runtime.metrics import MetricsSettings
from reelvault_common.runtime.settings import (
    ConsumerSettings,
    ProviderSettings,
    ServiceSettings,
    StorageSettings,
)

MIB = 1024 * 1024


def archive_consumer_defaults() -> ConsumerSettings:
    """The delivery rules of each archiver consumer unless set otherwise.

    - ``workers`` (8): messages the consumer holds in process, copying or waiting for one of the
      ``max_workers`` copy slots (earliest ``expires_at`` first). Never fewer than
      ``max_workers`` (``consumers.intake`` raises it). More orders more work by deadline;
      fewer leaves more for other archiver replicas to pull.
    - ``ack_wait_s`` (60): a crashed archiver's message comes back after this long; work in
      process (waiting for a slot too) is kept alive by the runner's heartbeat.
    - ``retry_base_s``/``retry_max_s`` (1/30 s): download retries (always before the source's
      ``expires_at``) and unexpected failures back off between these.
    - ``max_deliver`` (500): a safety net only. The rules of ``decisions.py`` end every archive
      long before it (within an hour of backoff capped at 30 s); a message still failing on its
      last delivery (a handler that keeps crashing) goes to the dead-letter stream.
    """
    return ConsumerSettings(
        ack_wait_s=60.0, max_deliver=500, workers=8, retry_base_s=1.0, retry_max_s=30.0
    )


class ArchiverSettings(ServiceSettings, StorageSettings, ProviderSettings, MetricsSettings):
    """Broker + storage + provider settings, and how the archiver paces its work."""


    # The two durable consumers (``consumers.py``): ``video.completed`` and
    # ``video.archive.requested``, e.g. ``REELVAULT_COMPLETED__WORKERS=16`` or
    # ``REELVAULT_REARCHIVE__MAX_DELIVER=100``. A field set alone keeps the others' defaults.
    completed: ConsumerSettings = archive_consumer_defaults()
    rearchive: ConsumerSettings = archive_consumer_defaults()
    # ``video.deleted``: removes a deleted video's objects (``REELVAULT_DELETIONS__*``).
    deletions: ConsumerSettings = ConsumerSettings(
        ack_wait_s=30.0, max_deliver=50, workers=4, retry_base_s=1.0, retry_max_s=60.0
    )

    # Copies running at once, for both consumers together (each holds one download and one
    # upload).
    max_workers: int = Field(default=4, ge=1, le=64)
    # An idle archiver waits this long before starting the first copy of a pulled batch, so
    # the whole batch is ordered by deadline.
    schedule_gather_s: float = Field(default=0.02, ge=0, le=1)
    # Most bytes per socket read from the provider; the pieces read are handed to storage as
    # they are (memory per copy: a few of them).
    download_chunk_bytes: int = Field(default=MIB, ge=16 * 1024, le=16 * MIB)

    # When to stop retrying a download (always before the source's expires_at; the pacing of
    # the retries is each consumer's retry_base_s/retry_max_s).
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

    # Orphaned uploads (``orphans.py``): reference images no video referenced within
    # ``orphan_upload_grace_s`` of their upload are removed by a sweep every
    # ``orphan_sweep_interval_s`` (one replica sweeps per interval; 0 turns it off in this
    # process), ``orphan_batch_size`` uploads per question to the catalog, at most
    # ``orphan_max_deletions_per_s`` removals a second.
    orphan_upload_grace_s: float = Field(default=86400.0, ge=0)
    orphan_sweep_interval_s: float = Field(default=3600.0, ge=0)
    orphan_batch_size: int = Field(default=200, ge=1, le=1000)
    orphan_max_deletions_per_s: float = Field(default=20.0, gt=0)
