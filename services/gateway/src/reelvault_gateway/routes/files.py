"""``/files/{bucket}/{key}``: serves objects of the filesystem storage backend.

Public buckets are served as they are; private ones only with a valid signature (``expires`` +
``token``, made by ``FilesystemStorage.signed_url``). Nothing outside a bucket's folder under
the storage root is ever served. Range requests are answered by Starlette's FileResponse."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import anyio
from fastapi import APIRouter, Query
from fastapi.responses import FileResponse
from reelvault_common.storage import BucketNotFound, InvalidKey
from reelvault_common.storage.filesystem import FilesystemStorage

from reelvault_gateway.deps import ContextDep
from reelvault_gateway.errors import ApiError, error_responses
from reelvault_gateway.storage_keys import usable_key

router = APIRouter(tags=["files"])


def _missing(bucket: str, key: str) -> ApiError:
    return ApiError(404, "not_found", f"No file {bucket}/{key}.")


@router.get(
    "/files/{bucket}/{key:path}",
    response_class=FileResponse,
    summary="Download a stored file (filesystem storage backend)",
    responses={
        200: {"description": "The file.", "content": {"application/octet-stream": {}}},
        206: {
            "description": "Part of the file (HTTP Range).",
            "content": {"application/octet-stream": {}},
        },
        **error_responses(403, 404, 416, 422),
    },
)
async def get_file(
    bucket: str,
    key: str,
    context: ContextDep,
    expires: Annotated[
        int | None, Query(description="Signed links: expiry (unix seconds).")
    ] = None,
    token: Annotated[
        str | None, Query(max_length=128, description="Signed links: signature.")
    ] = None,
) -> FileResponse:
    storage = context.storage
    known = {spec.name: spec for spec in context.buckets.all()}
    if not isinstance(storage, FilesystemStorage) or bucket not in known or not usable_key(key):
        raise _missing(bucket, key)
    try:
        spec = storage.bucket_spec(bucket)
        path = storage.local_path(bucket, key)
    except (BucketNotFound, InvalidKey):
        raise _missing(bucket, key) from None
    # Defence in depth on top of the key rules: the file must live inside the bucket's folder.
    bucket_root = storage.local_path(bucket, "x").parent.resolve()
    resolved = Path(await anyio.to_thread.run_sync(path.resolve))
    if not resolved.is_relative_to(bucket_root):
        raise _missing(bucket, key)
    if not spec.public:
        if expires is None or token is None:
            raise ApiError(403, "forbidden", "This file needs a signed link (expires and token).")
        if not storage.verify(bucket, key, expires, token):
            raise ApiError(403, "forbidden", "The link is invalid or has expired.")
    info = await storage.stat(bucket, key)
    if info is None or not await anyio.to_thread.run_sync(resolved.is_file):
        raise _missing(bucket, key)
    cache = "public, max-age=3600" if spec.public else "private, no-store"
    return FileResponse(
        resolved,
        media_type=info.content_type,
        headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff"},
    )
