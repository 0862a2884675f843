"""What the video routes do: accept a request durably, read the catalog, hand out links."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from reelvault_common.contracts.catalog import DeletedVideo, VideoRecord, VideoStatus
from reelvault_common.contracts.events import (
    ReferenceImage,
    VideoArchiveRequested,
    VideoCancelRequested,
    VideoRequested,
)
from reelvault_common.contracts.ids import new_video_id
from reelvault_common.runtime import telemetry
from reelvault_common.storage import InvalidKey, ObjectNotFound

from reelvault_gateway.broker import BrokerUnavailable
from reelvault_gateway.catalog import CatalogClient, CatalogError, CatalogUnavailable
from reelvault_gateway.context import GatewayContext
from reelvault_gateway.credentials import Principal, aware
from reelvault_gateway.errors import ApiError
from reelvault_gateway.flags import refuse_unlisted
from reelvault_gateway.idempotency import (
    client_identity,
    fingerprint,
    new_record,
    on_repeat,
    scope_of,
    video_id_for,
)
from reelvault_gateway.quotas import quota_exceeded
from reelvault_gateway.representation import Video, video_from_record, video_from_request
from reelvault_gateway.storage_keys import usable_key
from reelvault_gateway.video_requests import VideoSpec, unknown_upload

log = logging.getLogger(__name__)


def not_found() -> ApiError:
    # The same words whether the video never existed or belongs to another organization, and
    # nothing of the request echoed.
    return ApiError(404, "not_found", "No such video.")


def not_ready(record: VideoRecord, what: str = "The video") -> ApiError:
    detail = {
        "queued": "has not started yet",
        "processing": "is still being generated",
        "failed": "failed and has no stored file",
        "completed": "has no stored file",
    }[record.status]
    return ApiError(
        409,
        "video_not_ready",
        f"{what} {detail} (status {record.status}).",
        details={"status": record.status, "progress": record.progress},
    )


def own_upload(org: str, key: str) -> bool:
    """Only the organization's own uploads may be referenced: another's key is as unknown as
    a key never uploaded (nothing tells that it exists)."""
    return key.startswith(f"{org}/uploads/") and usable_key(key)


async def resolve_references(
    context: GatewayContext, org: str, spec: VideoSpec
) -> tuple[ReferenceImage, ...]:
    """Each reference must be an image the organization uploaded (what /v1/uploads stored)."""
    bucket = context.buckets.images.name
    images = []
    for key, loc in zip(spec.reference_keys, spec.reference_locs, strict=True):
        info = await context.storage.stat(bucket, key) if own_upload(org, key) else None
        if info is None:
            raise unknown_upload(loc)
        images.append(
            ReferenceImage(
                bucket=bucket,
                key=key,
                content_type=info.content_type,
                url=await context.storage.public_url(bucket, key),
            )
        )
    return tuple(images)


async def wait_until_visible(
    catalog: CatalogClient, org: str, video_id: uuid.UUID, timeout_s: float
) -> VideoRecord | None:
    """Poll the catalog until it has projected the video, or give up quietly at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    pause = 0.02
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return None
        try:
            record = await catalog.get(org, video_id, timeout_s=max(remaining, 0.05))
        except (CatalogUnavailable, CatalogError):
            record = None
        if record is not None:
            return record
        await asyncio.sleep(min(pause, max(deadline - loop.time(), 0)))
        pause = min(pause * 2, 0.2)


def requested_event(
    org: str,
    spec: VideoSpec,
    images: tuple[ReferenceImage, ...],
    video_id: uuid.UUID,
    correlation_id: str,
) -> VideoRequested:
    return VideoRequested.new(
        video_id=video_id,
        org=org,
        correlation_id=correlation_id or str(video_id),
        prompt=spec.prompt,
        model=spec.model,
        seconds=spec.seconds,
        size=spec.size,
        reference_images=images,
    )


async def _publish_requested(context: GatewayContext, event: VideoRequested) -> None:
    """Publish and wait for the stream's ack, then (briefly) for the catalog to show it."""
    timeout = context.settings.create_visibility_timeout_s
    if context.recorded is None or timeout <= 0:
        await _publish(context, event)
        if await wait_until_visible(context.catalog, event.org, event.video_id, timeout) is None:
            _not_visible(event, timeout)
        return
    with context.recorded.expect(event.video_id) as recorded:
        await _publish(context, event)
        try:
            await asyncio.wait_for(asyncio.shield(recorded), timeout)
            return
        except TimeoutError:
            pass
    # No word from the catalog (busy, or the word got lost): one last look decides the log.
    try:
        found = await context.catalog.get(event.org, event.video_id, timeout_s=0.5)
    except (CatalogUnavailable, CatalogError):
        found = None
    if found is None:
        _not_visible(event, timeout)


async def _publish(context: GatewayContext, event: VideoRequested) -> None:
    ack = await context.events.publish(event)
    log.info(
        "video %s requested (stream seq %s, correlation %s)",
        event.video_id,
        ack.seq,
        event.correlation_id,
    )


