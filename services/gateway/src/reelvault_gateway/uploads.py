"""Storing an uploaded reference image: checked from its bytes, keyed by its content."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator

import anyio
from fastapi import UploadFile
from pydantic import BaseModel, Field
from reelvault_common.storage import MimeTypeNotAllowed, PayloadTooLarge
from reelvault_common.storage.layout import upload_key

from reelvault_gateway.context import GatewayContext
from reelvault_gateway.errors import ApiError
from reelvault_gateway.images import ImageInfo, ImageRejected, inspect_image

log = logging.getLogger(__name__)

_REJECTIONS: dict[str, tuple[int, str]] = {
    "unsupported": (415, "unsupported_media_type"),
    "empty": (400, "empty_file"),
    "corrupt": (400, "corrupt_image"),
    "too_large": (400, "image_too_large"),
}


class UploadResult(BaseModel):
    key: str = Field(description="Pass this in `reference_images` of `POST /v1/videos`.")
    url: str | None = Field(description="Public URL of the image (the images bucket is public).")
    bucket: str
    content_type: str
    bytes: int
    sha256: str
    width: int
    height: int


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"The file exceeds the {limit} byte upload limit.")


async def store_upload(context: GatewayContext, org: str, upload: UploadFile) -> UploadResult:
    """Stored under the organization's own prefix: only it can reference the upload."""
    limit = context.settings.max_upload_bytes
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise too_large(limit)
    try:
        info: ImageInfo = await anyio.to_thread.run_sync(
            inspect_image, data, limiter=context.image_decoders
        )
    except ImageRejected as rejected:
        status, code = _REJECTIONS[rejected.kind]
        raise ApiError(status, code, rejected.message) from None
    sha256 = hashlib.sha256(data).hexdigest()
    bucket = context.buckets.images.name
    key = upload_key(org, sha256, info.extension)
    try:
        stored = await context.storage.put(bucket, key, _once(data), info.content_type)
    except PayloadTooLarge:
        raise too_large(context.buckets.images.file_size_limit or limit) from None
    except MimeTypeNotAllowed as exc:
        raise ApiError(415, "unsupported_media_type", exc.message) from None
    log.info("stored upload %s/%s (%d bytes, %s)", bucket, key, stored.bytes, info.content_type)
    return UploadResult(
        key=key,
        url=stored.url or await context.storage.public_url(bucket, key),
        bucket=bucket,
        content_type=info.content_type,
        bytes=stored.bytes,
        sha256=stored.sha256,
        width=info.width,
        height=info.height,
    )
