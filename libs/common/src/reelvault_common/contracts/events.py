"""Video lifecycle events: the public API for every consumer, inside reelvault or outside.

Every event carries ``event_id`` (also sent as ``Nats-Msg-Id``), ``video_id``, ``occurred_at``,
``correlation_id`` and ``schema_version``. Decoders ignore unknown fields, so adding a field is
a compatible change; removing or retyping one needs a new schema version.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from reelvault_common.contracts.ids import event_id_for

SCHEMA_VERSION = 1


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Contract(BaseModel):
    # In the published schema every field with a default is still always on the wire.
    model_config = ConfigDict(
        frozen=True, extra="ignore", json_schema_serialization_defaults_required=True
    )


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

    # What makes two events the same fact: the kind, then these fields (dotted for nested
    # ones). None: every event is new (an explicit command), so it gets a random id.
    _identity_kind: ClassVar[str] = ""
    _identity_fields: ClassVar[tuple[str, ...] | None] = ()

    @classmethod
    def new(cls, *, video_id: uuid.UUID, correlation_id: str, **fields: Any) -> Self:
        """Build the event with its derived id (the same fact always gets the same id)."""
        return cls(
            event_id=cls._derive_event_id(video_id, fields),
            video_id=video_id,
            correlation_id=correlation_id,
            **fields,
        )

    @classmethod
    def _derive_event_id(cls, video_id: uuid.UUID, fields: dict[str, Any]) -> uuid.UUID:
        if cls._identity_fields is None:
            return uuid.uuid4()
        parts = []
        for dotted in cls._identity_fields:
            head, *rest = dotted.split(".")
            value = fields[head]
            for attribute in rest:
                value = getattr(value, attribute)
            parts.append(value)
        return event_id_for(video_id, cls._identity_kind, *parts)


class VideoRequested(_Event):
    type: Literal["video.requested"] = "video.requested"
    _identity_kind: ClassVar[str] = "requested"
    _identity_fields: ClassVar[tuple[str, ...] | None] = ()
    prompt: str = Field(min_length=1)
    model: str
    seconds: str
    size: str
    reference_images: tuple[ReferenceImage, ...] = Field(default=(), max_length=2)
    org: str = "default"


class VideoGenerationStarted(_Event):
    type: Literal["video.generation.started"] = "video.generation.started"
    _identity_kind: ClassVar[str] = "generation.started"
    _identity_fields: ClassVar[tuple[str, ...] | None] = ("provider_job_id",)
    provider: str
    provider_job_id: str
    model: str
    seconds: str
    size: str
    org: str
    requested_at: AwareDatetime
    # When the generator first created the job: deadlines count from here, across restarts.
    job_created_at: AwareDatetime


class VideoGenerationProgressed(_Event):
    type: Literal["video.generation.progress"] = "video.generation.progress"
    _identity_kind: ClassVar[str] = "generation.progress"
    _identity_fields: ClassVar[tuple[str, ...] | None] = ("provider_job_id", "progress")
    provider_job_id: str
    progress: int = Field(ge=0, le=100)


class _FinishedJob(_Event):
    """A provider job whose video can be copied into storage (what the archiver works on)."""

    provider: str
    provider_job_id: str
    # Until when the provider serves the bytes (None: it does not say).
    expires_at: AwareDatetime | None
    org: str
    requested_at: AwareDatetime


class VideoCompleted(_FinishedJob):
    """The provider finished the video; its copy is downloadable until ``expires_at``."""

    type: Literal["video.completed"] = "video.completed"
    _identity_kind: ClassVar[str] = "completed"
    _identity_fields: ClassVar[tuple[str, ...] | None] = ("provider_job_id",)
    # Where the provider serves the bytes (informational; never fetched with credentials
    # taken from an event: the archiver builds its own URL from its configured base).
    source_url: str


class VideoArchiveRequested(_FinishedJob):
    """Someone asked to (re-)copy a finished video from the provider into storage."""

    type: Literal["video.archive.requested"] = "video.archive.requested"
    # Each explicit re-archive request is its own command.
    _identity_fields: ClassVar[tuple[str, ...] | None] = None


class VideoStored(_Event):
    """The video (and its thumbnail) are in permanent storage, verified."""

    type: Literal["video.stored"] = "video.stored"
    _identity_kind: ClassVar[str] = "stored"
    _identity_fields: ClassVar[tuple[str, ...] | None] = ("video.sha256",)
    provider_job_id: str
    video: StoredFile
    thumbnail: StoredFile | None


FailureStage = Literal["request", "generation", "archive"]


class VideoFailed(_Event):
    type: Literal["video.failed"] = "video.failed"
    _identity_kind: ClassVar[str] = "failed"
    _identity_fields: ClassVar[tuple[str, ...] | None] = ("stage", "code")
    stage: FailureStage
    code: str
    message: str
    retryable: bool = False
    provider_job_id: str | None = None

    @classmethod
    def dead_lettered(
        cls, event: _Event, *, stage: FailureStage, consumer: str, deliveries: int, error: str
    ) -> VideoFailed | None:
        """The failure a service announces when ``event`` was dead-lettered by ``consumer``;
        None when the event is itself such an announcement (announcing it again could loop)."""
        if isinstance(event, VideoFailed) and event.code == DEAD_LETTERED:
            return None
        return cls.new(
            video_id=event.video_id,
            correlation_id=event.correlation_id,
            stage=stage,
            code=DEAD_LETTERED,
            message=f"gave up after {deliveries} deliveries to {consumer}: {error}"[:2000],
            retryable=True,
        )


# The failure code of a video whose event ended in the dead-letter stream (replayable).
DEAD_LETTERED = "dead_lettered"

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
