"""What to do about a copy: go ahead, retry later, or give up. Pure (no I/O, clock passed in).

Rules:
- a source past its ``expires_at`` is gone: ``source_expired``, nothing is reported stored;
- transient trouble (network, cut body, 5xx, 429, storage unavailable) is retried with backoff,
  but a retry is never scheduled past ``expires_at``; every retry is a download again, never a
  new generation;
- a 404 before ``expires_at`` is retried a few times, then ``source_not_found``;
- storage rule violations (too large, wrong type, conflicting bytes, missing bucket) are final
  and carry the storage's own code and message.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from reelvault_common.messaging.outcomes import nak_delay
from reelvault_common.providers.openai_videos import (
    VARIANT_MEDIA_TYPES,
    ContentVariant,
    ProviderError,
)
from reelvault_common.storage.interface import StorageError, TransientStorageError, Unauthorized

from reelvault_archiver.jobs import ArchiveJob
from reelvault_archiver.verification import VerificationFailed

# Types that tell nothing about the bytes: the documented type of the variant is used instead.
GENERIC_MEDIA_TYPES = frozenset({"application/octet-stream", "binary/octet-stream", ""})


@dataclass(frozen=True)
class RetryPolicy:
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    not_found_attempts: int = 3
    verification_attempts: int = 3
    max_attempts_without_deadline: int = 20
    min_time_left_s: float = 2.0


@dataclass(frozen=True)
class RetryIn:
    """Hand the message back; look again after ``delay`` seconds."""

    delay: float
    reason: str


@dataclass(frozen=True)
class GiveUp:
    """Final: report ``VideoFailed(stage="archive", code, message, retryable)``."""

    code: str
    message: str
    retryable: bool = False


Decision = RetryIn | GiveUp


def _when(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def source_expired(job: ArchiveJob, now: datetime, reason: str | None = None) -> GiveUp:
    assert job.expires_at is not None
    message = (
        f"The provider's copy of job {job.provider_job_id} expired at {_when(job.expires_at)} "
        f"(now {_when(now)}) before it was archived; it can no longer be downloaded."
    )
    if reason:
        message += f" Last error: {reason}"
    return GiveUp("source_expired", message)


def is_expired(job: ArchiveJob, now: datetime) -> bool:
    return job.expires_at is not None and now >= job.expires_at


def check_before_copy(
    job: ArchiveJob, *, attempt: int, now: datetime, policy: RetryPolicy
) -> GiveUp | None:
    """Reasons not to start a download at all (None: go ahead)."""
    if not job.has_valid_job_id:
        return GiveUp(
            "invalid_job_id", f"Provider job id {job.provider_job_id!r} is not a valid id."
        )
    if is_expired(job, now):
        return source_expired(job, now)
    if job.expires_at is None and attempt > policy.max_attempts_without_deadline:
        # Crash loops (redeliveries after ack_wait) end here too.
        return GiveUp(
            "source_unavailable",
            f"Gave up archiving job {job.provider_job_id} after {attempt - 1} attempts.",
            retryable=True,
        )
    return None


def retry_within_deadline(
    job: ArchiveJob,
    reason: str,
    *,
    attempt: int,
    now: datetime,
    policy: RetryPolicy,
    at_least_s: float = 0.0,
    rng: random.Random | None = None,
) -> Decision:
    """Backoff (or the provider's ``retry-after``), clipped so the retry happens before expiry."""
    backoff = nak_delay(attempt, base=policy.base_delay_s, cap=policy.max_delay_s, rng=rng)
    delay = max(backoff, at_least_s)
    if job.expires_at is None:
        if attempt >= policy.max_attempts_without_deadline:
            return GiveUp(
                "source_unavailable",
                f"Gave up archiving job {job.provider_job_id} after {attempt} attempts: {reason}",
                retryable=True,
            )
        return RetryIn(delay, reason)
    time_left = (job.expires_at - now).total_seconds()
    if time_left <= policy.min_time_left_s:
        return source_expired(job, now, reason) if time_left <= 0 else GiveUp(
            "source_expired",
            f"The provider's copy of job {job.provider_job_id} expires at "
            f"{_when(job.expires_at)}, too soon for another download attempt. Last error: {reason}",
        )
    return RetryIn(min(delay, time_left - policy.min_time_left_s), reason)


def describe_provider_error(error: ProviderError, variant: ContentVariant) -> str:
    if error.status is None:
        return f"{variant} download failed: {error.message}"
    label = f"HTTP {error.status} {error.code or error.type or ''}".strip()
    if error.status in (401, 403):
        # The provider's text may quote (part of) our key: keep it out of events.
        return f"{variant} download refused: {label}"
    return f"{variant} download: {label}: {error.message}"


def decide_on_error(
    error: Exception,
    *,
    job: ArchiveJob,
    variant: ContentVariant,
    attempt: int,
    now: datetime,
    policy: RetryPolicy,
    rng: random.Random | None = None,
) -> Decision | None:
    """The decision for a failed copy step, or None for an error this module does not know
    (the caller lets it propagate: the consumer retries it with its retry pacing)."""

    def retry(reason: str, at_least_s: float = 0.0) -> Decision:
        return retry_within_deadline(
            job, reason, attempt=attempt, now=now, policy=policy, at_least_s=at_least_s, rng=rng
        )

    if isinstance(error, ProviderError):
        reason = describe_provider_error(error, variant)
        if error.status == 404:
            if is_expired(job, now):
                return source_expired(job, now, reason)
            if attempt >= policy.not_found_attempts:
                return GiveUp(
                    "source_not_found",
                    f"The provider has no {variant} for job {job.provider_job_id} "
                    f"(404 on {attempt} attempts): {error.message}",
                )
            return retry(reason)
        if error.transient:
            return retry(reason, at_least_s=error.retry_after_s or 0.0)
        if error.status in (401, 403):
            # Our credentials, not the video: fixable while the source is still there.
            return retry(reason)
        return GiveUp("provider_error", f"The provider refused the download: {reason}")
    if isinstance(error, VerificationFailed):
        if attempt >= policy.verification_attempts:
            return GiveUp("verification_failed", f"{variant}: {error.message}")
        return retry(f"{variant} verification failed: {error.message}")
    if isinstance(error, TransientStorageError | Unauthorized):
        return retry(f"storage: {error.message}")
    if isinstance(error, StorageError):
        # PayloadTooLarge, MimeTypeNotAllowed, ObjectConflict, BucketNotFound, InvalidKey, ...
        return GiveUp(error.code, error.message)
    return None


def content_type_for(variant: ContentVariant, declared: str | None) -> str:
    """The type to store: what the provider declared, unless it says nothing useful."""
    if declared is not None:
        mime = declared.split(";", 1)[0].strip().lower()
        if mime not in GENERIC_MEDIA_TYPES:
            return mime
    return VARIANT_MEDIA_TYPES[variant]


def declared_length(headers: Mapping[str, str]) -> int | None:
    """``Content-Length`` when it describes the bytes we will read (no content-encoding).
    Pass ``httpx2.Headers`` (case-insensitive) or a mapping with lower-case names."""
    encoding = (headers.get("content-encoding") or "identity").strip().lower()
    raw = headers.get("content-length")
    if raw is None or encoding != "identity":
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value >= 0 else None
