"""How a video looks to HTTP clients: the catalog's record, with ``video_url`` pointing at the
gateway's permanent content link (which redirects to a fresh signed URL). Pure."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from reelvault_common.contracts.catalog import VideoRecord, VideoStatus
from reelvault_common.contracts.events import VideoRequested


class Video(BaseModel):
    object: Literal["video"] = "video"
    id: uuid.UUID
    status: VideoStatus
    progress: int
    prompt: str
    model: str
    seconds: str
    size: str
    org: str
    image1_url: str | None
    image2_url: str | None
    reference_image_keys: list[str]
    provider: str | None
    provider_job_id: str | None = Field(
        description="The provider's job id (the seed's `video_id`)."
    )
    video_url: str | None = Field(
        description="Permanent link to the stored video (redirects to a short-lived signed URL); "
        "null until the video is stored."
    )
    openai_url: str | None = Field(description="Where the provider served the video (expires).")
    thumbnail_url: str | None
    bytes: int | None
    sha256: str | None
    error_code: str | None
    error_message: str | None
    error_stage: str | None
    expires_at: datetime | None = Field(description="When the provider's copy expires.")
    stored_at: datetime | None
    created_at: datetime
    updated_at: datetime


class VideoList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Video]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page.")


def content_link(public_base_url: str, video_id: uuid.UUID, variant: str = "video") -> str:
    link = f"{public_base_url.rstrip('/')}/v1/videos/{video_id}/content"
    return link if variant == "video" else f"{link}?variant={variant}"


def video_from_record(record: VideoRecord, public_base_url: str) -> Video:
    stored = record.status == "completed" and record.video_key is not None
    thumbnail = record.thumbnail_url
    if thumbnail is None and stored and record.thumbnail_key is not None:
        thumbnail = content_link(public_base_url, record.id, "thumbnail")
    return Video(
        id=record.id,
        status=record.status,
        progress=record.progress,
        prompt=record.prompt,
        model=record.model,
        seconds=record.seconds,
        size=record.size,
        org=record.org,
        image1_url=record.image1_url,
        image2_url=record.image2_url,
        reference_image_keys=list(record.reference_image_keys),
        provider=record.provider,
        provider_job_id=record.provider_job_id,
        video_url=content_link(public_base_url, record.id) if stored else None,
        openai_url=record.openai_url,
        thumbnail_url=thumbnail,
        bytes=record.bytes,
        sha256=record.sha256,
        error_code=record.error_code,
        error_message=record.error_message,
        error_stage=record.error_stage,
        expires_at=record.expires_at,
        stored_at=record.stored_at,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def video_from_request(event: VideoRequested) -> Video:
    """The video as accepted, before the catalog has projected it."""
    urls = [image.url for image in event.reference_images]
    return Video(
        id=event.video_id,
        status="queued",
        progress=0,
        prompt=event.prompt,
        model=event.model,
        seconds=event.seconds,
        size=event.size,
        org=event.org,
        image1_url=urls[0] if urls else None,
        image2_url=urls[1] if len(urls) > 1 else None,
        reference_image_keys=[image.key for image in event.reference_images],
        provider=None,
        provider_job_id=None,
        video_url=None,
        openai_url=None,
        thumbnail_url=None,
        bytes=None,
        sha256=None,
        error_code=None,
        error_message=None,
        error_stage=None,
        expires_at=None,
        stored_at=None,
        created_at=event.occurred_at,
        updated_at=event.occurred_at,
    )
