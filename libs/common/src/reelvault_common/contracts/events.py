"""Video lifecycle events: the public API for every consumer, inside reelvault or outside.

Every event carries ``event_id`` (also sent as ``Nats-Msg-Id``), ``video_id``, ``occurred_at``,
``correlation_id`` and ``schema_version``. Decoders ignore unknown fields, so adding a field is
a compatible change; removing or retyping one needs a new schema version.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from reelvault_common.ids import event_id_for

SCHEMA_VERSION = 1


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Contract(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class ReferenceImage(_Contract):
    """An uploaded image in object storage, used as the video's first frame."""

    bucket: str
    key: str
    content_type: str
    # Permanent public URL when the bucket is public, else None (served through signed links).
    url: str | None = None


class StoredFile(_Contract):
    """A file copied into permanent storage, verified by size and sha256."""

    bucket: str
    key: str
    content_type: str
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    url: str | None = None


class _Event(_Contract):
    schema_version: int = SCHEMA_VERSION
    event_id: uuid.UUID
    video_id: uuid.UUID
    occurred_at: AwareDatetime = Field(default_factory=utcnow)
    correlation_id: str


class VideoRequested(_Event):
    type: Literal["video.requested"] = "video.requested"
    prompt: str = Field(min_length=1)
    model: str
    seconds: str
    size: str
    reference_images: tuple[ReferenceImage, ...] = Field(default=(), max_length=2)
    org: str = "default"

    @classmethod
    def new(cls, *, video_id: uuid.UUID, correlation_id: str, **fields: object) -> VideoRequested:
        return cls(
            event_id=event_id_for(video_id, "requested"),
            video_id=video_id,
            correlation_id=correlation_id,
            **fields,  # type: ignore[arg-type]
        )


class VideoGenerationStarted(_Event):
    type: Literal["video.generation.started"] = "video.generation.started"
    provider: str
    provider_job_id: str
    model: str
    seconds: str
    size: str
    org: str
    requested_at: AwareDatetime
    # When the generator first created the job: deadlines count from here, across restarts.
    job_created_at: AwareDatetime

    @classmethod
    def new(
        cls, *, video_id: uuid.UUID, correlation_id: str, provider_job_id: str, **fields: object
    ) -> VideoGenerationStarted:
        return cls(
            event_id=event_id_for(video_id, "generation.started", provider_job_id),
            video_id=video_id,
            correlation_id=correlation_id,
            provider_job_id=provider_job_id,
            **fields,  # type: ignore[arg-type]
        )


class VideoGenerationProgressed(_Event):
    type: Literal["video.generation.progress"] = "video.generation.progress"
    provider_job_id: str
    progress: int = Field(ge=0, le=100)

    @classmethod
    def new(
        cls, *, video_id: uuid.UUID, correlation_id: str, provider_job_id: str, progress: int
    ) -> VideoGenerationProgressed:
        return cls(
            event_id=event_id_for(video_id, "generation.progress", provider_job_id, progress),
            video_id=video_id,
            correlation_id=correlation_id,
            provider_job_id=provider_job_id,
            progress=progress,
        )


class VideoCompleted(_Event):
    """The provider finished the video; its copy is downloadable until ``expires_at``."""

    type: Literal["video.completed"] = "video.completed"
    provider: str
    provider_job_id: str
    # Where the provider serves the bytes (informational; never fetched with credentials
    # taken from an event: the archiver builds its own URL from its configured base).
    source_url: str
    expires_at: AwareDatetime | None
    org: str
    requested_at: AwareDatetime

    @classmethod
    def new(
        cls, *, video_id: uuid.UUID, correlation_id: str, provider_job_id: str, **fields: object
    ) -> VideoCompleted:
        return cls(
            event_id=event_id_for(video_id, "completed", provider_job_id),
            video_id=video_id,
            correlation_id=correlation_id,
            provider_job_id=provider_job_id,
            **fields,  # type: ignore[arg-type]
        )


class VideoArchiveRequested(_Event):
    """Someone asked to (re-)copy a finished video from the provider into storage."""

    type: Literal["video.archive.requested"] = "video.archive.requested"
    provider: str
    provider_job_id: str
    expires_at: AwareDatetime | None
    org: str
    requested_at: AwareDatetime

    @classmethod
    def new(
        cls, *, video_id: uuid.UUID, correlation_id: str, **fields: object
    ) -> VideoArchiveRequested:
        # A fresh id per request: each explicit re-archive is its own command.
        return cls(
            event_id=uuid.uuid4(),
            video_id=video_id,
            correlation_id=correlation_id,
            **fields,  # type: ignore[arg-type]
        )


class VideoStored(_Event):
    """The video (and its thumbnail) are in permanent storage, verified."""

    type: Literal["video.stored"] = "video.stored"
    provider_job_id: str
    video: StoredFile
    thumbnail: StoredFile | None

    @classmethod
    def new(
        cls, *, video_id: uuid.UUID, correlation_id: str, video: StoredFile, **fields: object
    ) -> VideoStored:
        return cls(
            event_id=event_id_for(video_id, "stored", video.sha256),
            video_id=video_id,
            correlation_id=correlation_id,
            video=video,
            **fields,  # type: ignore[arg-type]
        )


FailureStage = Literal["request", "generation", "archive"]


class VideoFailed(_Event):
    type: Literal["video.failed"] = "video.failed"
    stage: FailureStage
    code: str
    message: str
    retryable: bool = False
    provider_job_id: str | None = None

    @classmethod
    def new(
        cls,
        *,
        video_id: uuid.UUID,
        correlation_id: str,
        stage: FailureStage,
        code: str,
        **fields: object,
    ) -> VideoFailed:
        return cls(
            event_id=event_id_for(video_id, "failed", stage, code),
            video_id=video_id,
            correlation_id=correlation_id,
            stage=stage,
            code=code,
            **fields,  # type: ignore[arg-type]
        )


VideoEvent = Annotated[
    VideoRequested
    | VideoGenerationStarted
    | VideoGenerationProgressed
    | VideoCompleted
    | VideoArchiveRequested
    | VideoStored
    | VideoFailed,
    Field(discriminator="type"),
]

EVENT_TYPES: tuple[type[_Event], ...] = (
    VideoRequested,
    VideoGenerationStarted,
    VideoGenerationProgressed,
    VideoCompleted,
    VideoArchiveRequested,
    VideoStored,
    VideoFailed,
)

_event_adapter: TypeAdapter[VideoEvent] = TypeAdapter(VideoEvent)


def parse_event(payload: bytes | str) -> VideoEvent:
    """Decode any lifecycle event; raises ``pydantic.ValidationError`` on a bad payload."""
    return _event_adapter.validate_json(payload)


def event_type_name(event_cls: type[_Event]) -> str:
    return str(event_cls.model_fields["type"].default)
