"""The seed app's routes, with the seed's meaning, on top of the same pipeline as ``/v1``.

``POST /api/upload`` lives with the other uploads (it has the upload body limit)."""

from __future__ import annotations

import uuid
from typing import Literal

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from reelvault_common.contracts.catalog import VideoStatus

from reelvault_gateway.context import GatewayContext
from reelvault_gateway.deps import (
    ContextDep,
    CorrelationIdDep,
    IdempotencyKeyDep,
    ReadPrincipal,
    WritePrincipal,
)
from reelvault_gateway.errors import error_responses
from reelvault_gateway.idempotency import REPLAYED_HEADER
from reelvault_gateway.representation import Video, video_from_record
from reelvault_gateway.video_requests import SeedCreateVideoBody, VideoIdBody, spec_from_seed
from reelvault_gateway.videos import (
    create_video,
    create_video_once,
    get_video,
    list_all_videos,
    request_archive,
)

router = APIRouter(prefix="/api", tags=["seed"])


class SeedCreated(BaseModel):
    id: uuid.UUID
    status: VideoStatus


class VideoErrorInfo(BaseModel):
    code: str | None
    message: str | None
    stage: str | None


class CheckVideoResult(BaseModel):
    id: uuid.UUID
    status: VideoStatus
    progress: int
    video_id: str | None = Field(description="The provider's job id (seed column `video_id`).")
    video_url: str | None = Field(description="Permanent link, once the video is stored.")
    thumbnail_url: str | None
    error: VideoErrorInfo | None = Field(description="Why it failed (status `failed` only).")


class DownloadResult(BaseModel):
    id: uuid.UUID
    status: VideoStatus
    stored: bool
    archive: Literal["stored", "requested"] = Field(
        description="`stored`: already in permanent storage; `requested`: the copy was queued."
    )
    video_url: str | None


class SeedVideoList(BaseModel):
    videos: list[Video]
    truncated: bool = Field(description="True when more videos exist than were returned.")


async def _public_prefix(context: GatewayContext) -> str:
    """The URL prefix under which /api/upload URLs of the images bucket start."""
    probe = "k"
    url = await context.storage.public_url(context.buckets.images.name, probe)
    return (url or "")[: -len(probe)] if url else f"/files/{context.buckets.images.name}/"


@router.post(
    "/create-video",
    response_model=SeedCreated,
    summary="Request a video (seed app)",
    responses=error_responses(400, 401, 403, 409, 413, 422, 429, 503),
)
async def seed_create_video(
    body: SeedCreateVideoBody,
    principal: WritePrincipal,
    context: ContextDep,
    correlation_id: CorrelationIdDep,
    idempotency: IdempotencyKeyDep,
    response: Response,
) -> SeedCreated:
    """`image1_url`/`image2_url` are URLs returned by `/api/upload` (or upload keys).
    Answers once the request is durable in the event stream. Takes an `Idempotency-Key`
    like `POST /v1/videos`."""
    spec = spec_from_seed(body, await _public_prefix(context), context.models.current,
                          published=context.models.published)
    if idempotency is None:
        video = await create_video(context, principal, spec, correlation_id)
    else:
        created = await create_video_once(context, principal, spec, correlation_id, idempotency)
        video = created.video
        if created.replayed:
            response.headers[REPLAYED_HEADER] = "true"
    return SeedCreated(id=video.id, status=video.status)


@router.post(
    "/check-video",
    response_model=CheckVideoResult,
    summary="Status of a video (seed app)",
    responses=error_responses(400, 401, 403, 404, 413, 422, 502, 503),
)
async def seed_check_video(
    body: VideoIdBody, principal: ReadPrincipal, context: ContextDep
) -> CheckVideoResult:
    """Storage happens automatically once the provider finishes; `video_url` appears then."""
    video = await get_video(context, principal.org, body.id)
    error = None
    if video.status == "failed":
        error = VideoErrorInfo(
            code=video.error_code, message=video.error_message, stage=video.error_stage
        )
    return CheckVideoResult(
        id=video.id,
        status=video.status,
        progress=video.progress,
        video_id=video.provider_job_id,
        video_url=video.video_url,
        thumbnail_url=video.thumbnail_url,
        error=error,
    )


@router.post(
    "/download-and-store-video",
    response_model=DownloadResult,
    summary="Copy a finished video into permanent storage (seed app)",
    responses={
        202: {"model": DownloadResult, "description": "The copy was requested; poll check-video."},
        **error_responses(400, 401, 403, 404, 409, 410, 413, 422, 502, 503),
    },
)
async def seed_download_and_store(
    body: VideoIdBody,
    principal: WritePrincipal,
    context: ContextDep,
    correlation_id: CorrelationIdDep,
) -> DownloadResult | JSONResponse:
    """200 with the permanent `video_url` when already stored; 202 after queueing the copy
    when the provider finished and its copy has not expired; 410 `source_expired` when it has;
    409 `video_not_ready` while it is still being generated."""
    outcome = await request_archive(context, principal.org, body.id, correlation_id)
    video = video_from_record(outcome.record, context.settings.public_base_url)
    result = DownloadResult(
        id=video.id,
        status=video.status,
        stored=not outcome.requested,
        archive="requested" if outcome.requested else "stored",
        video_url=video.video_url,
    )
    if outcome.requested:
        return JSONResponse(result.model_dump(mode="json"), status_code=202)
    return result


@router.get(
    "/list-videos",
    response_model=SeedVideoList,
    summary="All videos, newest first (seed app)",
    responses=error_responses(401, 403, 502, 503),
)
async def seed_list_videos(principal: ReadPrincipal, context: ContextDep) -> SeedVideoList:
    videos, truncated = await list_all_videos(
        context, principal.org, context.settings.list_all_max
    )
    return SeedVideoList(videos=videos, truncated=truncated)
