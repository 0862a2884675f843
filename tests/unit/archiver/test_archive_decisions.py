"""The copy decisions: deadlines, retry budgets inside expires_at, error mapping. No I/O."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from reelvault_archiver.decisions import (
    GiveUp,
    RetryIn,
    RetryPolicy,
    check_before_copy,
    content_type_for,
    decide_on_error,
    declared_length,
    retry_within_deadline,
)
from reelvault_archiver.jobs import ArchiveJob
from reelvault_archiver.verification import VerificationFailed
from reelvault_common.providers.openai_videos import ProviderError
from reelvault_common.storage.interface import (
    BucketNotFound,
    MimeTypeNotAllowed,
    ObjectConflict,
    PayloadTooLarge,
    TransientStorageError,
    Unauthorized,
)

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
POLICY = RetryPolicy(base_delay_s=1.0, max_delay_s=30.0, not_found_attempts=3,
                     verification_attempts=2, max_attempts_without_deadline=5, min_time_left_s=2.0)


def job(expires_in_s: float | None = 3600, job_id: str = "video_abc123") -> ArchiveJob:
    return ArchiveJob(
        video_id=uuid.uuid4(),
        correlation_id="c",
        provider="openai",
        provider_job_id=job_id,
        org="acme",
        requested_at=NOW - timedelta(minutes=5),
        expires_at=None if expires_in_s is None else NOW + timedelta(seconds=expires_in_s),
    )


def decide(error: Exception, *, the_job: ArchiveJob | None = None, attempt: int = 1,
           variant: str = "video") -> RetryIn | GiveUp | None:
    return decide_on_error(error, job=the_job or job(), variant=variant,  # type: ignore[arg-type]
                           attempt=attempt, now=NOW, policy=POLICY, rng=random.Random(7))


# --- before the copy ----------------------------------------------------------------------
def test_expired_source_is_refused_with_a_clear_message() -> None:
    refusal = check_before_copy(job(expires_in_s=-1), attempt=1, now=NOW, policy=POLICY)
    assert isinstance(refusal, GiveUp)
    assert refusal.code == "source_expired"
    assert not refusal.retryable
    assert "video_abc123" in refusal.message
    assert "expired at 2026-05-01T11:59:59" in refusal.message


def test_expiry_is_inclusive() -> None:
    refusal = check_before_copy(job(expires_in_s=0), attempt=1, now=NOW, policy=POLICY)
    assert isinstance(refusal, GiveUp)
    assert refusal.code == "source_expired"


def test_live_source_goes_ahead() -> None:
    assert check_before_copy(job(expires_in_s=1), attempt=50, now=NOW, policy=POLICY) is None


@pytest.mark.parametrize("bad_id", ["../admin", "video_1/../../x", "video?x=1", "", "a b"])
def test_job_ids_that_could_steer_the_url_are_refused(bad_id: str) -> None:
    refusal = check_before_copy(job(job_id=bad_id), attempt=1, now=NOW, policy=POLICY)
    assert isinstance(refusal, GiveUp)
    assert refusal.code == "invalid_job_id"


def test_without_deadline_attempts_are_bounded() -> None:
    assert check_before_copy(job(None), attempt=5, now=NOW, policy=POLICY) is None
    refusal = check_before_copy(job(None), attempt=6, now=NOW, policy=POLICY)
    assert isinstance(refusal, GiveUp)
    assert refusal.code == "source_unavailable"
    assert refusal.retryable


# --- retry budget within expires_at -------------------------------------------------------
def test_retry_delay_follows_backoff_when_far_from_expiry() -> None:
    decision = retry_within_deadline(job(3600), "x", attempt=4, now=NOW, policy=POLICY,
                                     rng=random.Random(1))
    assert isinstance(decision, RetryIn)
    assert 4.0 <= decision.delay <= 8.0  # full jitter in [ceiling/2, ceiling], ceiling 2**3


def test_retry_is_never_scheduled_past_expiry() -> None:
    decision = retry_within_deadline(job(10), "x", attempt=10, now=NOW, policy=POLICY)
    assert isinstance(decision, RetryIn)
    assert decision.delay <= 10 - POLICY.min_time_left_s


def test_retry_after_is_honoured_but_clipped_to_expiry() -> None:
    far = retry_within_deadline(job(3600), "429", attempt=1, now=NOW, policy=POLICY,
                                at_least_s=45)
    assert isinstance(far, RetryIn)
    assert far.delay == 45
    near = retry_within_deadline(job(20), "429", attempt=1, now=NOW, policy=POLICY, at_least_s=45)
    assert isinstance(near, RetryIn)
    assert near.delay == pytest.approx(18)


def test_no_time_left_for_another_attempt_means_source_expired() -> None:
    decision = retry_within_deadline(job(1.5), "HTTP 502", attempt=3, now=NOW, policy=POLICY)
    assert isinstance(decision, GiveUp)
    assert decision.code == "source_expired"
    assert "HTTP 502" in decision.message


def test_without_deadline_retries_until_the_attempt_budget() -> None:
    assert isinstance(retry_within_deadline(job(None), "x", attempt=4, now=NOW, policy=POLICY),
                      RetryIn)
    final = retry_within_deadline(job(None), "x", attempt=5, now=NOW, policy=POLICY)
    assert isinstance(final, GiveUp)
    assert final.code == "source_unavailable"
    assert final.retryable


# --- error mapping ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "error",
    [
        ProviderError("connection reset", status=None),
        ProviderError("download broke off", status=None),
        ProviderError("bad gateway", status=502),
        ProviderError("server error", status=500),
        ProviderError("slow down", status=429, retry_after_s=3),
        TransientStorageError("storage 503"),
    ],
)
def test_transient_errors_are_retried(error: Exception) -> None:
    assert isinstance(decide(error), RetryIn)


def test_rate_limit_waits_at_least_retry_after() -> None:
    decision = decide(ProviderError("slow down", status=429, retry_after_s=12.5))
    assert isinstance(decision, RetryIn)
    assert decision.delay >= 12.5


def test_not_found_before_expiry_is_retried_a_few_times_then_fails() -> None:
    error = ProviderError("Video with id 'video_abc123' not found.", status=404)
    assert isinstance(decide(error, attempt=1), RetryIn)
    assert isinstance(decide(error, attempt=2), RetryIn)
    final = decide(error, attempt=3)
    assert isinstance(final, GiveUp)
    assert final.code == "source_not_found"
    assert not final.retryable


def test_not_found_after_expiry_is_source_expired() -> None:
    decision = decide(ProviderError("gone", status=404), the_job=job(-5))
    assert isinstance(decision, GiveUp)
    assert decision.code == "source_expired"


def test_auth_refusal_is_retried_and_keeps_the_provider_text_out() -> None:
    error = ProviderError("Incorrect API key provided: sk-a****wxyz", status=401,
                          code="invalid_api_key")
    decision = decide(error)
    assert isinstance(decision, RetryIn)
    assert "sk-a" not in decision.reason
    assert "401" in decision.reason


def test_other_client_errors_are_final() -> None:
    decision = decide(ProviderError("Invalid value: 'x'", status=400, code="invalid_value"))
    assert isinstance(decision, GiveUp)
    assert decision.code == "provider_error"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (PayloadTooLarge("object exceeds the 500 MB limit of bucket videos"), "payload_too_large"),
        (MimeTypeNotAllowed("mime type text/plain is not supported"), "mime_type_not_allowed"),
        (ObjectConflict("videos/k already holds different bytes"), "object_conflict"),
        (BucketNotFound("Bucket not found: videos"), "bucket_not_found"),
    ],
)
def test_storage_rule_violations_fail_with_the_storage_code_and_message(
    error: Exception, code: str
) -> None:
    decision = decide(error, attempt=1)
    assert isinstance(decision, GiveUp)
    assert decision.code == code
    assert decision.message == str(error)
    assert not decision.retryable


def test_storage_unauthorized_is_retried() -> None:
    assert isinstance(decide(Unauthorized("bad jwt")), RetryIn)


def test_verification_failure_is_retried_then_final() -> None:
    error = VerificationFailed("stored object has 10 bytes, streamed 12")
    assert isinstance(decide(error, attempt=1), RetryIn)
    final = decide(error, attempt=2)
    assert isinstance(final, GiveUp)
    assert final.code == "verification_failed"
    assert "10 bytes" in final.message


def test_unknown_errors_are_left_to_the_caller() -> None:
    assert decide(RuntimeError("bug")) is None


# --- content facts ------------------------------------------------------------------------
def test_content_type_prefers_the_declared_type_unless_generic() -> None:
    assert content_type_for("video", "video/mp4") == "video/mp4"
    assert content_type_for("thumbnail", "image/png; charset=binary") == "image/png"
    assert content_type_for("video", "application/octet-stream") == "video/mp4"
    assert content_type_for("thumbnail", None) == "image/webp"


def test_declared_length_only_when_it_describes_the_read_bytes() -> None:
    assert declared_length({"content-length": "1234"}) == 1234
    assert declared_length({}) is None
    assert declared_length({"content-length": "1234", "content-encoding": "gzip"}) is None
    assert declared_length({"content-length": "nope"}) is None
