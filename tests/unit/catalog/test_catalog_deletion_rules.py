"""Deletion's pure rules: what a tombstone announces, when retention expires a video, which
videos are canceled first, and that a tombstone never changes again in the projection."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from reelvault_catalog.deletion import (
    Tombstone,
    needs_cancel,
    retention_cutoff,
    stored_bytes,
    stored_objects,
)
from reelvault_catalog.projection import Unchanged, VideoState, project
from reelvault_common.contracts.events import ObjectRef, VideoDeleted

from tests.support.catalog_events import VideoStory

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def test_objects_and_bytes_of_a_row() -> None:
    row = {"video_bucket": "videos", "video_key": "acme/v.mp4", "thumbnail_bucket": None,
           "thumbnail_key": None, "bytes": 10, "thumbnail_bytes": None}
    assert stored_objects(row) == (ObjectRef(bucket="videos", key="acme/v.mp4"),)
    assert stored_bytes(row) == 10
    assert stored_objects({"video_bucket": None, "video_key": None}) == ()
    assert stored_bytes({"bytes": 5, "thumbnail_bytes": 7}) == 12


def test_retention_cutoff() -> None:
    assert retention_cutoff(NOW, None) is None
    assert retention_cutoff(NOW, 0) is None
    assert retention_cutoff(NOW, 30) == NOW - timedelta(days=30)


def test_only_unfinished_videos_are_canceled_first() -> None:
    assert needs_cancel("queued") and needs_cancel("processing")
    assert not needs_cancel("completed") and not needs_cancel("failed")


def test_a_tombstone_announces_the_same_event_every_time() -> None:
    row = {"id": uuid.uuid4(), "org": "acme", "correlation_id": "c", "deleted_at": NOW,
           "deleted_by": "k1", "video_bucket": "videos", "video_key": "acme/x/video.mp4",
           "thumbnail_bucket": "thumbnails", "thumbnail_key": "acme/x/thumbnail.webp",
           "bytes": 3, "thumbnail_bytes": 4, "deletion_announced_at": None}
    first, second = Tombstone.of(row).event(), Tombstone.of(row).event()
    assert isinstance(first, VideoDeleted)
    assert first.event_id == second.event_id
    assert first.bytes == 7 and len(first.objects) == 2
    assert not Tombstone.of(row).announced
    assert Tombstone.of({**row, "deletion_announced_at": NOW}).announced


def test_nothing_changes_a_tombstone() -> None:
    story = VideoStory()
    tombstone = VideoState(status="deleted")
    for event in (story.started(), story.progressed(50), story.completed(), story.stored(),
                  story.failed(), story.deleted()):
        outcome = project(tombstone, event, now=NOW, public_base_url="http://gw")
        assert isinstance(outcome, Unchanged), event.type


def test_video_deleted_never_waits_for_a_row() -> None:
    outcome = project(None, VideoStory().deleted(), now=NOW, public_base_url="http://gw")
    assert isinstance(outcome, Unchanged)
