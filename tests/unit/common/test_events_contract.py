from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from reelvault_common.contracts.events import (
    ReferenceImage,
    StoredFile,
    VideoCompleted,
    VideoFailed,
    VideoRequested,
    VideoStored,
    parse_event,
)

VIDEO = uuid.UUID("0b9d7c59-7f37-4c55-9a7c-5a0f5c2f8e01")
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _requested(**overrides: object) -> VideoRequested:
    fields: dict[str, object] = dict(prompt="a cat", model="sora-2", seconds="4", size="720x1280")
    fields.update(overrides)
    return VideoRequested.new(video_id=VIDEO, org="acme", correlation_id="corr", **fields)


def test_same_fact_gives_same_event_id() -> None:
    assert _requested().event_id == _requested(prompt="other").event_id
    done_a = VideoCompleted.new(
        video_id=VIDEO,
        correlation_id="c",
        provider_job_id="video_1",
        provider="sora",
        source_url="u",
        expires_at=None,
        org="acme",
        requested_at=NOW,
    )
    done_b = VideoCompleted.new(
        video_id=VIDEO,
        correlation_id="c",
        provider_job_id="video_2",
        provider="sora",
        source_url="u",
        expires_at=None,
        org="acme",
        requested_at=NOW,
    )
    assert done_a.event_id != done_b.event_id


def test_failure_ids_differ_by_stage_and_code() -> None:
    ids = {
        VideoFailed.new(
            video_id=VIDEO, org="acme", correlation_id="c", stage=stage, code=code, message="m"
        ).event_id
        for stage in ("generation", "archive")
        for code in ("a", "b")
    }
    assert len(ids) == 4


def test_round_trip_through_json_for_every_shape() -> None:
    stored = VideoStored.new(
        video_id=VIDEO,
        org="acme",
        correlation_id="c",
        provider_job_id="video_1",
        video=StoredFile(
            bucket="videos", key="k/video.mp4", content_type="video/mp4", bytes=10, sha256="a" * 64
        ),
        thumbnail=None,
    )
    for event in (_requested(), stored):
        assert parse_event(event.model_dump_json()) == event


def test_unknown_fields_are_ignored_and_missing_ones_rejected() -> None:
    payload = _requested().model_dump(mode="json")
    payload["added_in_a_later_version"] = {"x": 1}
    assert parse_event(__import__("json").dumps(payload)).event_id == _requested().event_id
    del payload["prompt"]
    with pytest.raises(ValidationError):
        parse_event(__import__("json").dumps(payload))


def test_at_most_two_reference_images() -> None:
    image = ReferenceImage(bucket="hug-images", key="k.png", content_type="image/png")
    assert len(_requested(reference_images=(image, image)).reference_images) == 2
    with pytest.raises(ValidationError):
        _requested(reference_images=(image, image, image))


def test_naive_timestamps_are_rejected() -> None:
    with pytest.raises(ValidationError):
        VideoRequested(
            event_id=uuid.uuid4(),
            video_id=VIDEO,
            correlation_id="c",
            prompt="p",
            model="sora-2",
            seconds="4",
            size="720x1280",
            occurred_at=datetime(2026, 1, 1),
        )
