"""How a video looks to HTTP clients: the catalog's record, with ``video_url`` pointing at the
gateway's permanent content link (which redirects to a fresh signed URL). Pure."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field
from reelvault_common.contracts.catalog import VideoRecord
from reelvault_common.contracts.events import VideoRequested
from reelvault_common.providers.models import ModelCatalog


# The catalog's record as clients see it: its fields (descriptions added here), plus
# ``object``, minus where the files are kept (buckets and keys are internal: never serialized,
# absent from the OpenAPI document). The docstring is the schema's description in OpenAPI.
class Video(VideoRecord):
    """A requested video: what was asked, how far it got, and where it is stored."""

    object: Literal["video"] = "video"
    provider_job_id: str | None = Field(
        description="The provider's job id (the seed's `video_id`)."
    )
    video_url: str | None = Field(
        description="Permanent link to the stored video (redirects to a short-lived signed URL); "
        "null until the video is stored."
    )
    openai_url: str | None = Field(description="Where the provider served the video (expires).")
    expires_at: datetime | None = Field(description="When the provider's copy expires.")
    cost_usd: Decimal | None = Field(
        default=None, description="What the provider reported charging (OpenRouter reports it); "
        "null when it does not say.")
    estimated_cost_usd: Decimal | None = Field(
        default=None, description="The model's list price times the seconds, at this size "
        "(see `GET /v1/models`); null for a model without a known price.")
    estimated_start_at: datetime | None = Field(
        default=None, description="A queued video that waits for the provider's request budget: "
        "when its job should start (an estimate); null otherwise.")
    queue_position: int | None = Field(
        default=None, description="Its organization's videos ahead of it in that wait, when "
        "known; null otherwise.")
    video_bucket: str | None = Field(default=None, exclude=True)
    video_key: str | None = Field(default=None, exclude=True)
    thumbnail_bucket: str | None = Field(default=None, exclude=True)
    thumbnail_key: str | None = Field(default=None, exclude=True)


class VideoList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Video]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page.")


def content_link(public_base_url: str, video_id: uuid.UUID, variant: str = "video") -> str:
    link = f"{public_base_url.rstrip('/')}/v1/videos/{video_id}/content"
    return link if variant == "video" else f"{link}?variant={variant}"


def estimate(models: ModelCatalog | None, model: str, size: str, seconds: str) -> Decimal | None:
    spec = models.get(model) if models is not None else None
    try:
        return spec.estimate_usd(size, seconds) if spec is not None else None
    except ArithmeticError:
        return None


def video_from_record(
    record: VideoRecord, public_base_url: str, models: ModelCatalog | None = None
) -> Video:
    stored = record.status == "completed" and record.video_key is not None
    thumbnail = record.thumbnail_url
    if thumbnail is None and stored and record.thumbnail_key is not None:
        thumbnail = content_link(public_base_url, record.id, "thumbnail")
    links = {
        "video_url": content_link(public_base_url, record.id) if stored else None,
        "thumbnail_url": thumbnail,
        "estimated_cost_usd": estimate(models, record.model, record.size, record.seconds),
    }
    return Video.model_validate({**record.model_dump(), **links})


def video_from_request(event: VideoRequested, models: ModelCatalog | None = None) -> Video:
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
        estimated_cost_usd=estimate(models, event.model, event.size, event.seconds),
    )
