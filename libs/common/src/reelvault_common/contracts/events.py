"""Video lifecycle events: the public API for every consumer, inside reelvault or outside.

Every event carries ``event_id`` (also sent as ``Nats-Msg-Id``), ``org`` (the organization it
belongs to, also a token of its subject), ``occurred_at``, ``correlation_id`` and
``schema_version``; video events carry ``video_id``. Decoders ignore unknown fields, so adding
a field is a compatible change; removing or retyping one needs a new schema version.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from reelvault_common.contracts.ids import event_id_for, org_event_id_for
from reelvault_common.contracts.tenancy import DEFAULT_ORG, OrgSlug

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
    # Events written before organizations existed all belonged to the default one.
    org: OrgSlug = DEFAULT_ORG
    occurred_at: AwareDatetime = Field(default_factory=utcnow)
    correlation_id: str

    # What makes two events the same fact: the kind, then these fields (dotted for nested
    # ones). None: every event is new (an explicit command), so it gets a random id.
    _identity_kind: ClassVar[str] = ""
    _identity_fields: ClassVar[tuple[str, ...] | None] = ()

    @classmethod
    def new(cls, *, video_id: uuid.UUID, org: str, correlation_id: str, **fields: Any) -> Self:
        """Build the event with its derived id (the same fact always gets the same id)."""
        return cls(
            event_id=cls._derive_event_id(video_id, fields),
            video_id=video_id,
            org=org,
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


class VideoGenerationStarted(_Event):
    type: Literal["video.generation.started"] = "video.generation.started"
    _identity_kind: ClassVar[str] = "generation.started"
    _identity_fields: ClassVar[tuple[str, ...] | None] = ("provider_job_id",)
    provider: str
    provider_job_id: str
    model: str
    seconds: str
    size: str
    requested_at: AwareDatetime
    # When the generator first created the job: deadlines count from here, across restarts.
    job_created_at: AwareDatetime


class VideoGenerationWaiting(_Event):
    """The provider's request budget refused the create for now: when it should start."""

    type: Literal["video.generation.waiting"] = "video.generation.waiting"
    _identity_kind: ClassVar[str] = "generation.waiting"
    _identity_fields: ClassVar[tuple[str, ...] | None] = ("estimated_start_at",)
    provider: str
    estimated_start_at: AwareDatetime
    # Creates ahead of this one in its organization's queue at that provider, if known.
    position: int | None = Field(default=None, ge=0)


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
    requested_at: AwareDatetime


class VideoCompleted(_FinishedJob):
    """The provider finished the video; its copy is downloadable until ``expires_at``."""

    type: Literal["video.completed"] = "video.completed"
    _identity_kind: ClassVar[str] = "completed"
    _identity_fields: ClassVar[tuple[str, ...] | None] = ("provider_job_id",)
    # Where the provider serves the bytes (informational; never fetched with credentials
    # taken from an event: the archiver builds its own URL from its configured base).
    source_url: str
    # What the provider charged (its own figure), else the price table's estimate; None when
    # neither is known.
    cost_usd: Decimal | None = None


class VideoArchiveRequested(_FinishedJob):
    """Someone asked to (re-)copy a finished video from the provider into storage."""

    type: Literal["video.archive.requested"] = "video.archive.requested"
    # Each explicit re-archive request is its own command.
    _identity_fields: ClassVar[tuple[str, ...] | None] = None
    # The completed job's ``source_url``, when known (a Gemini video is a file it names).
    source_url: str | None = None


class VideoStored(_Event):
    """The video (and its thumbnail) are in permanent storage, verified."""

    type: Literal["video.stored"] = "video.stored"
    _identity_kind: ClassVar[str] = "stored"
    _identity_fields: ClassVar[tuple[str, ...] | None] = ("video.sha256",)
    provider_job_id: str
    video: StoredFile
    thumbnail: StoredFile | None


class VideoCancelRequested(_Event):
    """A client asked to stop a video that is not finished: the generator stops following its
    job (and cancels it where the provider can) and the video fails with ``canceled``."""

    type: Literal["video.cancel.requested"] = "video.cancel.requested"
    _identity_kind: ClassVar[str] = "cancel.requested"
    # Asking twice is the same request.
    _identity_fields: ClassVar[tuple[str, ...] | None] = ()
    requested_by: str | None = Field(default=None, description="The key's public id, if any.")


class ObjectRef(_Contract):
    """A stored object by its place (bucket and key)."""

    bucket: str
    key: str


class VideoDeleted(_Event):
    """The video was deleted (by a client, or by its organization's retention): its row is a
    tombstone and its stored objects are to be removed. Reads of it answer 404 from now on."""

    type: Literal["video.deleted"] = "video.deleted"
    _identity_kind: ClassVar[str] = "deleted"
    # A video is deleted once: every announcement of it is the same fact.
    _identity_fields: ClassVar[tuple[str, ...] | None] = ()
    deleted_by: str | None = Field(
        default=None, description="The key's public id, or `retention` for an expired video."
    )
    objects: tuple[ObjectRef, ...] = Field(
        default=(), description="The stored video and thumbnail to remove (may be empty)."
    )
    bytes: int = Field(default=0, ge=0, description="What the objects took in storage.")