def _not_visible(event: VideoRequested, timeout: float) -> None:
    if timeout > 0:
        log.warning(
            "video %s not in the catalog after %.1fs; answering anyway", event.video_id, timeout
        )


async def reserve_quota(context: GatewayContext, event: VideoRequested) -> None:
    """Count the video against its organization's quotas (atomic in the catalog, idempotent
    per video id), or refuse it with a 429."""
    telemetry.tag(video_id=event.video_id)  # the request's video, from here on
    refused = await context.catalog.reserve(
        event.org, event.video_id, event.model, int(event.seconds)
    )
    if refused is not None:
        raise quota_exceeded(refused, datetime.now(UTC))


async def _release_quietly(context: GatewayContext, event: VideoRequested) -> None:
    """Give back the reservation of a request that was never published. Best effort: if it
    fails, the organization is charged one video it did not get."""
    try:
        await context.catalog.release(event.org, event.video_id)
    except (CatalogUnavailable, CatalogError) as exc:
        log.warning("releasing the quota of unpublished video %s failed: %s", event.video_id, exc)


async def create_video(
    context: GatewayContext, principal: Principal, spec: VideoSpec, correlation_id: str
) -> Video:
    """Validate references, reserve the quota, publish VideoRequested and wait for the
    stream's ack.

    The reservation is the only write before the publish: when the publish fails, it is
    given back and the request failed as a whole (503, ``BrokerUnavailable`` propagates)."""
    refuse_unlisted(context.flags.current, principal.org)
    images = await resolve_references(context, principal.org, spec)
    event = requested_event(principal.org, spec, images, new_video_id(), correlation_id)
    await reserve_quota(context, event)
    try:
        await _publish_requested(context, event)
    except BrokerUnavailable:
        await _release_quietly(context, event)
        raise
    return video_from_request(event, context.models.current)


@dataclass(frozen=True)
class Created:
    video: Video
    replayed: bool  # True: an earlier request with the same Idempotency-Key made this video


async def create_video_once(
    context: GatewayContext, principal: Principal, spec: VideoSpec, correlation_id: str, key: str
) -> Created:
    """``create_video`` under an ``Idempotency-Key`` (see ``idempotency.py``): the first request
    with the key creates the video, repeats of the same request get the same answer, another
    request under the key is a 409.

    The quota is reserved after the key and before each publish. A refused or failed attempt
    leaves the key pending and keeps any reservation: a retry with the key reserves again
    (the same video id: counted once) and publishes the very same event."""
    store = context.idempotency
    if store is None:
        raise BrokerUnavailable("idempotency keys are not available")
    refuse_unlisted(context.flags.current, principal.org)
    scope = scope_of(client_identity(principal.org, principal.key_id), key)
    wanted = fingerprint(spec, principal.org)
    # Most keys are new. Without reference images nothing needs looking up before the
    # reservation, so try it straight away (one KV read less); a key in use makes it fail
    # and the record is read below, exactly as when two requests race. With references the
    # record is read first, so a repeat replays without looking them up again.
    found = await store.read(scope) if spec.reference_keys else None
    if found is None:
        images = await resolve_references(context, principal.org, spec)
        event = requested_event(principal.org, spec, images, video_id_for(scope), correlation_id)
        record = new_record(event, wanted, datetime.now(UTC))
        revision = await store.reserve(scope, record)
        if revision is not None:
            # Reserved (pending) before publishing: if the publish fails, the key keeps
            # pointing at this very event and a retry publishes it again.
            await reserve_quota(context, event)
            await _publish_requested(context, event)
            await store.complete(scope, record.done(), last=revision)
            return Created(video_from_request(event, context.models.current), replayed=False)
        found = await store.read(scope)  # another request with this key won the race
        if found is None:
            raise BrokerUnavailable("the idempotency record vanished; retry")
    record, revision = found
    replay = on_repeat(record, wanted)
    if replay.republish:
        # The first attempt failed or is still publishing: the same event id makes JetStream
        # drop whichever copy comes second.
        await reserve_quota(context, replay.event)
        await _publish_requested(context, replay.event)
        await store.complete(scope, record.done(), last=revision)
    log.info("video %s: repeat of an idempotent request", replay.event.video_id)
    return Created(video_from_request(replay.event, context.models.current), replayed=True)


async def get_record(context: GatewayContext, org: str, video_id: uuid.UUID) -> VideoRecord:
    """The organization's video; another organization's is as missing as one never made."""
    telemetry.tag(video_id=video_id)
    record = await context.catalog.get(org, video_id)
    # The catalog already filters by organization; checked again as it decides who sees what.
    if record is None or record.org != org:
        raise not_found()
    return record


async def get_video(context: GatewayContext, org: str, video_id: uuid.UUID) -> Video:
    record = await get_record(context, org, video_id)
    return video_from_record(record, context.settings.public_base_url, context.models.current)


