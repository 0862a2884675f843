"""One video's lifecycle as events, for catalog tests: each method states one fact, at a time
``at`` seconds after the story's start (so tests can also tell events apart by occurred_at)."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from reelvault_common.contracts.events import (
    FailureStage,
    ReferenceImage,
    StoredFile,
    VideoArchiveRequested,
    VideoCancelRequested,
    VideoCompleted,
    VideoDeleted,
    VideoFailed,
    VideoGenerationProgressed,
    VideoGenerationStarted,
    VideoGenerationWaiting,
    VideoRequested,
    VideoStored,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def sha256_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class VideoStory:
    video_id: uuid.UUID = field(default_factory=uuid.uuid4)
    start: datetime = T0
    correlation_id: str = "corr-1"
    job_id: str = "video_job_1"
    provider: str = "openai"
    org: str = "default"

    def at(self, seconds: float) -> datetime:
        return self.start + timedelta(seconds=seconds)

    def requested(self, at: float = 0, *, images: int = 2, prompt: str = "two friends hug",
                  **fields: object) -> VideoRequested:
        refs = tuple(
            ReferenceImage(bucket="hug-images", key=f"default/uploads/{i}.png",
                           content_type="image/png", url=f"http://files.test/hug-images/{i}.png")
            for i in range(images)
        )
        values: dict[str, object] = {"prompt": prompt, "model": "sora-2", "seconds": "4",
                                     "size": "720x1280", "reference_images": refs}
        values.update(fields)
        org = str(values.pop("org", self.org))
        return VideoRequested.new(video_id=self.video_id, org=org,
                                  correlation_id=self.correlation_id, occurred_at=self.at(at),
                                  **values)

    def started(self, at: float = 1, *, job_id: str | None = None) -> VideoGenerationStarted:
        return VideoGenerationStarted.new(
            video_id=self.video_id, org=self.org, correlation_id=self.correlation_id,
            provider_job_id=job_id or self.job_id, provider=self.provider, model="sora-2",
            seconds="4", size="720x1280", requested_at=self.start,
            job_created_at=self.at(at), occurred_at=self.at(at),
        )

    def waiting(self, starts_in: float = 120, at: float = 0.5, *,
                position: int | None = 7) -> VideoGenerationWaiting:
        return VideoGenerationWaiting.new(
            video_id=self.video_id, org=self.org, correlation_id=self.correlation_id,
            provider=self.provider, estimated_start_at=self.at(at + starts_in),
            position=position, occurred_at=self.at(at),
        )

    def progressed(self, progress: int, at: float = 2) -> VideoGenerationProgressed:
        event = VideoGenerationProgressed.new(
            video_id=self.video_id, org=self.org, correlation_id=self.correlation_id,
            provider_job_id=self.job_id, progress=progress,
        )
        return event.model_copy(update={"occurred_at": self.at(at)})

    def completed(self, at: float = 3) -> VideoCompleted:
        return VideoCompleted.new(
            video_id=self.video_id, org=self.org, correlation_id=self.correlation_id,
            provider_job_id=self.job_id, provider=self.provider,
            source_url=f"http://provider.test/v1/videos/{self.job_id}/content",
            expires_at=self.at(3600), requested_at=self.start,
            occurred_at=self.at(at),
        )

    def archive_requested(self, at: float = 5) -> VideoArchiveRequested:
        return VideoArchiveRequested.new(
            video_id=self.video_id, org=self.org, correlation_id=self.correlation_id,
            provider=self.provider, provider_job_id=self.job_id, expires_at=self.at(3600),
            requested_at=self.start, occurred_at=self.at(at),
        )

    def stored(self, at: float = 4, *, content: str = "video bytes", size: int = 1234,
               thumbnail: bool = True, thumbnail_url: str | None = None) -> VideoStored:
        prefix = f"{self.org}/2026/01/{self.video_id}"
        thumb = StoredFile(bucket="thumbnails", key=f"{prefix}/thumbnail.webp",
                           content_type="image/webp", bytes=99, sha256=sha256_of("thumb"),
                           url=thumbnail_url) if thumbnail else None
        return VideoStored.new(
            video_id=self.video_id, org=self.org, correlation_id=self.correlation_id,
            video=StoredFile(bucket="videos", key=f"{prefix}/video.mp4",
                             content_type="video/mp4", bytes=size, sha256=sha256_of(content)),
            provider_job_id=self.job_id, thumbnail=thumb, occurred_at=self.at(at),
        )

    def cancel_requested(self, at: float = 2.5) -> VideoCancelRequested:
        return VideoCancelRequested.new(
            video_id=self.video_id, org=self.org, correlation_id=self.correlation_id,
            requested_by="k1", occurred_at=self.at(at),
        )

    def deleted(self, at: float = 6, *, by: str | None = "k1") -> VideoDeleted:
        return VideoDeleted.new(
            video_id=self.video_id, org=self.org, correlation_id=self.correlation_id,
            deleted_by=by, occurred_at=self.at(at),
        )

    def failed(self, stage: FailureStage = "generation", code: str = "provider_failed",
               at: float = 5, message: str = "it went wrong") -> VideoFailed:
        return VideoFailed.new(
            video_id=self.video_id, org=self.org, correlation_id=self.correlation_id,
            stage=stage, code=code,
            message=message, provider_job_id=self.job_id, occurred_at=self.at(at),
        )
