"""Reads a request's uploaded images from object storage and builds the reference frame."""

from __future__ import annotations

import asyncio
from typing import Protocol

from reelvault_common.contracts.events import VideoRequested
from reelvault_common.providers.models import ModelSpec, image_plan
from reelvault_common.providers.video_spec import parse_size
from reelvault_common.storage import BucketNotFound, InvalidKey, ObjectNotFound, ObjectStorage

from reelvault_generator.provider import NO_IMAGES, PreparedImages
from reelvault_generator.reference import (
    InvalidReferenceImage,
    build_frames,
    build_reference_frame,
)


class ReferenceProblem(Exception):
    """The request's reference images can never be used: the video fails with ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ReferenceSource(Protocol):
    async def images_for(
        self, request: VideoRequested, spec: ModelSpec | None = None
    ) -> PreparedImages: ...


class ReferenceLoader:
    def __init__(self, storage: ObjectStorage, *, max_bytes: int) -> None:
        self._storage = storage
        self._max_bytes = max_bytes

    async def _read(self, bucket: str, key: str) -> bytes:
        parts: list[bytes] = []
        size = 0
        try:
            async for chunk in self._storage.read(bucket, key):
                size += len(chunk)
                if size > self._max_bytes:
                    raise ReferenceProblem(
                        "invalid_reference_image",
                        f"reference image {bucket}/{key} is larger than {self._max_bytes} bytes",
                    )
                parts.append(chunk)
        except (ObjectNotFound, BucketNotFound, InvalidKey) as exc:
            raise ReferenceProblem(
                "reference_image_not_found", f"reference image {bucket}/{key}: {exc.message}"
            ) from exc
        return b"".join(parts)

    async def images_for(
        self, request: VideoRequested, spec: ModelSpec | None = None
    ) -> PreparedImages:
        """The images as ``spec``'s model takes them (without a spec: composed into one first
        frame); ``ReferenceProblem`` if unusable. Storage outages (``TransientStorageError``)
        propagate: retry later."""
        if not request.reference_images:
            return NO_IMAGES
        try:
            plan = image_plan(spec, len(request.reference_images)) if spec else None
        except ValueError as exc:
            raise ReferenceProblem("invalid_reference_image", str(exc)) from exc
        images = [await self._read(ref.bucket, ref.key) for ref in request.reference_images]
        width, height = parse_size(request.size)
        try:
            # Decoding and resampling are CPU work: off the event loop.
            if plan is None or plan.mode in ("first_frame", "composed"):
                frame = await asyncio.to_thread(build_reference_frame, images, width, height)
                return PreparedImages(first_frame=frame)
            frames = await asyncio.to_thread(build_frames, images, width, height)
        except InvalidReferenceImage as exc:
            raise ReferenceProblem("invalid_reference_image", str(exc)) from exc
        if plan.mode == "frames":
            return PreparedImages(first_frame=frames[0], last_frame=frames[1])
        return PreparedImages(references=frames)
