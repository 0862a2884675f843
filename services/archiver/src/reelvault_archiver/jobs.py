"""What one archive run works on, whichever event asked for it."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from reelvault_common.contracts.events import VideoArchiveRequested, VideoCompleted
from reelvault_common.providers.gemini_veo import file_id_of
from reelvault_common.storage.interface import BucketSpec
from reelvault_common.storage.layout import Buckets, thumbnail_key, video_key

# Provider job ids go into the path of a request that carries our API key: accept only
# id-shaped strings (e.g. "video_68d..."), never anything that could steer the URL.
JOB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
# Gemini's jobs are operations (``models/<model>/operations/<id>``); their video is a file
# named in the completed job's URI (``.../files/<id>:download?alt=media``).
GEMINI_OPERATION = re.compile(r"^models/[a-z0-9][a-z0-9.-]{0,99}/operations/[A-Za-z0-9_-]{1,128}$")


@dataclass(frozen=True)
class ArchiveJob:
    video_id: uuid.UUID
    correlation_id: str
    provider: str
    provider_job_id: str
    org: str
    requested_at: datetime
    expires_at: datetime | None
    # Where the provider said the video is: read only for Gemini's file id (validated), the
    # download URL itself always comes from the archiver's configured base.
    source_url: str | None = None

    @classmethod
    def from_event(cls, event: VideoCompleted | VideoArchiveRequested) -> ArchiveJob:
        return cls(
            video_id=event.video_id,
            correlation_id=event.correlation_id,
            provider=event.provider,
            provider_job_id=event.provider_job_id,
            org=event.org,
            requested_at=event.requested_at,
            expires_at=event.expires_at,
            source_url=event.source_url,
        )

    @property
    def content_id(self) -> str:
        """What the provider's download route names: the job, or (Gemini) its video file."""
        if self.provider == "gemini":
            try:
                return f"files/{file_id_of(self.source_url or '')}"
            except ValueError:
                return ""
        return self.provider_job_id

    @property
    def has_valid_job_id(self) -> bool:
        if self.provider == "gemini":
            return (GEMINI_OPERATION.fullmatch(self.provider_job_id) is not None
                    and bool(self.content_id))
        return JOB_ID_PATTERN.fullmatch(self.provider_job_id) is not None


@dataclass(frozen=True)
class Destination:
    bucket: BucketSpec
    key: str


@dataclass(frozen=True)
class Destinations:
    video: Destination
    thumbnail: Destination

    @classmethod
    def for_job(cls, job: ArchiveJob, buckets: Buckets) -> Destinations:
        return cls(
            video=Destination(buckets.videos, video_key(job.org, job.requested_at, job.video_id)),
            thumbnail=Destination(
                buckets.thumbnails, thumbnail_key(job.org, job.requested_at, job.video_id)
            ),
        )
