"""The catalog's projection rules: the row as it is + one lifecycle event -> what to write.

Pure (no I/O, no clock: the caller passes ``now``), so every rule is unit-tested on its own.

Delivery is at-least-once and only roughly ordered, so the rules make the final row depend on
WHICH events arrived, not on their order or on how often:
- status only moves forward: queued(0) < processing(1) < completed | failed (2, terminal).
  The one move between terminal states: ``video.stored`` turns ``failed`` into ``completed``
  (the bytes ARE in permanent storage, e.g. after a re-archive). Nothing leaves ``completed``.
- ``completed`` means the file is in permanent storage: ``video.completed`` (the provider
  finished) keeps the row ``processing`` and only records the provider's URL and expiry.
- progress only grows, and never changes on a terminal row.
- a queued video's estimated start (``video.generation.waiting``) is written only while it is
  queued, and cleared by ``generation.started``.
- facts about the provider's job (provider, job id) fill gaps whatever the status, so a late
  ``generation.started`` still completes the record without moving the status.
- an event for a row that does not exist yet waits (``Wait``): its ``video.requested`` is on
  the way (redelivered, or processed by another worker right now).
- only changed columns are written; a redelivered event changes nothing (``Unchanged``).
- a deleted video's row (a tombstone) never changes again: events still on their way for it
  (a late ``video.stored``, say) are recorded as nothing. Deleting is the catalog's own
  write (``deletion.py``), so ``video.deleted`` changes nothing here either.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from reelvault_common.contracts.catalog import VideoStatus
from reelvault_common.contracts.events import (
    VideoArchiveRequested,
    VideoCancelRequested,
    VideoCompleted,
    VideoDeleted,
    VideoEvent,
    VideoFailed,
    VideoGenerationProgressed,
    VideoGenerationStarted,
    VideoGenerationWaiting,
    VideoRequested,
    VideoStored,
)

STATUS_RANK: dict[str, int] = {"queued": 0, "processing": 1, "completed": 2, "failed": 2}
TERMINAL_STATUSES = frozenset({"completed", "failed"})


def is_terminal(status: str) -> bool:
    return status in TERMINAL_STATUSES


@dataclass(frozen=True)
class VideoState:
    """The columns of a catalog row that the rules read (and may write)."""

    status: VideoStatus | Literal["deleted"]
    progress: int = 0
    provider: str | None = None
    provider_job_id: str | None = None
    openai_url: str | None = None
    expires_at: datetime | None = None
    cost_usd: Decimal | None = None
    video_url: str | None = None
    video_bucket: str | None = None
    video_key: str | None = None
    thumbnail_url: str | None = None
    thumbnail_bucket: str | None = None
    thumbnail_key: str | None = None
    thumbnail_bytes: int | None = None
    bytes: int | None = None
    sha256: str | None = None
    stored_at: datetime | None = None
    error_stage: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    failed_at: datetime | None = None
    estimated_start_at: datetime | None = None
    queue_position: int | None = None

    def with_changes(self, changes: Mapping[str, Any]) -> VideoState:
        """This state after ``changes`` were written (columns the state does not track are
        ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if k in STATE_FIELDS})


STATE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(VideoState))


@dataclass(frozen=True)
class Insert:
    """Create the row (idempotently: a concurrent insert of the same id wins, ours is dropped)."""

    values: Mapping[str, Any]


@dataclass(frozen=True)
class Update:
    """Write these columns (only the ones that change, plus ``updated_at``)."""

    changes: Mapping[str, Any]


@dataclass(frozen=True)
class Unchanged:
    reason: str


@dataclass(frozen=True)
class Wait:
    """The row does not exist yet: hand the event back and look again later."""

    reason: str


Outcome = Insert | Update | Unchanged | Wait


def video_link(public_base_url: str, video_id: object) -> str:
    """The permanent link to a stored video: the gateway redirects it to a fresh signed URL."""
    return f"{public_base_url.rstrip('/')}/v1/videos/{video_id}/content"


def thumbnail_link(public_base_url: str, video_id: object) -> str:
    return f"{video_link(public_base_url, video_id)}?variant=thumbnail"


def project(
    state: VideoState | None, event: VideoEvent, *, now: datetime, public_base_url: str
) -> Outcome:
    """What ``event`` does to a row currently in ``state`` (``None``: no row yet)."""
    if isinstance(event, VideoRequested):
        if state is not None:
            return Unchanged("already recorded")
        return Insert(requested_row(event, now=now))
    if isinstance(event, VideoArchiveRequested):
        # A command for the archiver; its outcome arrives as video.stored or video.failed.
        return Unchanged("archive requests do not change the row")
    if isinstance(event, VideoCancelRequested):
        return Unchanged("the generator answers a cancel with video.failed")
    if isinstance(event, VideoDeleted):
        return Unchanged("the catalog wrote the tombstone when it deleted the video")
    if state is None:
        return Wait(f"{event.type} before video.requested")
    if state.status == "deleted":
        return Unchanged("the video is deleted")

    if isinstance(event, VideoGenerationStarted):
        wanted = _started(state, event)
    elif isinstance(event, VideoGenerationWaiting):
        wanted = _waiting(state, event)
    elif isinstance(event, VideoGenerationProgressed):
        wanted = _progressed(state, event)
    elif isinstance(event, VideoCompleted):
        wanted = _completed(state, event)
    elif isinstance(event, VideoStored):
        wanted = _stored(state, event, public_base_url)
    elif isinstance(event, VideoFailed):
        wanted = _failed(state, event)
    else:  # pragma: no cover - the union above is exhaustive
        return Unchanged(f"unknown event {type(event).__name__}")

    changes = {name: value for name, value in wanted.items() if getattr(state, name) != value}
    if not changes:
        return Unchanged(f"{event.type} changes nothing")
    return Update({**changes, "updated_at": now})