async def cancel_video(
    context: GatewayContext, principal: Principal, video_id: uuid.UUID, correlation_id: str
) -> Video:
    """Ask the generator to stop an unfinished video (idempotent: asking twice is the same
    event). A video that already ended is refused with 409."""
    record = await get_record(context, principal.org, video_id)
    if record.status in ("completed", "failed"):
        raise ApiError(409, "video_finished",
                       f"Video {video_id} has already ended ({record.status}): nothing to cancel.")
    event = VideoCancelRequested.new(
        video_id=video_id, org=principal.org, correlation_id=correlation_id or str(video_id),
        requested_by=principal.key_id,
    )
    await context.events.publish(event)
    log.info("video %s: cancel requested", video_id)
    return video_from_record(record, context.settings.public_base_url, context.models.current)


@dataclass(frozen=True)
class VideoListPage:
    videos: list[Video]
    next_cursor: str | None


async def list_videos(
    context: GatewayContext, org: str, status: VideoStatus | None, limit: int, cursor: str | None
) -> VideoListPage:
    page = await context.catalog.list(org, status=status, limit=limit, cursor=cursor)
    base = context.settings.public_base_url
    models = context.models.current
    mine = [video_from_record(r, base, models) for r in page.items if r.org == org]
    return VideoListPage(mine, page.next_cursor)


async def list_all_videos(
    context: GatewayContext, org: str, cap: int
) -> tuple[list[Video], bool]:
    """Every video newest first, following cursors, at most ``cap``; True if there are more."""
    videos: list[Video] = []
    cursor: str | None = None
    while len(videos) < cap:
        page = await list_videos(context, org, None, min(100, cap - len(videos)), cursor)
        videos.extend(page.videos)
        cursor = page.next_cursor
        if cursor is None or not page.videos:
            return videos, False
    return videos, True


async def content_url(
    context: GatewayContext, org: str, video_id: uuid.UUID, variant: str
) -> str:
    """A fresh link to the stored video (signed) or its thumbnail."""
    record = await get_record(context, org, video_id)
    if record.status != "completed":
        raise not_ready(record)
    if variant == "thumbnail":
        bucket, key = record.thumbnail_bucket, record.thumbnail_key
    else:
        bucket, key = record.video_bucket, record.video_key
    if bucket is None or key is None:
        raise ApiError(404, "content_not_found", f"Video {video_id} has no stored {variant}.")
    storage = context.storage
    try:
        if variant == "thumbnail" and (public := await storage.public_url(bucket, key)):
            return public
        return await storage.signed_url(bucket, key, context.settings.signed_url_ttl_s)
    except (ObjectNotFound, InvalidKey):
        log.error(
            "catalog lists %s/%s for video %s but storage has no such object", bucket, key, video_id
        )
        raise ApiError(
            404, "content_not_found", f"The stored {variant} of {video_id} is missing."
        ) from None


async def delete_video(
    context: GatewayContext, principal: Principal, video_id: uuid.UUID
) -> DeletedVideo:
    """Delete the organization's video (the catalog cancels it first if unfinished, keeps a
    tombstone and announces ``video.deleted``); the same answer on every repeat."""
    telemetry.tag(video_id=video_id)
    deleted = await context.catalog.delete(principal.org, video_id, principal.key_id)
    if deleted is None or deleted.org != principal.org:
        raise not_found()
    log.info("video %s deleted", video_id)
    return deleted


@dataclass(frozen=True)
class ArchiveOutcome:
    record: VideoRecord
    requested: bool  # False: it was already stored


async def request_archive(
    context: GatewayContext,
    org: str,
    video_id: uuid.UUID,
    correlation_id: str,
    now: datetime | None = None,
) -> ArchiveOutcome:
    """The seed's download-and-store: copy a finished video now, if it can still be copied."""
    record = await get_record(context, org, video_id)
    if record.status == "completed" and record.video_key is not None:
        return ArchiveOutcome(record, requested=False)
    if record.provider_job_id is None or record.openai_url is None:
        raise not_ready(record, "The video")
    now = now or datetime.now(UTC)
    if record.expires_at is not None and aware(record.expires_at) <= now:
        raise ApiError(
            410,
            "source_expired",
            f"The provider's copy of {video_id} expired at {record.expires_at.isoformat()} "
            "before it was stored; it cannot be copied any more.",
        )
    event = VideoArchiveRequested.new(
        video_id=video_id,
        org=record.org,
        correlation_id=correlation_id or str(video_id),
        provider=record.provider or "openai",
        provider_job_id=record.provider_job_id,
        expires_at=aware(record.expires_at) if record.expires_at is not None else None,
        requested_at=aware(record.created_at),
        source_url=record.openai_url,
    )
    await context.events.publish(event)
    log.info("archive of video %s requested (correlation %s)", video_id, event.correlation_id)
    return ArchiveOutcome(record, requested=True)
