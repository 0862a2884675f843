"""Mapping the provider's Video object and errors onto the generator's decisions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx2
import pytest
from reelvault_common.contracts.events import VideoRequested
from reelvault_common.providers.openai_videos import ProviderError, VideoJob
from reelvault_generator.provider import create_outcome_unknown, job_from_video, matches_request
from reelvault_generator.starting import refusal_code, refusal_message


def video(**fields: Any) -> VideoJob:
    values: dict[str, Any] = {
        "id": "video_1", "model": "sora-2", "status": "queued", "progress": 0,
        "created_at": 1_790_000_000, "size": "1280x720", "seconds": "4", "prompt": "a cat",
        "completed_at": None, "expires_at": None, "error": None,
    }
    values.update(fields)
    return VideoJob.model_validate(values)


@pytest.mark.parametrize(("status", "phase"), [
    ("queued", "running"), ("in_progress", "running"), ("something_new", "running"),
    ("completed", "completed"),
    ("failed", "failed"), ("expired", "failed"), ("canceled", "failed"),
])
def test_statuses_map_to_phases(status: str, phase: str) -> None:
    assert job_from_video(video(status=status)).phase == phase


def test_completed_job_carries_its_expiry() -> None:
    job = job_from_video(video(status="completed", progress=100, completed_at=1_790_000_100,
                               expires_at=1_790_003_700))
    assert job.terminal
    assert job.expires_at == datetime.fromtimestamp(1_790_003_700, UTC)
    assert job.created_at == datetime.fromtimestamp(1_790_000_000, UTC)
    assert job.error_code is None


def test_failed_job_keeps_the_providers_code_and_message() -> None:
    job = job_from_video(video(status="failed", error={"code": "moderation_blocked",
                                                        "message": "Blocked."}))
    assert (job.error_code, job.error_message) == ("moderation_blocked", "Blocked.")


@pytest.mark.parametrize("status", ["failed", "expired", "canceled"])
def test_terminal_failure_without_error_uses_the_status_as_code(status: str) -> None:
    job = job_from_video(video(status=status, error=None))
    assert job.error_code == status
    assert job.error_message is not None
    assert status in job.error_message


def test_progress_is_clamped_and_null_means_zero() -> None:
    assert job_from_video(video(status="in_progress", progress=None)).progress == 0
    assert job_from_video(video(status="in_progress", progress=250)).progress == 100


def request(**fields: Any) -> VideoRequested:
    values: dict[str, Any] = {"prompt": "a cat", "model": "sora-2", "seconds": "4",
                              "size": "1280x720"}
    values.update(fields)
    return VideoRequested.new(video_id=uuid.uuid4(), org="acme", correlation_id="c", **values)


def test_matching_a_listed_job_to_the_request() -> None:
    job = job_from_video(video())
    assert matches_request(job, request())
    assert matches_request(job_from_video(video(model="sora-2-2025-10-06")), request())
    assert not matches_request(job, request(prompt="a dog"))
    assert not matches_request(job, request(seconds="8"))
    assert not matches_request(job, request(size="720x1280"))
    assert not matches_request(job, request(model="sora-2-pro"))
    assert not matches_request(job_from_video(video(prompt=None)), request())


def _transport_error(exc: Exception) -> ProviderError:
    try:
        raise ProviderError(str(exc), status=None) from exc
    except ProviderError as error:
        return error


def test_which_create_failures_leave_the_outcome_unknown() -> None:
    req = httpx2.Request("POST", "http://p/v1/videos")
    assert create_outcome_unknown(_transport_error(httpx2.ReadTimeout("t", request=req)))
    assert create_outcome_unknown(_transport_error(httpx2.RemoteProtocolError("x", request=req)))
    assert create_outcome_unknown(_transport_error(TimeoutError()))
    assert create_outcome_unknown(ProviderError("gateway", status=504))
    assert create_outcome_unknown(ProviderError("bad gateway", status=502))
    # Definite answers: nothing was created.
    assert not create_outcome_unknown(_transport_error(httpx2.ConnectError("refused", request=req)))
    assert not create_outcome_unknown(_transport_error(httpx2.ConnectTimeout("t", request=req)))
    for status in (400, 401, 403, 429, 500, 503):
        assert not create_outcome_unknown(ProviderError("x", status=status)), status


def test_refusals_keep_the_providers_code_and_param() -> None:
    error = ProviderError("Invalid value: '10'.", status=400, type="invalid_request_error",
                          code="invalid_value", param="seconds")
    assert refusal_code(error) == "invalid_value"
    assert "seconds" in refusal_message(error)
    assert "Invalid value: '10'." in refusal_message(error)
    assert refusal_code(ProviderError("m", status=400, param="size")) == "invalid_size"
    assert refusal_code(ProviderError("m", status=400, type="invalid_request_error")) == (
        "invalid_request_error"
    )
    assert refusal_code(ProviderError("m", status=403)) == "http_403"