def gives_reservation_back(event: VideoEvent, after: VideoState) -> bool:
    """A video that failed before any provider took its job cost nothing: its quota
    reservation is given back (``after``: the row once ``event`` was written)."""
    return (
        isinstance(event, VideoFailed)
        and after.status == "failed"
        and after.provider_job_id is None
    )


def requested_row(event: VideoRequested, *, now: datetime) -> dict[str, Any]:
    images = list(event.reference_images)
    return {
        "id": event.video_id,
        "prompt": event.prompt,
        "model": event.model,
        "seconds": event.seconds,
        "size": event.size,
        "org": event.org,
        "image1_url": images[0].url if len(images) > 0 else None,
        "image2_url": images[1].url if len(images) > 1 else None,
        "reference_image_keys": [image.key for image in images],
        "status": "queued",
        "progress": 0,
        "correlation_id": event.correlation_id,
        "requested_at": event.occurred_at,
        "created_at": event.occurred_at,
        "updated_at": now,
    }


def _advance(state: VideoState, status: VideoStatus) -> dict[str, Any]:
    return {"status": status} if STATUS_RANK[status] > STATUS_RANK[state.status] else {}


def _fill(state: VideoState, **facts: object) -> dict[str, Any]:
    """Facts that only fill gaps: never overwrite what the row already knows."""
    return {
        name: value
        for name, value in facts.items()
        if value is not None and getattr(state, name) is None
    }


def _started(state: VideoState, event: VideoGenerationStarted) -> dict[str, Any]:
    return {
        **_advance(state, "processing"),
        **_fill(state, provider=event.provider, provider_job_id=event.provider_job_id),
        # The job exists: the queue's estimate is history.
        "estimated_start_at": None,
        "queue_position": None,
    }


def _waiting(state: VideoState, event: VideoGenerationWaiting) -> dict[str, Any]:
    # Only a queued video waits: a late estimate must not come back once the job started.
    if state.status != "queued":
        return {}
    return {
        **_fill(state, provider=event.provider),
        "estimated_start_at": event.estimated_start_at,
        "queue_position": event.position,
    }


def _progressed(state: VideoState, event: VideoGenerationProgressed) -> dict[str, Any]:
    if is_terminal(state.status):
        return {}
    wanted = {
        **_advance(state, "processing"),
        **_fill(state, provider_job_id=event.provider_job_id),
    }
    if event.progress > state.progress:
        wanted["progress"] = event.progress
    return wanted


def _completed(state: VideoState, event: VideoCompleted) -> dict[str, Any]:
    # Generated is not stored: the row stays processing (unless already terminal). The
    # provider's URL and expiry are recorded whatever the status (the seed's backup URL).
    return {
        **_advance(state, "processing"),
        **_fill(state, provider=event.provider, provider_job_id=event.provider_job_id),
        "openai_url": event.source_url,
        "expires_at": event.expires_at,
        **({"cost_usd": event.cost_usd} if event.cost_usd is not None else {}),
    }


def _stored(state: VideoState, event: VideoStored, public_base_url: str) -> dict[str, Any]:
    if (
        state.status == "completed"
        and state.stored_at is not None
        and event.occurred_at < state.stored_at
    ):
        return {}  # an older copy's report, delivered late: the row describes a newer one
    thumbnail = event.thumbnail
    thumbnail_url = None
    if thumbnail is not None:
        # A public bucket gives a permanent URL; otherwise the gateway's link redirects.
        thumbnail_url = thumbnail.url or thumbnail_link(public_base_url, event.video_id)
    return {
        "status": "completed",
        "progress": 100,
        # The job whose bytes were kept is the row's job, whatever earlier events said.
        "provider_job_id": event.provider_job_id,
        "video_url": video_link(public_base_url, event.video_id),
        "video_bucket": event.video.bucket,
        "video_key": event.video.key,
        "bytes": event.video.bytes,
        "sha256": event.video.sha256,
        "thumbnail_url": thumbnail_url,
        "thumbnail_bucket": thumbnail.bucket if thumbnail else None,
        "thumbnail_key": thumbnail.key if thumbnail else None,
        "thumbnail_bytes": thumbnail.bytes if thumbnail else None,
        "stored_at": event.occurred_at,
        "error_stage": None,
        "error_code": None,
        "error_message": None,
        "failed_at": None,
    }


def _failed(state: VideoState, event: VideoFailed) -> dict[str, Any]:
    if state.status == "completed":
        return {}  # the file is stored; a failed (re-)attempt does not undo that
    if state.failed_at is not None and event.occurred_at < state.failed_at:
        return {}  # an older failure delivered late: keep the newer one
    return {
        "status": "failed",
        "error_stage": event.stage,
        "error_code": event.code,
        "error_message": event.message,
        "failed_at": event.occurred_at,
        **_fill(state, provider_job_id=event.provider_job_id),
    }
