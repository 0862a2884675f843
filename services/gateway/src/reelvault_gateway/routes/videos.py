"""The ``/v1/videos`` API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel
from reelvault_common.contracts.catalog import VideoStatus

from reelvault_gateway.deps import (
    ContextDep,
    CorrelationIdDep,
    IdempotencyKeyDep,
    ReadPrincipal,
    WritePrincipal,
)
from reelvault_gateway.errors import error_responses
from reelvault_gateway.idempotency import REPLAYED_HEADER
from reelvault_gateway.representation import Video, VideoList
from reelvault_gateway.video_requests import CreateVideoBody, spec_from_body
from reelvault_gateway.videos import (
    cancel_video,
    content_url,
    create_video,
    create_video_once,
    delete_video,
    get_video,
    list_videos,
)

router = APIRouter(prefix="/v1/videos", tags=["videos"])


@router.post(
    "",
    status_code=202,
    response_model=Video,
    summary="Request a video",
    responses={
        202: {
            "description": "Accepted: the request is durable; generation runs in the background.",
            "headers": {
                "Location": {
                    "description": "Where to follow the video: `/v1/videos/{id}`.",
                    "schema": {"type": "string"},
                },
                REPLAYED_HEADER: {
                    "description": "`true` when an earlier request with the same "
                    "Idempotency-Key created this video (nothing new was requested).",
                    "schema": {"type": "string"},
                },
            },
        },
        **error_responses(400, 401, 403, 409, 413, 422, 429, 503),
    },
)
async def request_video(
    body: CreateVideoBody,
    principal: WritePrincipal,
    context: ContextDep,
    correlation_id: CorrelationIdDep,
    idempotency: IdempotencyKeyDep,
    response: Response,
) -> Video:
    """Answers 202 only after the request is stored in the event stream (JetStream ack).
    422 names the offending field (`unknown_upload` for a reference that was never uploaded);
    503 when the broker is unavailable, and then nothing was created (or, with an
    `Idempotency-Key`, a retry with the key finishes what was started). 409
    `idempotency_key_reused` when the key was used for a different request. 429
    `quota_exceeded` when the organization's quota is used up; 403 `not_whitelisted` while
    creating is open to selected organizations only; 503 `maintenance` during maintenance."""
    spec = spec_from_body(body, context.models.current, published=context.models.published)
    if idempotency is None:
        video = await create_video(context, principal, spec, correlation_id)
    else:
        created = await create_video_once(context, principal, spec, correlation_id, idempotency)
        video = created.video
        if created.replayed:
            response.headers[REPLAYED_HEADER] = "true"
    response.headers["Location"] = f"/v1/videos/{video.id}"
    return video


@router.get(
    "",
    response_model=VideoList,
    summary="List videos, newest first",
    responses=error_responses(400, 401, 403, 422, 502, 503),
)
async def list_all(
    principal: ReadPrincipal,
    context: ContextDep,
    status: Annotated[VideoStatus | None, Query(description="Only videos in this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[
        str | None, Query(max_length=1024, description="`next_cursor` of the previous page.")
    ] = None,
) -> VideoList:
    page = await list_videos(context, principal.org, status, limit, cursor)
    return VideoList(data=page.videos, next_cursor=page.next_cursor)


@router.get(
    "/{video_id}",
    response_model=Video,
    summary="Get a video",
    responses=error_responses(401, 403, 404, 422, 502, 503),
)
async def get_one(video_id: uuid.UUID, principal: ReadPrincipal, context: ContextDep) -> Video:
    return await get_video(context, principal.org, video_id)


class VideoDeletion(BaseModel):
    id: uuid.UUID
    status: Literal["deleted"] = "deleted"
    deleted_at: datetime


@router.delete(
    "/{video_id}",
    response_model=VideoDeletion,
    summary="Delete a video",
    responses=error_responses(401, 403, 404, 422, 502, 503),
)
async def delete_one(
    video_id: uuid.UUID, principal: WritePrincipal, context: ContextDep
) -> VideoDeletion:
    """Removes the stored video and its thumbnail (in the background, shortly after the
    answer) and keeps a tombstone; a video still being generated is canceled first. Deleting
    again answers the same. Afterwards the video's reads (`GET /v1/videos/{id}`, its content,
    lists) answer as if it never existed: 404, and absent from lists."""
    deleted = await delete_video(context, principal, video_id)
    return VideoDeletion(id=deleted.id, deleted_at=deleted.deleted_at)


@router.post(
    "/{video_id}/cancel",
    status_code=202,
    response_model=Video,
    summary="Cancel a video that is not finished",
    responses=error_responses(401, 403, 404, 409, 422, 502, 503),
)
async def cancel(
    video_id: uuid.UUID,
    principal: WritePrincipal,
    context: ContextDep,
    correlation_id: CorrelationIdDep,
) -> Video:
    """Stops following the provider's job (and cancels it where the provider can): the video
    soon fails with code `canceled`. Asking again is harmless. 409 `video_finished` once the
    video has ended (completed or failed). A create already sent to the provider may still be
    charged by it."""
    return await cancel_video(context, principal, video_id, correlation_id)


@router.get(
    "/{video_id}/content",
    response_class=RedirectResponse,
    status_code=307,
    summary="Download the stored video (or its thumbnail)",
    responses={
        307: {
            "description": "Redirect to a fresh, short-lived signed URL of the stored file.",
            "headers": {"Location": {"schema": {"type": "string"}}},
        },
        **error_responses(401, 403, 404, 409, 422, 502, 503),
    },
)
async def get_content(
    video_id: uuid.UUID,
    principal: ReadPrincipal,
    context: ContextDep,
    variant: Annotated[Literal["video", "thumbnail"], Query()] = "video",
) -> RedirectResponse:
    """A permanent link: each call redirects to a newly signed URL. 409 `video_not_ready`
    until the video is stored."""
    url = await content_url(context, principal.org, video_id, variant)
    return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