FailureStage = Literal["request", "generation", "archive"]

# The failure code of a video its client canceled.
CANCELED = "canceled"


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
            org=event.org,
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
    | VideoGenerationWaiting
    | VideoGenerationProgressed
    | VideoCompleted
    | VideoArchiveRequested
    | VideoStored
    | VideoCancelRequested
    | VideoDeleted
    | VideoFailed,
    Field(discriminator="type"),
]

EVENT_TYPES: tuple[type[_Event], ...] = (
    VideoRequested,
    VideoGenerationStarted,
    VideoGenerationWaiting,
    VideoGenerationProgressed,
    VideoCompleted,
    VideoArchiveRequested,
    VideoStored,
    VideoCancelRequested,
    VideoDeleted,
    VideoFailed,
)

_event_adapter: TypeAdapter[VideoEvent] = TypeAdapter(VideoEvent)


class _OrgEvent(_Contract):
    """An event about an organization rather than one video."""

    schema_version: int = SCHEMA_VERSION
    event_id: uuid.UUID
    org: OrgSlug
    occurred_at: AwareDatetime = Field(default_factory=utcnow)
    correlation_id: str


class _QuotaCrossing(_OrgEvent):
    quota: str = Field(description="Which limit: videos_per_month, generation_seconds_per_month, "
                       "cost_usd_per_month or storage_bytes.")
    period: str = Field(description="The calendar month (UTC) as YYYY-MM, or `total` for "
                        "stored bytes.")
    used: Decimal
    limit: Decimal
    resets_at: AwareDatetime | None

    @classmethod
    def crossed(cls, *, org: str, quota: str, period: str, used: Decimal, limit: Decimal,
                resets_at: datetime | None) -> Self:
        """One event per organization, limit, period and level: a republish is the same fact."""
        kind = str(cls.model_fields["type"].default)
        return cls(
            event_id=org_event_id_for(org, kind, quota, period),
            org=org,
            correlation_id=f"{org}:{quota}:{period}",
            quota=quota,
            period=period,
            used=used,
            limit=limit,
            resets_at=resets_at,
        )


class OrgQuotaWarning(_QuotaCrossing):
    """Usage of one of the organization's limits reached 80 % in this period."""

    type: Literal["org.quota.warning"] = "org.quota.warning"


class OrgQuotaExceeded(_QuotaCrossing):
    """Usage of one of the organization's limits reached 100 %: further requests are refused
    until the period resets or the limit is raised."""

    type: Literal["org.quota.exceeded"] = "org.quota.exceeded"


class OrgWebhookEndpointDisabled(_OrgEvent):
    """One of the organization's webhook endpoints kept failing and is no longer sent to."""

    type: Literal["org.webhook_endpoint.disabled"] = "org.webhook_endpoint.disabled"
    endpoint_id: uuid.UUID
    reason: str = Field(description="Why: `failing` (every attempt failed for too long).")
    consecutive_failures: int = Field(ge=0)
    failing_since: AwareDatetime | None
    disabled_at: AwareDatetime

    @classmethod
    def of(cls, *, org: str, endpoint_id: uuid.UUID, reason: str, consecutive_failures: int,
           failing_since: datetime | None, disabled_at: datetime) -> Self:
        """One event per disabling: an endpoint enabled again and disabled later is news."""
        kind = str(cls.model_fields["type"].default)
        return cls(
            event_id=org_event_id_for(org, kind, endpoint_id, disabled_at.isoformat()),
            org=org,
            correlation_id=f"{org}:webhook:{endpoint_id}",
            endpoint_id=endpoint_id,
            reason=reason,
            consecutive_failures=consecutive_failures,
            failing_since=failing_since,
            disabled_at=disabled_at,
        )


OrgEvent = Annotated[
    OrgQuotaWarning | OrgQuotaExceeded | OrgWebhookEndpointDisabled, Field(discriminator="type")
]
ORG_EVENT_TYPES: tuple[type[_OrgEvent], ...] = (
    OrgQuotaWarning, OrgQuotaExceeded, OrgWebhookEndpointDisabled,
)
_org_event_adapter: TypeAdapter[OrgEvent] = TypeAdapter(OrgEvent)


def parse_org_event(payload: bytes | str) -> OrgEvent:
    return _org_event_adapter.validate_json(payload)


def parse_event(payload: bytes | str) -> VideoEvent:
    """Decode any lifecycle event; raises ``pydantic.ValidationError`` on a bad payload."""
    return _event_adapter.validate_json(payload)


def event_type_name(event_cls: type[_Event] | type[_OrgEvent]) -> str:
    return str(event_cls.model_fields["type"].default)
