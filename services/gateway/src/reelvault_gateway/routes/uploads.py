"""Image uploads: ``POST /v1/uploads`` and the seed's ``POST /api/upload``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile

from reelvault_gateway.deps import ContextDep, WritePrincipal
from reelvault_gateway.errors import error_responses
from reelvault_gateway.uploads import UploadResult, store_upload

router = APIRouter()

FileField = Annotated[
    UploadFile, File(description="A JPEG, PNG or WebP image (at most the upload limit, 10 MB).")
]
_ERRORS = error_responses(400, 401, 403, 413, 415, 422, 503)


@router.post(
    "/v1/uploads",
    status_code=201,
    response_model=UploadResult,
    tags=["uploads"],
    summary="Upload a reference image",
    responses=_ERRORS,
)
async def upload_image(
    principal: WritePrincipal, context: ContextDep, file: FileField
) -> UploadResult:
    """Stores the image in the public images bucket under a key derived from its organization
    and content: uploading the same bytes again returns the same key. Only the organization
    that uploaded it can reference it."""
    return await store_upload(context, principal.org, file)


@router.post(
    "/api/upload",
    response_model=UploadResult,
    tags=["seed"],
    summary="Upload an image (seed app)",
    responses=_ERRORS,
)
async def seed_upload(
    principal: WritePrincipal, context: ContextDep, file: FileField
) -> UploadResult:
    """Same as `POST /v1/uploads`; `url` is the image's public URL, usable as `image1_url`."""
    return await store_upload(context, principal.org, file)
