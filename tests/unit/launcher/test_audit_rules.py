"""What ``reelvault audit`` decides: objects without a live row (removable only past the grace),
live rows missing their object (marked, once), sha256 mismatches (reported only)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from reelvault_common.contracts.catalog import StoredRow
from reelvault_common.storage.interface import ListedObject

from reelvault.audit_rules import (
    after_repair,
    missing_candidates,
    object_missing,
    objects_without_row,
    sha256_mismatch,
)

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
GRACE = timedelta(hours=24)


def row(org: str = "acme", status: str = "completed", *, sha: str | None = "a" * 64,
        thumbnail: bool = True, marked: datetime | None = None) -> StoredRow:
    video_id = uuid.uuid4()
    prefix = f"{org}/2026/05/{video_id}"
    return StoredRow(
        id=video_id, org=org, status=status, video_bucket="videos",
        video_key=f"{prefix}/video.mp4", thumbnail_bucket="thumbnails" if thumbnail else None,
        thumbnail_key=f"{prefix}/thumbnail.webp" if thumbnail else None, sha256=sha,
        bytes=10, storage_missing_at=marked,
    )


def listed(key: str, age: timedelta | None = timedelta(days=2)) -> ListedObject:
    return ListedObject(key=key, size=10, created_at=NOW - age if age is not None else None)


def test_objects_of_live_rows_are_fine_others_are_found() -> None:
    live, gone = row(), row(status="deleted")
    assert live.video_key and live.thumbnail_key and gone.video_key
    objects = {
        "videos": [listed(live.video_key), listed(gone.video_key),
                   listed("acme/2026/05/stray/video.mp4", timedelta(hours=1)),
                   listed("legacy.mp4", None)],
        "thumbnails": [listed(live.thumbnail_key)],
    }
    found = {f.key: f for f in objects_without_row(objects, [live, gone], NOW, GRACE)}
    assert set(found) == {gone.video_key, "acme/2026/05/stray/video.mp4", "legacy.mp4"}
    deleted = found[gone.video_key]
    assert (deleted.action, deleted.org, deleted.video_id) == ("remove", "acme", gone.id)
    stray = found["acme/2026/05/stray/video.mp4"]
    assert (stray.action, stray.org, stray.video_id) == ("too_recent", "acme", None)
    assert found["legacy.mp4"].action == "too_recent"  # age unknown: left alone
    assert found["legacy.mp4"].org is None
    assert all(f.problem == "object_without_row" and f.remains for f in found.values())


def test_the_grace_boundary() -> None:
    at_grace = [listed("acme/x/video.mp4", GRACE)]
    inside = [listed("acme/y/video.mp4", GRACE - timedelta(seconds=1))]
    [old] = objects_without_row({"videos": at_grace}, [], NOW, GRACE)
    [young] = objects_without_row({"videos": inside}, [], NOW, GRACE)
    assert (old.action, young.action) == ("remove", "too_recent")


def test_missing_candidates_are_live_rows_objects_not_listed() -> None:
    complete, no_thumb, gone = row(), row(thumbnail=False), row(status="deleted")
    assert complete.video_key and complete.thumbnail_key
    objects = {"videos": [listed(complete.video_key)], "thumbnails": []}
    candidates = missing_candidates([complete, no_thumb, gone], objects)
    assert [(r.id, oid) for r, oid in candidates] == [
        (complete.id, ("thumbnails", complete.thumbnail_key)),
        (no_thumb.id, ("videos", no_thumb.video_key)),
    ]
    # A bucket not listed (another audit's scope) is not judged.
    assert missing_candidates([no_thumb], {"thumbnails": []}) == []


def test_a_missing_object_is_marked_once() -> None:
    fresh = object_missing(row(), ("videos", "k"))
    assert (fresh.problem, fresh.action, fresh.remains) == ("object_missing", "mark", True)
    marked = object_missing(row(marked=NOW - timedelta(days=1)), ("videos", "k"))
    assert (marked.action, marked.remains) == ("already_marked", False)


def test_sha256_mismatch_is_report_only() -> None:
    video = row(sha="a" * 64)
    assert sha256_mismatch(video, ("videos", "k"), "a" * 64) is None
    assert sha256_mismatch(row(sha=None), ("videos", "k"), "b" * 64) is None
    mismatch = sha256_mismatch(video, ("videos", "k"), "b" * 64)
    assert mismatch is not None
    assert (mismatch.action, mismatch.remains) == ("report_only", True)
    assert after_repair(mismatch, True) == mismatch


def test_after_repair() -> None:
    [orphan] = objects_without_row({"videos": [listed("acme/z/video.mp4")]}, [], NOW, GRACE)
    assert after_repair(orphan, True).action == "removed"
    assert not after_repair(orphan, True).remains
    failed = after_repair(orphan, False, "storage unavailable")
    assert failed.action == "failed" and failed.remains
    assert failed.detail.endswith("storage unavailable")
    missing = object_missing(row(), ("videos", "k"))
    assert after_repair(missing, True).action == "marked"
    [young] = objects_without_row({"videos": [listed("acme/z/video.mp4", timedelta(0))]}, [],
                                  NOW, GRACE)
    assert after_repair(young, True) == young
