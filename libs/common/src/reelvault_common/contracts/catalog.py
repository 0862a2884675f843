"""The catalog's request/reply API over core NATS (queue group, so replicas share the load).

The gateway and other services never open the database; they ask the catalog with these
messages on the subjects in ``Topology.rpc_*``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

VideoStatus = Literal["queued", "processing", "completed", "failed"]
VIDEO_STATUSES: tuple[VideoStatus, ...] = ("queued", "processing", "completed", "failed")


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class VideoRecord(_Message):
    """One video as the catalog knows it. ``provider_job_id`` is the seed's ``video_id`` column."""

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
    provider_job_id: str | None
    video_url: str | None
    openai_url: str | None
    video_bucket: str | None
    video_key: str | None
    thumbnail_url: str | None
    thumbnail_bucket: str | None
    thumbnail_key: str | None
    bytes: int | None
    sha256: str | None
    error_stage: str | None
    error_code: str | None
    error_message: str | None
    expires_at: datetime | None
    stored_at: datetime | None
    created_at: datetime
    updated_at: datetime


class GetVideo(_Message):
    video_id: uuid.UUID


class ListVideos(_Message):
    status: VideoStatus | None = None
    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = None


class GetStats(_Message):
    pass


class VideoPage(_Message):
    items: list[VideoRecord]
    next_cursor: str | None


class CatalogStats(_Message):
    by_status: dict[str, int]
    total: int
    stored_bytes: int


class CatalogErrorCode(StrEnum):
    """Every code a catalog reply can carry; callers branch on these, never on the message.

    The set is closed: a code a caller does not know fails to decode, so adding one is a
    contract change.
    """

    INVALID_REQUEST = "invalid_request"  # the request did not match its model
    NOT_FOUND = "not_found"  # no such video
    INVALID_CURSOR = "invalid_cursor"  # not a cursor this catalog handed out
    UNAVAILABLE = "unavailable"  # the catalog runs but its database does not answer; retry
    INTERNAL = "internal"  # an unexpected failure in the catalog


class RpcErrorBody(_Message):
    code: CatalogErrorCode
    message: str


class RpcReply(_Message):
    """Every catalog reply: exactly one of ``video``/``page``/``stats``/``error`` is meaningful."""

    ok: bool
    video: VideoRecord | None = None
    page: VideoPage | None = None
    stats: CatalogStats | None = None
    error: RpcErrorBody | None = None
