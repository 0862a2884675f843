"""Where things go: the buckets and their rules, and deterministic object keys."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from reelvault_common.runtime.settings import StorageSettings
from reelvault_common.storage.interface import BucketSpec

MB = 1024 * 1024
IMAGE_MIME_TYPES = ("image/jpeg", "image/png", "image/webp")


@dataclass(frozen=True)
class Buckets:
    videos: BucketSpec
    thumbnails: BucketSpec
    images: BucketSpec
    brand_kits: BucketSpec

    @classmethod
    def from_settings(cls, settings: StorageSettings) -> Buckets:
        return cls(
            videos=BucketSpec(settings.bucket_videos, False, 500 * MB, ("video/*",)),
            thumbnails=BucketSpec(settings.bucket_thumbnails, True, 5 * MB, IMAGE_MIME_TYPES),
            # Reference images: public read, images only.
            images=BucketSpec(settings.bucket_images, True, 10 * MB, IMAGE_MIME_TYPES),
            brand_kits=BucketSpec(
                settings.bucket_brand_kits,
                False,
                10 * MB,
                ("image/*", "font/*", "application/json"),
            ),
        )

    def all(self) -> tuple[BucketSpec, ...]:
        return (self.videos, self.thumbnails, self.images, self.brand_kits)


def video_prefix(org: str, requested_at: datetime, video_id: uuid.UUID) -> str:
    return f"{org}/{requested_at:%Y}/{requested_at:%m}/{video_id}"


def video_key(org: str, requested_at: datetime, video_id: uuid.UUID) -> str:
    return f"{video_prefix(org, requested_at, video_id)}/video.mp4"


def thumbnail_key(org: str, requested_at: datetime, video_id: uuid.UUID) -> str:
    return f"{video_prefix(org, requested_at, video_id)}/thumbnail.webp"


def upload_key(org: str, sha256: str, extension: str) -> str:
    """Uploads are keyed by content, so the same image uploaded twice is stored once."""
    return f"{org}/uploads/{sha256[:2]}/{sha256}.{extension}"
